"""The live platform's home side: `peergrid keygen` (a home's signing key), `peergrid agent` (a
home's EMS and smart meter against a server) and `peergrid live-demo` (a whole community on
loopback: a server, its participants, their agents, and the checks). docs/live.md,
"Home agents and the live demo".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from peergrid.errors import InputError

#: The live demo's gate rule: each slot closes at the start of the slot before it.
DEMO_GATE_CLOSURE = "intraday 1"
#: The live demo starts at this local clock time on the scenario's first day, in daylight, so
#: that its few slots trade [h since local midnight].
DEMO_START_LOCAL_H = 10.0


def _need(*modules: str, extra: str) -> None:
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise InputError(
                f"this command needs the '{extra}' extra: pip install 'peergrid[{extra}]' ({e})"
            ) from e


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-4]


def _logger(console: Console, quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None

    def log(line: str) -> None:
        console.print(f"[dim]{_stamp()}[/dim] {line}", soft_wrap=True, highlight=False)

    return log


# --- keygen ---------------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace, console: Console) -> int:
    from peergrid.agent.keyfile import write_key_file
    from peergrid.ledger.keys import public_bytes

    key = write_key_file(args.out)
    sys.stdout.write(public_bytes(key).hex() + "\n")
    sys.stderr.write(
        f"wrote the private key to {args.out} (mode 0600; keep it on the home's device); "
        "register the public key above: peergrid admin add-participant --name NAME "
        "--public-key HEX\n"
    )
    return 0


# --- agent ----------------------------------------------------------------------------------------


def _scenario_for(market_scenario: str, given: str | None, console: Console) -> Any:
    """The scenario an agent simulates: `--scenario`, else the market's (a built-in name)."""
    from peergrid.agent.client import AgentError
    from peergrid.scenario.load import load_scenario

    if given is None:
        try:
            return load_scenario(market_scenario)
        except InputError as e:
            raise AgentError(
                f"the market runs the scenario {market_scenario!r}, which is not built in: give "
                "its file with --scenario"
            ) from e
    scenario = load_scenario(given)
    if scenario.name != market_scenario:
        console.print(
            f"[yellow]note:[/yellow] the market runs the scenario {market_scenario!r}; the homes "
            f"are households of {scenario.name!r}",
            soft_wrap=True,
        )
    return scenario


def _default_profile(scenario: Any, participant: str, ledger_index: int) -> int | str:
    """The scenario participant a home simulates without --profile: the one of the same name,
    else the one at its ledger index."""
    from peergrid.engine.simulate import resolve_full

    names = [p.name for p in resolve_full(scenario).participants]
    if participant in names:
        return participant
    if ledger_index < len(names):
        return ledger_index
    raise InputError(
        f"the scenario {scenario.name!r} has {len(names)} participants and none is named "
        f"{participant!r}: choose one",
        source="--profile",
    )


def cmd_agent(args: argparse.Namespace, console: Console) -> int:
    _need("httpx", extra="agent")
    from peergrid.agent.client import MarketClient
    from peergrid.agent.homes import build_homes
    from peergrid.agent.keyfile import read_key_file
    from peergrid.agent.run import Credentials, HomeAgent, connect

    token = args.token or os.environ.get("PEERGRID_TOKEN")
    if not token:
        raise InputError(
            "give the participant's API token (or set PEERGRID_TOKEN)", source="--token"
        )
    key = read_key_file(args.key)
    creds = Credentials(args.participant, token, key, str(args.key))
    with MarketClient(args.server) as client:
        info = connect(client, [creds])
        scenario = _scenario_for(info.scenario, args.scenario, console)
        profile = args.profile
        if profile is None:
            profile = _default_profile(
                scenario, args.participant, info.participants.index(args.participant)
            )
        homes = build_homes(scenario, [profile])
        shifted = f" from its slot {info.first_slot}" if info.first_slot else ""
        console.print(
            f"{args.participant}: simulating {homes.names[0]!r} of {homes.scenario.name!r}"
            f"{shifted} ({homes.scenario.ems.policy} EMS, {homes.scenario.forecast.method} "
            f"forecasts) in the market {info.ledger_id.hex()[:16]}… ({info.gate_closure}, "
            f"{info.n_slots} slots of {info.slot_seconds:g} s)",
            soft_wrap=True,
            highlight=False,
        )
        agent = HomeAgent(client, info, homes, [creds], log=_logger(console, args.quiet))
        try:
            report = agent.run()
        except KeyboardInterrupt:
            console.print(
                f"stopped at {_stamp()} UTC; the server estimates the rest from the commitments"
            )
            return 130
    console.print(
        f"done: slots {report.first_slot}–{info.n_slots - 1} delivered; "
        f"{report.orders_accepted} order submissions accepted, {report.readings_stored} readings "
        f"stored",
        soft_wrap=True,
        highlight=False,
    )
    if not report.ok:
        for p in report.problems[-10:]:
            console.print(f"[red]problem:[/red] {p}", soft_wrap=True, highlight=False)
        return 1
    return 0


# --- live demo ------------------------------------------------------------------------------------


def _loopback(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _Totals:
    """What the database says about a finished market (slots counted by their gate's
    outcome)."""

    n_slots: int
    cleared: int
    fallback: int
    fallback_reasons: list[str]
    settled: int
    submissions: int
    readings: int
    late_readings: int
    quality: dict[str, int]
    traded_kwh: float
    bill: float
    baseline_bill: float


def _totals(engine: Any, n_slots: int) -> _Totals:
    import numpy as np
    from sqlalchemy import func, select

    from peergrid.server.schema import gates, meter_intervals, orders, readings, slots

    def total(blob: bytes | None) -> float:
        return 0.0 if blob is None else float(np.frombuffer(bytes(blob), dtype="<f8").sum())

    with engine.connect() as conn:
        gate_rows = conn.execute(select(gates.c.gate, gates.c.status, gates.c.reason)).all()
        rows = conn.execute(
            select(
                slots.c.gate,
                slots.c.traded_kwh,
                slots.c.cost,
                slots.c.baseline_cost,
                slots.c.settled_at,
            )
        ).all()
        quality = dict(
            conn.execute(
                select(meter_intervals.c.quality, func.count()).group_by(meter_intervals.c.quality)
            ).all()
        )
        n_sub = conn.execute(select(func.count()).select_from(orders)).scalar_one()
        n_read = conn.execute(select(func.count()).select_from(readings)).scalar_one()
        n_late = conn.execute(select(func.count()).where(readings.c.late.is_(True))).scalar_one()
    status = {int(g.gate): str(g.status) for g in gate_rows}
    return _Totals(
        n_slots=n_slots,
        cleared=sum(status.get(int(r.gate)) == "cleared" for r in rows),
        fallback=sum(status.get(int(r.gate)) == "fallback" for r in rows),
        fallback_reasons=[f"gate {g.gate}: {g.reason}" for g in gate_rows if g.reason],
        settled=sum(r.settled_at is not None for r in rows),
        submissions=int(n_sub),
        readings=int(n_read),
        late_readings=int(n_late),
        quality={str(k): int(v) for k, v in quality.items()},
        traded_kwh=float(sum(r.traded_kwh for r in rows)),
        bill=sum(total(r.cost) for r in rows),
        baseline_bill=sum(total(r.baseline_cost) for r in rows),
    )


def _wait_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base_url}/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {timeout_s:g} s")
        time.sleep(0.1)


def _wait_settled(
    client: Any, token: str, until_s: float, proc: subprocess.Popen[bytes]
) -> list[str]:
    """Poll the operator's status until the clock has done every step (or `until_s`); returns
    the errors its clock met (and retried) on the way.

    Raises:
        RuntimeError: the server exited.
    """
    while True:
        r = client.request("GET", "/v1/operator/status", token=token)
        if r.status == 200:
            clock = r.body["clock"]
            if clock["next_step"] >= clock["n_steps"] or time.time() > until_s:
                return [str(e) for e in clock["errors"]]
        elif time.time() > until_s:
            raise RuntimeError(f"the operator's status answered {r.status}: {r.detail}")
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class _Market:
    """What the live demo's market did, as the agents and the clock saw it."""

    report: Any = None  # the agents' `AgentReport` (None if they did not run)
    info: Any = None  # the market's `MarketInfo` (None if the server never answered)
    boot_s: float = 0.0  # how long the server took to answer [s]


def _run_market(
    base_url: str,
    proc: subprocess.Popen[bytes],
    homes: Any,
    creds: list[Any],
    operator_token: str,
    failures: list[str],
    console: Console,
    quiet: bool,
) -> _Market:
    """The live demo's market: wait for the server (it opens the market as it starts), run
    every home in one agent, wait until every slot is settled. Problems go to `failures`."""
    from peergrid.agent.client import AgentError, MarketClient
    from peergrid.agent.run import HomeAgent, connect

    out = _Market()
    t_start = time.perf_counter()
    try:
        _wait_healthy(base_url, proc, timeout_s=30.0)
    except RuntimeError as e:
        failures.append(str(e))
        return out
    out.boot_s = time.perf_counter() - t_start

    def server_gone() -> str | None:
        code = proc.poll()
        return None if code is None else f"the server exited with code {code}"

    with MarketClient(base_url) as client:
        try:
            out.info = info = connect(client, creds)
            agent = HomeAgent(
                client, info, homes, creds, stop=server_gone, log=_logger(console, quiet)
            )
            cal = agent.calendar
            console.print(
                f"server up on {base_url} in {out.boot_s:.1f} s; market {info.ledger_id.hex()[:16]}"
                f"… opens at {cal.as_utc(cal.start_unix_s):%H:%M:%S} UTC",
                soft_wrap=True,
                highlight=False,
            )
            out.report = agent.run()
            last = cal.settle_time_s(cal.n_slots - 1)
            for err in _wait_settled(client, operator_token, last + 10.0, proc):
                console.print(f"[yellow]note:[/yellow] the clock met (and retried) {err}")
        except (AgentError, RuntimeError) as e:
            failures.append(f"the market stopped: {e}")
    return out


def _summary(totals: _Totals, market: _Market, ledger_text: str, title: str) -> Table:
    """The live demo's results as a table."""
    cur = market.info.currency if market.info is not None else ""
    r = market.report
    refusals = (
        ""
        if r is None
        else f" (refused {r.orders_refused}, late {r.orders_late}, failed {r.orders_failed})"
    )
    q = totals.quality
    rows = [
        (
            "slots cleared / fell back / settled",
            f"{totals.cleared} / {totals.fallback} / {totals.settled} of {totals.n_slots}",
        ),
        ("order submissions accepted", f"{totals.submissions}{refusals}"),
        (
            "meter readings",
            f"{totals.readings} stored ({totals.late_readings} late); slots settled on "
            f"{q.get('measured', 0)} measured, {q.get('trued-up', 0)} trued-up, "
            f"{q.get('estimated', 0)} estimated intervals",
        ),
        ("traded in the community", f"{totals.traded_kwh:,.3f} kWh"),
        (
            "community energy bill",
            f"{totals.bill:,.2f} {cur} vs {totals.baseline_bill:,.2f} {cur} for the same "
            f"metered energy with the retailer alone (saving "
            f"{totals.baseline_bill - totals.bill:,.2f} {cur})",
        ),
        ("ledger", ledger_text),
    ]
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("result")
    for row in rows:
        table.add_row(*row)
    return table


def _failures_of(totals: _Totals) -> list[str]:
    """Why the market is not a success: a slot that fell back, did not clear or settle."""
    out = []
    if totals.fallback:
        out.append(
            f"{totals.fallback} of {totals.n_slots} slots fell back to the retail tariff ("
            + "; ".join(totals.fallback_reasons[:3])
            + ")"
        )
    if totals.cleared + totals.fallback < totals.n_slots:
        out.append(f"only {totals.cleared + totals.fallback} of {totals.n_slots} slots cleared")
    if totals.settled < totals.n_slots:
        out.append(f"only {totals.settled} of {totals.n_slots} slots settled")
    return out


def _demo_scenario(name: str, gate_closure: str, folder: Path) -> tuple[Any, Path]:
    """The demo's scenario with the demo's gate rule, and a file of it for `peergrid serve`
    (its meter file, if any, named absolutely)."""
    from peergrid.scenario.load import load_scenario
    from peergrid.scenario.resolve import to_toml

    base = load_scenario(name)
    update: dict[str, Any] = {
        "market": base.market.model_copy(update={"gate_closure": gate_closure})
    }
    if base.data is not None and base.base_dir is not None:
        meter = str((base.base_dir / base.data.meter_file).resolve())
        update["data"] = base.data.model_copy(update={"meter_file": meter})
    scenario = base.model_copy(update=update).with_base_dir(base.base_dir)
    path = folder / "scenario.toml"
    path.write_text(to_toml(scenario), encoding="utf-8")
    return scenario, path


def _demo_first_slot(scenario: Any, given: int | None, n_slots: int) -> tuple[int, str]:
    """The scenario slot the demo's market starts at (`given`, else the first slot at
    `DEMO_START_LOCAL_H` on the scenario's first local day) and its local start, for people.

    Raises:
        InputError: the demo's slots from there do not lie in the scenario's period.
    """
    import numpy as np

    from peergrid.engine.live import scenario_grid, window_problem

    grid = scenario_grid(scenario)
    if given is None:
        daylight = (grid.local_day == 0) & (grid.local_hour >= DEMO_START_LOCAL_H)
        first = int(np.flatnonzero(daylight)[0]) if np.any(daylight) else 0
    else:
        first = given
    problem = window_problem(grid.n_slots, first, n_slots)
    if problem is not None:
        source = "--slots" if n_slots > grid.n_slots else "--first-slot"
        raise InputError(problem, source=source)
    return first, f"{grid.starts_local[first]:%Y-%m-%d %H:%M} local"


def cmd_live_demo(args: argparse.Namespace, console: Console) -> int:
    _need("httpx", "sqlalchemy", "alembic", "fastapi", "uvicorn", extra="server")
    from peergrid.agent.homes import build_homes
    from peergrid.agent.run import Credentials
    from peergrid.engine.simulate import resolve_full
    from peergrid.ledger.keys import generate_private_key, public_bytes
    from peergrid.ledger.verify import LedgerInvalid, verify_ledger
    from peergrid.markets.gate import parse_gate_closure
    from peergrid.server.admin import add_participant, list_participants
    from peergrid.server.db import engine_for, migrate
    from peergrid.server.ledger_store import SqlLedgerStore
    from peergrid.server.market import load_market
    from peergrid.server.replay import check_replay

    t0 = time.perf_counter()
    n, n_slots, slot_s = args.agents, args.slots, args.slot_seconds
    if n < 1:
        raise InputError("at least one agent", source="--agents")
    if n_slots < 1:
        raise InputError("at least one slot", source="--slots")
    if not slot_s > 0:
        raise InputError("must be positive", source="--slot-seconds")
    workdir = Path(tempfile.mkdtemp(prefix="peergrid-live-demo-"))
    url = args.db or f"sqlite:///{workdir / 'live.db'}"
    server_log = workdir / "server.log"
    failures: list[str] = []
    engine = None
    try:
        scenario, scenario_file = _demo_scenario(args.scenario, args.gate_closure, workdir)
        parse_gate_closure(args.gate_closure, scenario.time.slot_minutes)
        first_slot, starts = _demo_first_slot(scenario, args.first_slot, n_slots)
        n_parts = len(resolve_full(scenario).participants)
        if n > n_parts:
            raise InputError(
                f"the scenario {scenario.name!r} has {n_parts} households: run at most that many",
                source="--agents",
            )
        engine = engine_for(url)
        migrate(engine)
        if list_participants(engine):
            raise InputError(
                "the live demo registers its own participants and opens its own market: give "
                "an empty database (or none: a temporary one)",
                source="--db",
            )
        homes = build_homes(scenario, list(range(n)))
        keys = [generate_private_key() for _ in range(n)]
        members = [
            add_participant(engine, f"home-{i + 1:02d}", "participant", public_bytes(k).hex())
            for i, k in enumerate(keys)
        ]
        creds = [Credentials(m.name, m.token, k) for m, k in zip(members, keys, strict=True)]
        operator = add_participant(engine, "operator", "operator")
        t_setup = time.perf_counter()
        console.print(
            f"live demo: {n} homes of {scenario.name!r} ({', '.join(homes.names[:3])}"
            f"{', …' if n > 3 else ''}), {scenario.market.mechanism} market, "
            f"{args.gate_closure}, {n_slots} slots of {slot_s:g} s from {starts} (the "
            f"scenario's slot {first_slot}); database {url}",
            soft_wrap=True,
            highlight=False,
        )
        port = _free_port()
        # the server opens the market itself once it has started (`serve --scenario`): slot 0
        # then begins a couple of slots after it is up, however long it took to start
        command = [sys.executable, "-m", "peergrid.cli", "serve", "--db", url]
        command += ["--scenario", str(scenario_file), "--slot-seconds", f"{slot_s!r}"]
        command += ["--slots", str(n_slots), "--first-slot", str(first_slot), *_loopback(port)]
        with server_log.open("wb") as log_file:
            proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            market = _run_market(
                f"http://127.0.0.1:{port}",
                proc,
                homes,
                creds,
                operator.token,
                failures,
                console,
                args.quiet,
            )
        finally:
            _stop(proc)
        t_market = time.perf_counter()
        totals = _totals(engine, n_slots)
        failures += _failures_of(totals)
        try:
            verified = verify_ledger(SqlLedgerStore(engine), workers=1)
            ledger_text = (
                f"{verified.entries:,} entries, {verified.heads} signed heads, root "
                f"{verified.root[:16]}…: verified ({verified.signatures} signatures)"
            )
        except LedgerInvalid as e:
            failures.append(f"the ledger does not verify: {e}")
            ledger_text = f"does not verify: {e}"
        # same code, same result: the recorded orders and readings through the lifecycle again
        setup = load_market(engine)
        if setup is not None:
            check = check_replay(engine, setup)
            if check.equal:
                ledger_text += "; replayed: same commitments, bills and root"
            else:
                failures += [f"the replay differs: {d}" for d in check.differences]
        t_end = time.perf_counter()
        table = _summary(totals, market, ledger_text, f"live demo: {n} homes, {n_slots} slots")
        table.caption = (
            f"set-up {t_setup - t0:.1f} s · server start {market.boot_s:.1f} s · market "
            f"{t_market - t_setup - market.boot_s:.1f} s · checks {t_end - t_market:.2f} s · "
            f"total {t_end - t0:.1f} s"
        )
        console.print(table)
        if failures:
            for f in failures:
                console.print(f"[red]FAILED:[/red] {f}", soft_wrap=True, highlight=False)
            tail = _tail(server_log)
            if tail:
                console.print(f"server log (last lines):\n{tail}", soft_wrap=True, highlight=False)
            return 1
    finally:
        if engine is not None:
            engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(
        "[green]OK[/green]: every slot cleared and settled, the ledger verifies and replays",
        highlight=False,
    )
    return 0


# --- the parser -----------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """The `keygen`, `agent` and `live-demo` commands."""
    kg = sub.add_parser("keygen", help="a new Ed25519 key for a home (prints the public key)")
    kg.add_argument("--out", required=True, help="the private key's file (created, mode 0600)")
    kg.set_defaults(func=cmd_keygen)

    ag = sub.add_parser(
        "agent", help="run a home's EMS and smart meter against a live peergrid server"
    )
    ag.add_argument("--server", required=True, help="the server's URL, e.g. http://host:8000")
    ag.add_argument("--participant", required=True, help="the home's name in the market")
    ag.add_argument("--token", help="its API token (default: the PEERGRID_TOKEN variable)")
    ag.add_argument("--key", required=True, help="its private key file (peergrid keygen)")
    ag.add_argument(
        "--scenario",
        help="scenario file or built-in name the home comes from (default: the market's)",
    )
    ag.add_argument(
        "--profile",
        help="the scenario participant the home simulates, by index or name (default: the one "
        "named like the home, else the home's index in the market)",
    )
    ag.add_argument("--quiet", action="store_true", help="no line per gate and slot")
    ag.set_defaults(func=cmd_agent)

    ld = sub.add_parser(
        "live-demo",
        help="a live community on loopback: server, participants, agents, settlement, checks",
    )
    ld.add_argument("--agents", type=int, default=10, help="homes (default 10)")
    ld.add_argument("--slots", type=int, default=12, help="slots to run (default 12)")
    ld.add_argument(
        "--slot-seconds", type=float, default=2.0, help="wall-clock slot length [s] (default 2)"
    )
    ld.add_argument(
        "--db", help="database URL (default: a SQLite file in a temporary directory, removed)"
    )
    ld.add_argument("--scenario", default="demo", help="scenario (default demo)")
    ld.add_argument(
        "--first-slot",
        type=int,
        help="the scenario's slot the market starts at (default: the one at "
        f"{DEMO_START_LOCAL_H:02.0f}:00 local on its first day, so the homes' PV trades)",
    )
    ld.add_argument(
        "--gate-closure",
        default=DEMO_GATE_CLOSURE,
        help=f"the market's gate rule (default {DEMO_GATE_CLOSURE!r})",
    )
    ld.add_argument("--quiet", action="store_true", help="no line per gate and slot")
    ld.set_defaults(func=cmd_live_demo)
