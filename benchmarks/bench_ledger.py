"""Benchmark: what the ledger costs (issue #9).

Targets: the demo run with its ledger ≤ 2× the run without it; on `suburb-100-year` the ledger
adds ≤ 50 % to the run, its file is ≤ 2× timeseries.parquet and `peergrid ledger verify` takes
≤ 60 s; appending single signed orders with verification (the live server's path) ≥ 2,000
entries/s on one core.

Both runs of a scenario are timed in the same process, alternating (best of `repeats`), with the
run directory written (the ledger is part of the run directory). The single-order append rate is
measured on a fresh ledger of 100 participants with orders signed beforehand (a participant signs
on its own device; the server verifies and appends).

    python benchmarks/bench_ledger.py                       # demo
    python benchmarks/bench_ledger.py --scenario suburb-100-year --days 30
    python benchmarks/bench_ledger.py --quick               # 1 day of demo, for the test suite
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _run(scenario: Any, out: Path, ledger: bool) -> tuple[float, Any]:
    from peergrid.engine.simulate import simulate
    from peergrid.rundir import write_run

    t0 = time.perf_counter()
    staging = Path(tempfile.mkdtemp(dir=out.parent))
    result = simulate(scenario, ledger_path=staging / "ledger.sqlite" if ledger else None)
    write_run(result, out)
    shutil.rmtree(staging, ignore_errors=True)
    return time.perf_counter() - t0, result


def append_rate(n_orders: int = 4000, n_participants: int = 100) -> float:
    """Single signed orders appended with signature verification [entries/s]."""
    from peergrid.ledger import encoding as enc
    from peergrid.ledger.keys import operator_key, participant_keys, public_bytes
    from peergrid.ledger.log import Ledger

    keys = participant_keys(1, n_participants)
    with tempfile.TemporaryDirectory() as d:
        op = operator_key(1)
        genesis = enc.Genesis(
            ledger_id=b"\x00" * 16,
            operator_public_key=public_bytes(op),
            currency="EUR",
            minor_exponent=2,
            start_unix_s=0,
            slot_seconds=900,
            n_slots=n_orders,
            scenario="bench",
            names=tuple(f"p{i}" for i in range(n_participants)),
            public_keys=tuple(public_bytes(k) for k in keys),
        )
        led = Ledger.create(Path(d) / "l.sqlite", operator_key=op, genesis=genesis)
        signed = []
        for i in range(n_orders):
            p = i % n_participants
            msg = enc.order_message(
                b"\x00" * 16, p, i, np.array([i + 4]), np.array([i % 2], dtype=np.int8),
                np.array([0.4]), np.array([0.2]),
            )  # fmt: skip
            signed.append((p, i, msg, keys[p].sign(msg)))
        t0 = time.perf_counter()
        for p, gate, msg, sig in signed:
            led.submit_orders(p, gate, msg, sig)
            if gate % n_participants == n_participants - 1:
                led.sign_head(gate)
        led.close()
        return n_orders / (time.perf_counter() - t0)


def run(scenario_name: str = "demo", days: int | None = None, repeats: int = 2) -> dict[str, Any]:
    import peergrid
    from peergrid.ledger.verify import verify_ledger

    sc = peergrid.load_scenario(scenario_name)
    if days is not None:
        data = sc.model_dump(mode="python", exclude_none=True)
        data["time"]["days"] = days
        sc = type(sc).model_validate(data)
    best = {True: float("inf"), False: float("inf")}
    with tempfile.TemporaryDirectory() as d:
        summary: dict[str, Any] = {}
        for _ in range(repeats):
            for ledger in (False, True):
                out = Path(d) / ("with" if ledger else "without")
                s, result = _run(sc, out, ledger)
                best[ledger] = min(best[ledger], s)
                if ledger:
                    summary = result.summary
        out = Path(d) / "with"
        ledger_bytes = (out / "ledger.sqlite").stat().st_size
        ts_bytes = (out / "timeseries.parquet").stat().st_size
        t0 = time.perf_counter()
        rep = verify_ledger(out / "ledger.sqlite")
        verify_s = time.perf_counter() - t0
    return {
        "scenario": scenario_name,
        "slots": int(summary["slots"]) if "slots" in summary else None,
        "participants": summary.get("participants"),
        "run_without_ledger_s": round(best[False], 3),
        "run_with_ledger_s": round(best[True], 3),
        "ratio": round(best[True] / best[False], 3),
        "ledger_s": summary["timing_s"].get("ledger"),
        "entries": rep.entries,
        "signatures": rep.signatures,
        "ledger_mb": round(ledger_bytes / 1e6, 2),
        "timeseries_mb": round(ts_bytes / 1e6, 2),
        "size_ratio": round(ledger_bytes / ts_bytes, 3),
        "verify_s": round(verify_s, 2),
        "append_per_s": round(append_rate()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="demo")
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 day of demo, one repeat")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        figures = run("demo", days=1, repeats=1)
    else:
        figures = run(args.scenario, args.days, args.repeats)
    if args.json:
        print(json.dumps(figures))
        return
    f = figures
    print(f"{f['scenario']} ({f['participants']} participants × {f['slots']} slots)")
    print(
        f"  run with ledger   {f['run_with_ledger_s']:.2f} s = {f['ratio']:.2f}× the run "
        f"without it ({f['run_without_ledger_s']:.2f} s), same process, best of repeats "
        "(targets: demo ≤ 2×, a year ≤ 1.5×)"
    )
    print(f"  of which ledger   {f['ledger_s']} s: {f['signatures']:,} signed order messages")
    print(
        f"  size              {f['ledger_mb']} MB = {f['size_ratio']:.2f}× timeseries.parquet "
        f"({f['timeseries_mb']} MB; target ≤ 2×), {f['entries']:,} entries"
    )
    print(f"  ledger verify     {f['verify_s']:.2f} s (target ≤ 60 s for a year)")
    print(f"  append            {f['append_per_s']:,} signed orders/s verified (target ≥ 2,000/s)")


if __name__ == "__main__":
    main()
