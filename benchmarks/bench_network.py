"""Benchmark: a year of 15-min power flows on a feeder with >= 100 buses (issue #4).

Target: one year at 15-min resolution (35,040 power flows) on a feeder with at least 100 buses in
<= 60 s on a 2-core machine with the fast path (power-grid-model batch), and the speed-up against
pandapower's own time-series loop (`pandapower.timeseries.run_timeseries` with `ConstControl`
on the same case) printed. pandapower's loop takes tens of milliseconds per slot, so it runs on
the first `pp_slots` slots and is extrapolated to the year (stated in the output).

The injections are the real net positions of the built-in `suburb-100-year` scenario (100
households, 35,040 slots, SDR market) placed on the feeder by peergrid's seeded mapping; building
them (one simulation of the year) is not timed.

    python benchmarks/bench_network.py            # full year, simbench-lv-rural3 (129 buses)
    python benchmarks/bench_network.py --feeder kerber-vorstadtnetz-kabel-1
    python benchmarks/bench_network.py --quick    # 2 days, for the test suite
    python benchmarks/bench_network.py --json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from typing import Any

import numpy as np

TARGET_S = 60.0


def injections(feeder_name: str, days: int) -> tuple[Any, Any, np.ndarray, np.ndarray, float]:
    """(net, setup, p (T, N), q (T, N), dt_h) for the suburb scenario on the feeder."""
    import peergrid
    from peergrid.engine.network import build_setup, bus_injections
    from peergrid.engine.simulate import resolve_full

    sc = peergrid.load_scenario("suburb-100-year")
    data = sc.model_dump(mode="python", exclude_none=True)
    data["time"]["days"] = days
    data["network"] = {"feeder": feeder_name}
    sc = type(sc).model_validate(data)
    result = peergrid.simulate(sc)
    resolved = resolve_full(sc)
    setup = build_setup(resolved, None)
    assert setup is not None
    dt_h = result.community.grid.dt_h
    p, q = bus_injections(setup, result.recorded.series["net_kwh"], dt_h)
    return setup.net, setup, p, q, dt_h


def pandapower_timeseries_s(net: Any, setup: Any, p: np.ndarray, q: np.ndarray) -> float:
    """Wall time of pandapower's own time-series loop over the given slots [s]."""
    import pandapower as pp
    import pandas as pd
    from pandapower.control import ConstControl
    from pandapower.timeseries import DFData, OutputWriter, run_timeseries

    work = copy.deepcopy(net)
    work.load.drop(work.load.index, inplace=True)
    work.sgen.drop(work.sgen.index, inplace=True)
    buses = np.flatnonzero(np.abs(p).sum(axis=0) > 0)
    for b in buses:
        pp.create_load(work, bus=int(setup.feeder.bus_ids[b]), p_mw=0.0, q_mvar=0.0)
    loads = work.load.index.to_numpy()
    n_t = p.shape[0]
    df_p = pd.DataFrame(-p[:, buses] / 1e3, columns=loads)
    df_q = pd.DataFrame(-q[:, buses] / 1e3, columns=loads)
    ConstControl(work, "load", "p_mw", loads, loads, DFData(df_p))
    ConstControl(work, "load", "q_mvar", loads, loads, DFData(df_q))
    ow = OutputWriter(work, time_steps=range(n_t), output_path=None)
    ow.log_variable("res_bus", "vm_pu")
    ow.log_variable("res_line", "loading_percent")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_timeseries(work, time_steps=range(n_t), verbose=False, numba=False)
    return time.perf_counter() - t0


def run(feeder: str = "simbench-lv-rural3", days: int = 365, pp_slots: int = 192) -> dict[str, Any]:
    from peergrid.network.powerflow import PgmPowerFlow

    net, setup, p, q, dt_h = injections(feeder, days)
    n_t = p.shape[0]
    t0 = time.perf_counter()
    flow = PgmPowerFlow(setup.feeder, net)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = flow.run(p, q)
    t_fast = time.perf_counter() - t0
    k = min(pp_slots, n_t)
    pandapower_timeseries_s(net, setup, p[:2], q[:2])  # warm-up: imports, first-call costs
    t_pp = pandapower_timeseries_s(net, setup, p[:k], q[:k])
    pp_year_s = t_pp / k * n_t
    lv = setup.feeder.lv_buses
    return {
        "feeder": feeder,
        "buses": setup.feeder.n_bus,
        "slots": n_t,
        "fast_build_s": round(t_build, 3),
        "fast_s": round(t_fast, 2),
        "fast_us_per_slot": round(1e6 * t_fast / n_t, 1),
        "pandapower_slots_timed": k,
        "pandapower_ms_per_slot": round(1e3 * t_pp / k, 2),
        "pandapower_extrapolated_s": round(pp_year_s, 1),
        "speedup": round(pp_year_s / t_fast, 1),
        "max_voltage_pu": round(float(res.v_pu[:, lv].max()), 4),
        "min_voltage_pu": round(float(res.v_pu[:, lv].min()), 4),
        "losses_kwh": round(float(res.losses_kw.sum() * dt_h), 1),
        "target_s": TARGET_S,
        "met": bool(t_fast <= TARGET_S),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--feeder", default="simbench-lv-rural3")
    ap.add_argument("--pp-slots", type=int, default=192)
    args = ap.parse_args()
    figures = run(
        args.feeder, days=2 if args.quick else 365, pp_slots=8 if args.quick else args.pp_slots
    )
    if args.json:
        print(json.dumps(figures))
        return
    f = figures
    print(f"feeder {f['feeder']} ({f['buses']} buses), {f['slots']:,} slots")
    print(
        f"fast path (power-grid-model batch): {f['fast_s']:.2f} s "
        f"({f['fast_us_per_slot']} µs/slot), target <= {TARGET_S:.0f} s: "
        f"{'met' if f['met'] else 'NOT met'}"
    )
    print(
        f"pandapower run_timeseries: {f['pandapower_ms_per_slot']} ms/slot over "
        f"{f['pandapower_slots_timed']} slots -> {f['pandapower_extrapolated_s']:,.0f} s "
        f"for the run (extrapolated)"
    )
    print(f"speed-up: {f['speedup']:,.0f}x")
    print(
        f"voltages {f['min_voltage_pu']}–{f['max_voltage_pu']} pu, losses {f['losses_kwh']:,} kWh"
    )


if __name__ == "__main__":
    main()
