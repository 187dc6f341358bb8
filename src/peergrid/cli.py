"""The `peergrid` command line. A face of the engine: it parses, calls, prints; nothing more."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from peergrid.errors import InputError

LONG_RUN_SLOTS = 5000


def _kpi_table(summary: dict[str, Any]) -> Table:
    cur = summary["cost"]["currency"]
    e, c, k = summary["energy"], summary["cost"], summary["kpi"]
    table = Table(
        title=f"{summary['scenario']} — market {summary['market']}, "
        f"{summary['participants']} participants, {summary['days']} days"
    )
    table.add_column("KPI")
    table.add_column("P2P", justify="right")
    table.add_column("baseline", justify="right")
    rows = [
        ("total bill", f"{c['total']:,.2f} {cur}", f"{c['baseline_total']:,.2f} {cur}"),
        ("savings", f"{c['savings']:,.2f} {cur} ({c['savings_pct']:.1f} %)", ""),
        (
            "grid import",
            f"{e['grid_import_kwh']:,.1f} kWh",
            f"{e['baseline_grid_import_kwh']:,.1f} kWh",
        ),
        (
            "grid export",
            f"{e['grid_export_kwh']:,.1f} kWh",
            f"{e['baseline_grid_export_kwh']:,.1f} kWh",
        ),
        ("P2P traded", f"{e['p2p_traded_kwh']:,.1f} kWh", "0.0 kWh"),
        (
            "self-sufficiency",
            f"{k['self_sufficiency']:.1%}",
            f"{k['baseline_self_sufficiency']:.1%}",
        ),
        (
            "self-consumption",
            f"{k['self_consumption']:.1%}",
            f"{k['baseline_self_consumption']:.1%}",
        ),
        (
            "peak import",
            f"{k['peak_import_kw']:,.1f} kW",
            f"{k['baseline_peak_import_kw']:,.1f} kW",
        ),
        ("peak-to-average", f"{k['peak_to_average']:.2f}", f"{k['baseline_peak_to_average']:.2f}"),
        ("fairness (Jain)", f"{k['fairness_jain']:.3f}", ""),
        ("participants worse off", f"{k['participants_worse_off']}", ""),
    ]
    f, st = summary.get("forecast"), summary.get("settlement")
    if f is not None and st is not None:
        skill = f["skill_vs_persistence"]
        skill_text = ", ".join(
            f"{what} {value:.2f}" for what, value in skill.items() if value is not None
        )
        rows += [
            (
                "forecast",
                f"{f['method']}, gate {st['gate_closure']}",
                "",
            ),
            (
                "forecast MAE demand / PV",
                f"{f['demand_mae_kwh']:.3f} / {f['generation_mae_kwh']:.3f} kWh per slot",
                "",
            ),
            ("forecast skill vs persistence", skill_text or "—", ""),
            (
                f"deviations ({st['deviation_rule']})",
                f"{st['deviation_short_kwh']:,.1f} kWh short, "
                f"{st['deviation_long_kwh']:,.1f} kWh long, {st['deviation_cost']:,.2f} {cur}",
                "",
            ),
        ]
        if "forecast_error_cost" in c:
            rows += [
                (
                    "perfect foresight: bill",
                    f"{c['perfect_foresight_total']:,.2f} {cur}",
                    "",
                ),
                ("cost of forecast error", f"{c['forecast_error_cost']:,.2f} {cur}", ""),
            ]
    net = summary.get("network")
    if net is not None:
        b = net["baseline"]
        lim = net["limits"]
        rows += [
            (
                f"voltage range [{lim['v_min_pu']}–{lim['v_max_pu']} pu]",
                f"{net['min_voltage_pu']:.3f}–{net['max_voltage_pu']:.3f} pu",
                f"{b['min_voltage_pu']:.3f}–{b['max_voltage_pu']:.3f} pu",
            ),
            (
                "slots with voltage violation",
                f"{net['voltage_violation_slots']}",
                f"{b['voltage_violation_slots']}",
            ),
            ("slots with overload", f"{net['overload_slots']}", f"{b['overload_slots']}"),
            ("network losses", f"{net['losses_kwh']:,.1f} kWh", f"{b['losses_kwh']:,.1f} kWh"),
            ("PV curtailed", f"{net['curtailed_kwh']:,.1f} kWh", f"{b['curtailed_kwh']:,.1f} kWh"),
        ]
        free = net.get("unconstrained")
        if free is not None:
            rows += [
                (
                    "unconstrained P2P: violations",
                    f"{free['voltage_violation_slots']} voltage, {free['overload_slots']} "
                    f"overload slots (max {free['max_voltage_pu']:.3f} pu, "
                    f"{free['max_loading_pct']:.0f} %)",
                    "",
                ),
                ("unconstrained P2P: total bill", f"{free['total']:,.2f} {cur}", ""),
                (
                    "unconstrained P2P: savings",
                    f"{free['savings']:,.2f} {cur} ({free['savings_pct']:.1f} %)",
                    "",
                ),
            ]
    for row in rows:
        table.add_row(*row)
    table.caption = (
        f"demand {e['demand_kwh']:,.0f} kWh · PV {e['generation_kwh']:,.0f} kWh · "
        f"run {summary['runtime_s']:.2f} s"
    )
    return table


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from peergrid.engine.simulate import simulate
    from peergrid.rundir import write_run
    from peergrid.scenario.load import load_scenario

    scenario = load_scenario(args.scenario)
    market = args.market or scenario.market.mechanism
    out = (
        Path(args.out)
        if args.out
        else Path("out") / (scenario.name if not args.market else f"{scenario.name}-{market}")
    )
    show_progress = (
        not args.quiet
        and scenario.time.days * 24 * 60 / scenario.time.slot_minutes >= LONG_RUN_SLOTS
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.ledger-", dir=out.parent))
    ledger = None if args.no_ledger else staging / "ledger.sqlite"
    try:
        if show_progress:
            with Progress(
                TextColumn("[bold]simulating"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("slots", total=1)

                def on_progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = simulate(
                    scenario,
                    market=args.market,
                    forecast=args.forecast,
                    on_progress=on_progress,
                    ledger_path=ledger,
                )
        else:
            result = simulate(
                scenario, market=args.market, forecast=args.forecast, ledger_path=ledger
            )
        path = write_run(result, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not args.quiet:
        console.print(_kpi_table(result.summary))
    console.print(f"run directory: {path}")
    console.print(f"report: {path / 'report.html'}")
    led = result.summary.get("ledger")
    if led:
        console.print(
            f"ledger: {path / 'ledger.sqlite'} ({led['entries']:,} entries, root "
            f"{led['root'][:16]}…; check it with `peergrid ledger verify {path}`)",
            soft_wrap=True,
        )
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from peergrid.engine.compare import compare
    from peergrid.rundir import write_comparison
    from peergrid.scenario.load import load_scenario

    scenario = load_scenario(args.scenario)
    markets = [m.strip() for m in args.markets.split(",") if m.strip()]
    out = Path(args.out) if args.out else Path("out") / f"{scenario.name}-compare"
    comparison = compare(scenario, markets, forecast=args.forecast)
    path = write_comparison(comparison, out)
    table = Table(
        title=f"{scenario.name}: market designs compared",
        caption="PF: with perfect foresight (each design's twin); the full table is kpis.csv",
    )
    cur = scenario.tariff.currency
    heads = {
        "market": "market",
        "family": "family",
        "savings_pct": "saving %",
        "perfect_foresight_savings_pct": "PF saving %",
        "forecast_error_cost": f"forecast error {cur}",
        "rank": "rank",
        "rank_perfect_foresight": "PF rank",
        "fairness_jain": "Jain",
        "participants_worse_off": "worse off",
        "market_s": "loop s",
    }
    cols = list(heads)
    for col in cols:
        table.add_column(heads[col], justify="left" if col in ("market", "family") else "right")
    for _, row in comparison.table().iterrows():
        table.add_row(
            *[f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        )
    console.print(table)
    console.print(f"comparison: {path / 'compare.html'}")
    return 0


def cmd_clear(args: argparse.Namespace, console: Console) -> int:
    from peergrid.markets.api import clear, parse_params
    from peergrid.markets.book import read_book

    book = read_book(Path(args.book))
    report = clear(
        book,
        args.mechanism,
        retail=args.retail,
        feed_in=args.feed_in,
        **parse_params(args.param or []),
    )
    sys.stdout.write(report.to_json() + "\n")
    return 0


def cmd_scenarios(args: argparse.Namespace, console: Console) -> int:
    from peergrid.scenario.load import builtin_descriptions

    table = Table(title="built-in scenarios (peergrid scenario show NAME)")
    table.add_column("name")
    table.add_column("description")
    for name, desc in builtin_descriptions().items():
        table.add_row(name, desc)
    console.print(table)
    return 0


def cmd_scenario_show(args: argparse.Namespace, console: Console) -> int:
    from peergrid.scenario.load import builtin_text

    sys.stdout.write(builtin_text(args.name))
    return 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from peergrid.engine.simulate import resolve_full
    from peergrid.scenario.load import load_scenario

    scenario = load_scenario(args.scenario)
    resolved = resolve_full(scenario)
    net = resolved.network
    on_feeder = ""
    if net is not None:
        where = net.feeder if net.feeder is not None else Path(str(net.file)).name
        on_feeder = f", feeder {where}: {len(set(net.buses.values()))} buses used"
    console.print(
        f"{args.scenario}: valid ({len(resolved.participants)} participants, "
        f"{scenario.time.days} days, market {resolved.market.mechanism}, gate "
        f"{resolved.market.gate_closure}, forecast {resolved.forecast.method}, deviations "
        f"{resolved.settlement.deviation_rule}{on_feeder})"
    )
    return 0


def cmd_markets(args: argparse.Namespace, console: Console) -> int:
    from peergrid.markets.registry import list_mechanisms

    table = Table(title="market mechanisms")
    for col in ("name", "family", "description", "parameters"):
        table.add_column(col)
    for info in list_mechanisms():
        params = ", ".join(f"{p}" for p in _param_names(info))
        table.add_row(info.name, info.family, info.description, params or "—")
    console.print(table)
    return 0


def _param_names(info: Any) -> list[str]:
    params = getattr(info, "params", None) or getattr(info, "parameters", None) or []
    out = []
    for p in params:
        if isinstance(p, str):
            out.append(p)
        else:
            name = getattr(p, "name", None) or (p.get("name") if isinstance(p, dict) else str(p))
            default = getattr(p, "default", None) if not isinstance(p, dict) else p.get("default")
            out.append(f"{name}={default}" if default is not None else str(name))
    return out


def cmd_ems(args: argparse.Namespace, console: Console) -> int:
    from peergrid.ems.registry import list_policies

    table = Table(title="EMS policies")
    for col in ("name", "description", "parameters"):
        table.add_column(col)
    for info in list_policies():
        table.add_row(info.name, info.description, ", ".join(_param_names(info)) or "—")
    console.print(table)
    return 0


def cmd_forecasters(args: argparse.Namespace, console: Console) -> int:
    from peergrid.forecast.registry import list_forecasters

    table = Table(title="forecasters (scenario: \\[forecast] method = NAME, or --forecast NAME)")
    for col in ("name", "description", "parameters"):
        table.add_column(col)
    for info in list_forecasters():
        table.add_row(info.name, info.description, ", ".join(_param_names(info)) or "—")
    console.print(table)
    return 0


def cmd_feeders(args: argparse.Namespace, console: Console) -> int:
    from peergrid.network.feeders import builtin_feeders

    table = Table(title="built-in feeders (scenario: \\[network] feeder = NAME)")
    table.add_column("feeder")
    table.add_column("description")
    table.add_column("source")
    for info in builtin_feeders():
        table.add_row(info.name, info.description, info.source)
    table.caption = 'or [network] file = "my-grid.json" (pandapower JSON); needs peergrid[network]'
    console.print(table)
    return 0


def cmd_weather(args: argparse.Namespace, console: Console) -> int:
    from peergrid.data.weather import WEATHER_SOURCES

    table = Table(title="offline weather sources")
    table.add_column("source")
    table.add_column("description")
    for name, desc in _weather_rows(WEATHER_SOURCES):
        table.add_row(name, desc)
    console.print(table)
    return 0


def _weather_rows(sources: Any) -> list[tuple[str, str]]:
    if isinstance(sources, dict):
        items = list(sources.items())
    else:
        items = [(getattr(s, "name", str(s)), s) for s in sources]
    rows = []
    for name, value in items:
        desc = value if isinstance(value, str) else getattr(value, "description", str(value))
        rows.append((str(name), str(desc)))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peergrid",
        description="Peer-to-peer energy sharing in connected communities: simulate, compare, "
        "clear markets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a scenario (file or built-in name)")
    run.add_argument(
        "scenario",
        nargs="?",
        default="demo",
        help="scenario TOML file or built-in name (default: demo)",
    )
    run.add_argument("--market", help="market mechanism (overrides the scenario's)")
    run.add_argument(
        "--forecast",
        help="forecaster of the homes' EMS (overrides the scenario's; see forecasters)",
    )
    run.add_argument("--out", help="run directory (default: out/<scenario>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no KPI table")
    run.add_argument(
        "--no-ledger",
        action="store_true",
        help="skip the ledger (signed orders, Merkle tree, postings): faster design sweeps",
    )
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="run one scenario under several market designs")
    cmp_.add_argument("scenario", help="scenario TOML file or built-in name")
    cmp_.add_argument("--markets", required=True, help="comma-separated mechanism names")
    cmp_.add_argument(
        "--forecast",
        help="forecaster of the homes' EMS (overrides the scenario's; see forecasters)",
    )
    cmp_.add_argument("--out", help="output directory (default: out/<scenario>-compare)")
    cmp_.set_defaults(func=cmd_compare)

    clr = sub.add_parser("clear", help="clear one order book (CSV) and print the result as JSON")
    clr.add_argument("book", help="CSV with columns id,participant,side,quantity_kwh,price")
    clr.add_argument("--mechanism", required=True, help="market mechanism (peergrid markets)")
    clr.add_argument("--retail", type=float, help="retail import price [currency/kWh]")
    clr.add_argument("--feed-in", type=float, help="feed-in export price [currency/kWh]")
    clr.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="mechanism parameter (repeatable)"
    )
    clr.set_defaults(func=cmd_clear)

    sc = sub.add_parser("scenarios", help="list built-in scenarios")
    sc.set_defaults(func=cmd_scenarios)

    show = sub.add_parser("scenario", help="built-in scenario templates")
    show_sub = show.add_subparsers(dest="action", required=True)
    show_cmd = show_sub.add_parser("show", help="print a built-in scenario as a commented template")
    show_cmd.add_argument("name")
    show_cmd.set_defaults(func=cmd_scenario_show)

    val = sub.add_parser("validate", help="check a scenario without running it")
    val.add_argument("scenario")
    val.set_defaults(func=cmd_validate)

    sub.add_parser("markets", help="list market mechanisms").set_defaults(func=cmd_markets)
    sub.add_parser("ems", help="list EMS policies").set_defaults(func=cmd_ems)
    sub.add_parser("forecasters", help="list forecasters").set_defaults(func=cmd_forecasters)
    sub.add_parser("weather", help="list offline weather sources").set_defaults(func=cmd_weather)
    sub.add_parser("feeders", help="list built-in LV feeders").set_defaults(func=cmd_feeders)
    from peergrid.cli_ledger import add_parser as add_ledger_parser

    add_ledger_parser(sub)
    from peergrid.cli_privacy import add_parser as add_privacy_parser

    add_privacy_parser(sub)
    from peergrid.cli_admin import add_parser as add_admin_parser

    add_admin_parser(sub)
    from peergrid.cli_live import add_parser as add_live_parser

    add_live_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    try:
        code: int = args.func(args, console)
    except InputError as exc:
        sys.stderr.write(f"peergrid: error: {exc}\n")
        return InputError.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("peergrid: interrupted; nothing was written\n")
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
