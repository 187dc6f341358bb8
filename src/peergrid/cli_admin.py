"""The live platform's commands: `peergrid admin …` (the operator's registry of participants)
and `peergrid serve` (the HTTP API), on the platform's database (`--db`, default a SQLite file
`peergrid.db`; PostgreSQL with `postgresql://…`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from peergrid.errors import InputError


def _need_server_extra(web: bool = False) -> None:
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401

        if web:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
    except ImportError as e:
        raise InputError(
            f"the live platform needs the 'server' extra: pip install 'peergrid[server]' ({e})"
        ) from e


def _engine(url: str) -> Any:
    from sqlalchemy.exc import OperationalError

    from peergrid.server.db import engine_for, migrate

    engine = engine_for(url)
    try:
        migrate(engine)
    except OperationalError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
        raise InputError(f"cannot open the database: {reason}", source="--db") from e
    except BaseException:
        engine.dispose()
        raise
    return engine


def cmd_add(args: argparse.Namespace, console: Console) -> int:
    _need_server_extra()
    from peergrid.server.admin import add_participant

    engine = _engine(args.db)
    try:
        reg = add_participant(engine, args.name, args.role, args.public_key)
    finally:
        engine.dispose()
    console.print(f"added {reg.name} ({reg.role}) as #{reg.id}", soft_wrap=True)
    console.print(f"API token (shown once, keep it secret): {reg.token}", soft_wrap=True)
    return 0


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    _need_server_extra()
    from peergrid.server.admin import list_participants

    engine = _engine(args.db)
    try:
        rows = list_participants(engine)
    finally:
        engine.dispose()
    table = Table("id", "name", "role", "public key", "added (UTC)")
    for r in rows:
        key = str(r["public_key"])
        table.add_row(
            str(r["id"]),
            str(r["name"]),
            str(r["role"]),
            key[:16] + ("…" if key else ""),
            str(r["created_at"])[:19],
        )
    console.print(table)
    console.print(f"{len(rows)} accounts")
    return 0


def _open_market(engine: Any, args: argparse.Namespace, console: Console) -> None:
    """Open the database's market for `args.scenario` (and print its calendar)."""
    import datetime as dt

    from peergrid.scenario.load import load_scenario
    from peergrid.server.market import open_market

    start = None
    if getattr(args, "start", None):
        try:
            when = dt.datetime.fromisoformat(args.start)
        except ValueError as e:
            raise InputError(f"not an ISO 8601 instant: {args.start!r}", source="--start") from e
        if when.tzinfo is None:
            raise InputError("give the instant with its UTC offset", source="--start")
        start = when.timestamp()
    setup = open_market(
        engine,
        load_scenario(args.scenario),
        start_unix_s=start,
        slot_seconds=getattr(args, "slot_seconds", None),
        n_slots=getattr(args, "slots", None),
        first_slot=getattr(args, "first_slot", None),
    )
    cal = setup.calendar
    a, b = cal.first_slot, cal.first_slot + cal.n_slots - 1
    shifted = f" (the scenario's slots {a}–{b})" if a else ""
    console.print(
        f"opened market {setup.genesis.ledger_id.hex()} ({setup.scenario.name}, "
        f"{setup.market.name}, {cal.gates.closure}) for {setup.n_participants} participants: "
        f"{cal.n_slots} slots of {cal.slot_seconds:g} s from "
        f"{cal.as_utc(cal.start_unix_s).isoformat()}{shifted}",
        soft_wrap=True,
    )


def cmd_open(args: argparse.Namespace, console: Console) -> int:
    _need_server_extra()
    engine = _engine(args.db)
    try:
        _open_market(engine, args, console)
    finally:
        engine.dispose()
    return 0


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    _need_server_extra()
    from peergrid.server.market import load_market
    from peergrid.server.replay import check_replay

    engine = _engine(args.db)
    try:
        setup = load_market(engine)
        if setup is None:
            raise InputError("no market is open in this database", source="--db")
        check = check_replay(engine, setup)
    finally:
        engine.dispose()
    console.print(
        f"replayed {check.slots_settled} settled slots through the lifecycle: ledger root "
        f"{check.root_replay} ({check.entries} entries); database {check.root_database}",
        soft_wrap=True,
    )
    if check.equal:
        console.print("same commitments, costs, ledger bills and ledger root")
        return 0
    for d in check.differences:
        console.print(f"[red]differs[/red]: {d}", soft_wrap=True)
    return 1


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    _need_server_extra(web=True)
    import uvicorn

    from peergrid.server.app import create_app
    from peergrid.server.market import load_market

    mqtt = None
    if args.mqtt is not None:
        from peergrid.server.mqtt import broker_address

        mqtt = broker_address(args.mqtt)
    engine = _engine(args.db)
    try:
        if args.scenario is not None and load_market(engine) is None:
            _open_market(engine, args, console)
        console.print(
            f"peergrid serving {engine.dialect.name} database on http://{args.host}:{args.port} "
            "(OpenAPI at /openapi.json)",
            soft_wrap=True,
        )
        if mqtt is not None:
            console.print(
                f"meter readings over MQTT from {mqtt[0]}:{mqtt[1]} "
                "(peergrid/<ledger-id>/meters/+/readings)",
                soft_wrap=True,
            )
        # The server's threads hand the GIL around every database call; with Python's default
        # 5 ms switch interval a thread back from SQLite or the network waits up to 5 ms for it
        # while another computes, so under load every transaction stretches (a lock convoy).
        sys.setswitchinterval(0.0005)
        app = create_app(engine, mqtt=mqtt)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        engine.dispose()
    return 0


def add_parser(sub: Any) -> None:
    """The `admin` command and its subcommands."""
    from peergrid.server.constants import DEFAULT_URL, ROLES

    adm = sub.add_parser("admin", help="the live platform's participants (operator)")
    asub = adm.add_subparsers(dest="admin_command", required=True)
    a = asub.add_parser("add-participant", help="register an account and print its API token")
    a.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    a.add_argument("--name", required=True)
    a.add_argument("--role", choices=ROLES, default="participant")
    a.add_argument("--public-key", help="Ed25519 public key, hex of 32 bytes (participants)")
    a.set_defaults(func=cmd_add)
    ls = asub.add_parser("list", help="list the accounts (no tokens)")
    ls.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    ls.set_defaults(func=cmd_list)
    om = asub.add_parser(
        "open-market",
        help="open the database's market for a scenario (the members: every participant)",
    )
    om.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    _market_args(om, required=True)
    om.set_defaults(func=cmd_open)
    rp = asub.add_parser(
        "replay",
        help="replay the market's recorded orders and readings through the lifecycle and "
        "compare with the database (exit 1 if anything differs)",
    )
    rp.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    rp.set_defaults(func=cmd_replay)
    sv = sub.add_parser("serve", help="the live platform: HTTP API, market clock, dashboard")
    sv.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    _market_args(sv, required=False)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        help="take the meters' signed readings from this MQTT broker too (default: off)",
    )
    sv.set_defaults(func=cmd_serve)


def _market_args(p: Any, required: bool) -> None:
    p.add_argument(
        "--scenario",
        required=required,
        help="scenario file or built-in name"
        + ("" if required else " (opens the market when the database has none)"),
    )
    p.add_argument("--start", help="when slot 0 starts, ISO 8601 with offset (default: soon)")
    p.add_argument(
        "--slot-seconds", type=float, help="wall-clock slot length [s] (default: real time)"
    )
    p.add_argument(
        "--slots", type=int, help="slots to run (default: the rest of the scenario's period)"
    )
    p.add_argument(
        "--first-slot",
        type=int,
        help="the slot of the scenario's period that is the market's slot 0 (default: the "
        "scenario's [live] first_slot, else 0: local midnight of its first day)",
    )
