"""A run's report as one self-contained, offline HTML document.

`render_report(ReportData) -> str` writes a page with a header (scenario, market, EMS, period in
local time, participants, slot length), a table of key figures (P2P next to the baseline without
P2P trading, with units), six inline-SVG figures and a per-participant table. The page loads
nothing: no scripts, fonts, style sheets or images from elsewhere. Every text that comes from
users (title, names, scenario, summary keys) is HTML-escaped.

Long runs are aggregated before plotting (community totals; hourly means up to 31 days, daily
means with daily peaks or min-max bands beyond, see `peergrid.report.plots`), so a year of
15-minute slots with 100 participants renders in under a second and gives a page of about
0.7 MB.

Conventions of the inputs:
- energies in `series` are per slot [kWh], arrays (T, P) on `grid`; `*_soc_end_kwh` are storage
  states at the end of each slot [kWh]; `*_capacity_kwh` are (P,) with 0 where a participant has
  no such storage;
- `summary["kpi"]["self_sufficiency"]` and `["self_consumption"]` are fractions in [0, 1];
  `summary["cost"]["savings_pct"]` is in percent; money is in `currency`;
- a summary key `baseline_<name>` is the baseline counterpart of `<name>` in the same section.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray

from peergrid.network.kpi import NetworkKpis
from peergrid.report import plots
from peergrid.report.format import (
    MINUS,
    NA,
    KpiRow,
    column_head,
    escape,
    format_change,
    format_value,
    kpi_table,
    number_text,
    table,
)
from peergrid.report.network import ANCHOR as NETWORK_ANCHOR
from peergrid.report.network import NetworkReportData, network_section
from peergrid.report.page import document
from peergrid.report.public import PublicReportData, public_section
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]

SLOT_SERIES = (
    "demand_kwh",
    "generation_kwh",
    "storage_charge_kwh",
    "storage_discharge_kwh",
    "net_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "battery_soc_end_kwh",
    "ev_soc_end_kwh",
    "baseline_grid_import_kwh",
    "baseline_grid_export_kwh",
    "committed_kwh",
    "deviation_kwh",
)
"""Keys of `ReportData.series` holding (T, P) arrays."""

PARTICIPANT_SERIES = ("battery_capacity_kwh", "ev_capacity_kwh")
"""Keys of `ReportData.series` holding (P,) arrays."""

PARTICIPANT_COLUMNS = ("participant", "baseline_bill", "bill", "saving")
"""Columns of `ReportData.participants` the report needs (others are shown when present)."""


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything the report shows about one run; built by the engine.

    Attributes:
        title: page title, e.g. "demo — sdr".
        grid: the run's slot grid (T = grid.n_slots slots).
        names: participant names, length P.
        summary: nested dict of run facts and KPIs (see the module docstring); unknown keys
            and sections are shown generically.
        participants: one row per participant: participant, baseline_bill, bill, saving,
            saving_pct, grid_import_kwh, grid_export_kwh, p2p_bought_kwh, p2p_sold_kwh.
        series: (T, P) arrays keyed by `SLOT_SERIES` [kWh per slot, or kWh at slot end for
            SoC] and (P,) arrays keyed by `PARTICIPANT_SERIES` [kWh].
        prices: one row per slot: slot_start (UTC), retail_price, feed_in_price,
            clearing_price, buy_price, sell_price [currency/kWh], p2p_traded_kwh,
            operator_surplus; NaN where a mechanism has no such price.
        currency: currency code of every money value, e.g. "EUR".
        network: the feeder's voltages, loading and losses (`report.network`), or None.
        public: what the community publishes (`report.public`), or None.
    """

    title: str
    grid: SlotGrid
    names: list[str]
    summary: dict[str, Any]
    participants: pd.DataFrame
    series: dict[str, FloatArray]
    prices: pd.DataFrame
    currency: str
    network: NetworkReportData | None = None
    public: PublicReportData | None = None


def _check(data: ReportData) -> None:
    """Fail early, naming the field, if the arrays do not fit the grid and the participants."""
    n_slots, n_part = data.grid.n_slots, len(data.names)
    if n_part < 1:
        raise ValueError("ReportData.names: at least one participant is needed")
    for key in SLOT_SERIES:
        if key not in data.series:
            raise ValueError(f"ReportData.series: missing {key!r}")
        shape = np.shape(data.series[key])
        if shape != (n_slots, n_part):
            raise ValueError(
                f"ReportData.series[{key!r}]: shape {shape}, expected ({n_slots}, {n_part})"
            )
    for key in PARTICIPANT_SERIES:
        if key not in data.series:
            raise ValueError(f"ReportData.series: missing {key!r}")
        shape = np.shape(data.series[key])
        if shape != (n_part,):
            raise ValueError(f"ReportData.series[{key!r}]: shape {shape}, expected ({n_part},)")
    missing = [c for c in PARTICIPANT_COLUMNS if c not in data.participants.columns]
    if missing:
        raise ValueError(f"ReportData.participants: missing columns {missing}")
    if len(data.participants) != n_part:
        raise ValueError(
            f"ReportData.participants: {len(data.participants)} rows, expected {n_part}"
        )
    if len(data.prices) != n_slots:
        raise ValueError(f"ReportData.prices: {len(data.prices)} rows, expected {n_slots}")


# --- summary -------------------------------------------------------------------------------

# Shown in the header (or derived there from the grid), so not repeated under "More figures".
_HEADER_KEYS = (
    "scenario",
    "market",
    "ems",
    "participants",
    "slots",
    "slot_minutes",
    "days",
    "start_local",
    "timezone",
    "seed",
    "runtime_s",
)
_SECTIONS = (
    ("energy", "Energy"),
    ("cost", "Cost"),
    ("kpi", "Indicators"),
    ("forecast", "Forecasts at gate closure"),
    ("settlement", "Settlement of deviations"),
)

# path -> (label, unit, meaning for newcomers)
_KNOWN: dict[str, tuple[str, str, str]] = {
    "energy.demand_kwh": ("Demand", "kWh", "Electricity the participants used."),
    "energy.generation_kwh": ("Generation", "kWh", "Electricity the participants produced."),
    "energy.grid_import_kwh": ("Grid import", "kWh", "Bought from the supplier over the grid."),
    "energy.grid_export_kwh": ("Grid export", "kWh", "Sold to the supplier over the grid."),
    "energy.p2p_traded_kwh": ("P2P traded", "kWh", "Shared between participants."),
    "energy.storage_charge_kwh": ("Storage charged", "kWh", "Into batteries and EVs."),
    "energy.storage_discharge_kwh": ("Storage discharged", "kWh", "Out of batteries and EVs."),
    "energy.ev_unserved_kwh": (
        "EV energy not served",
        "kWh",
        "Driving energy the EVs lacked at departure.",
    ),
    "cost.total": ("Community bill", "currency", "Sum of all participants' bills."),
    "cost.savings": ("Community saving", "currency", "Baseline bill minus bill with P2P."),
    "cost.savings_pct": (
        "Saving against baseline",
        "%",
        "How much lower the community bill is than without P2P trading.",
    ),
    "cost.fixed_charges": ("Fixed charges", "currency", "Standing charges, in both bills."),
    "cost.operator_surplus": (
        "Market operator surplus",
        "currency",
        "What the mechanism keeps between buyers' and sellers' prices.",
    ),
    "kpi.self_sufficiency": (
        "Self-sufficiency",
        "frac",
        "Share of consumption not imported from the grid.",
    ),
    "kpi.self_consumption": (
        "Self-consumption",
        "frac",
        "Share of generation used inside the community.",
    ),
    "kpi.peak_import_kw": (
        "Peak grid import",
        "kW",
        "Highest average import power in any slot.",
    ),
    "kpi.peak_to_average": ("Peak-to-average ratio", "-", "Peak import over mean import."),
    "kpi.fairness_jain": (
        "Fairness (Jain index)",
        "-",
        "1 when all participants gain alike, lower when gains are uneven.",
    ),
    "kpi.participants_worse_off": (
        "Participants worse off",
        "count",
        "Participants paying more than without P2P trading.",
    ),
    "cost.perfect_foresight_total": (
        "Total bill with perfect foresight",
        "currency",
        "The same market if every home had known its demand and PV exactly.",
    ),
    "cost.forecast_error_cost": (
        "Cost of forecast error",
        "currency",
        "Total bill minus the bill with perfect foresight.",
    ),
    "cost.perfect_foresight_savings": (
        "Savings with perfect foresight",
        "currency",
        "What the market would save against the baseline with perfect forecasts.",
    ),
    "forecast.method": ("Forecaster", "", "How each home's EMS forecast demand and PV."),
    "forecast.history_days": ("History", "count", "Days of meter data before the run [d]."),
    "forecast.demand_mae_kwh": (
        "Demand forecast MAE",
        "kWh",
        "Mean absolute error per slot and household of the forecasts the bids used.",
    ),
    "forecast.generation_mae_kwh": (
        "PV forecast MAE",
        "kWh",
        "Mean absolute error per slot and household of the PV forecasts the bids used.",
    ),
    "settlement.gate_closure": ("Gate closure", "", "When orders for each slot were due."),
    "settlement.deviation_rule": (
        "Deviation rule",
        "",
        "How metered − committed energy is settled.",
    ),
    "settlement.deviation_short_kwh": (
        "Short deviations",
        "kWh",
        "Energy taken beyond, or delivered below, the commitments.",
    ),
    "settlement.deviation_long_kwh": (
        "Long deviations",
        "kWh",
        "Energy delivered beyond, or taken below, the commitments.",
    ),
    "settlement.deviation_cost": ("Deviation cost", "currency", "What the deviations cost."),
    "settlement.participants_paid": (
        "Participants paid",
        "currency",
        "Everything the participants paid for energy (negative: received).",
    ),
    "settlement.retailer_revenue": (
        "Retailer received",
        "currency",
        "What the retailer received for the energy it supplied and took.",
    ),
    "settlement.operator_revenue": (
        "Operator received",
        "currency",
        "Market surplus and penalty spreads kept by the market operator.",
    ),
}

_SUFFIX_UNITS = (
    ("_per_kwh", "currency/kWh"),
    ("_kwh", "kWh"),
    ("_mwh", "MWh"),
    ("_wh", "Wh"),
    ("_kwp", "kWp"),
    ("_kw", "kW"),
    ("_mw", "MW"),
    ("_pct", "%"),
    ("_frac", "frac"),
    ("_pu", "p.u."),
    ("_min", "min"),
    ("_s", "s"),
    ("_h", "h"),
)


def _describe(path: str, key: str) -> tuple[str, str, str]:
    """Label, unit and meaning of a summary leaf; unknown keys get their unit from the suffix."""
    if path in _KNOWN:
        return _KNOWN[path]
    for suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            stem = key[: -len(suffix)]
            return stem.replace("_", " ").capitalize(), unit, ""
    section = path.split(".", 1)[0]
    unit = "currency" if section == "cost" else ""
    return key.replace("_", " ").capitalize(), unit, ""


@dataclass(frozen=True)
class _Row:
    label: str
    unit: str
    meaning: str
    value: object
    baseline: object = None
    has_baseline: bool = False


def _section_rows(name: str, section: Mapping[str, Any]) -> Iterator[_Row]:
    """Rows of one summary section, pairing `x` with `baseline_x`; known keys first."""
    known = [p.split(".", 1)[1] for p in _KNOWN if p.startswith(name + ".")]
    keys = [k for k in known if k in section] + [k for k in section if k not in known]
    paired = {f"baseline_{k}" for k in keys if f"baseline_{k}" in section}
    for key in keys:
        value = section[key]
        if key in paired or key == "currency" or isinstance(value, Mapping):
            continue
        label, unit, meaning = _describe(f"{name}.{key}", key)
        base_key = f"baseline_{key}"
        if base_key in section:
            yield _Row(label, unit, meaning, value, section[base_key], has_baseline=True)
        else:
            yield _Row(label, unit, meaning, value)


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _extra_leaves(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Summary leaves shown neither in the header nor in a known section's table."""
    out: list[tuple[str, Any]] = []
    sections = {name for name, _ in _SECTIONS}
    for key, value in summary.items():
        if key in _HEADER_KEYS:
            continue
        if key in sections and isinstance(value, Mapping):
            # Nested dicts inside a known section are not table rows: list them here.
            for sub, item in value.items():
                if isinstance(item, Mapping):
                    out.extend(_flatten(item, f"{key}.{sub}"))
            continue
        out.extend(_flatten(value, str(key)))
    return out


# --- HTML pieces ---------------------------------------------------------------------------


def _utc_offset_text(offsets: pd.Index) -> str:
    def one(delta: pd.Timedelta) -> str:
        minutes = int(delta.total_seconds() // 60)
        sign = "+" if minutes >= 0 else MINUS
        return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    texts = [one(d) for d in offsets]
    if len(texts) == 1:
        return texts[0]
    return " / ".join(texts) + " (the clock changes during the run)"


def _header(data: ReportData) -> str:
    grid, summary = data.grid, data.summary
    loc = grid.starts_local
    start = loc[0]
    end = loc[-1] + pd.Timedelta(minutes=grid.slot_minutes)
    offsets = (
        pd.Index(loc.tz_localize(None) - grid.starts_utc.tz_localize(None)).unique().sort_values()
    )
    period = (
        f"{start:%a %Y-%m-%d %H:%M} to {end:%a %Y-%m-%d %H:%M} local time "
        f"({grid.days} day{'s' if grid.days != 1 else ''})"
    )
    rows: list[tuple[str, str]] = [
        ("Scenario", str(summary.get("scenario", data.title))),
        ("Market mechanism", str(summary.get("market", NA))),
        ("Energy management (EMS)", str(summary.get("ems", NA))),
        ("Period", period),
        ("Time zone", f"{grid.timezone}, {_utc_offset_text(offsets)}"),
        ("Participants", f"{len(data.names):,}"),
        ("Slot length", f"{grid.slot_minutes} min ({grid.n_slots:,} slots)"),
        ("Currency", data.currency),
    ]
    if "seed" in summary:
        rows.append(("Random seed", str(summary["seed"])))
    if "runtime_s" in summary:
        rows.append(("Simulation runtime", format_value(summary["runtime_s"], "s", data.currency)))
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        f"<header><h1>{escape(data.title)}</h1>"
        '<p class="muted">Peer-to-peer energy sharing: simulation report</p>'
        f'<table class="meta">{body}</table></header>'
    )


def _kpi_rows(data: ReportData) -> Iterator[KpiRow | str]:
    """The key-figure table: a heading per summary section, then its rows."""
    cur = data.currency
    for name, title in _SECTIONS:
        section = data.summary.get(name)
        if not isinstance(section, Mapping):
            continue
        rows = list(_section_rows(name, section))
        if not rows:
            continue
        yield title
        for row in rows:
            base = format_value(row.baseline, row.unit, cur) if row.has_baseline else ""
            change = (
                format_change(row.value, row.baseline, row.unit, cur) if row.has_baseline else ""
            )
            yield (row.label, format_value(row.value, row.unit, cur), base, change, row.meaning)


def _unconstrained_note(summary: Mapping[str, Any], currency: str) -> str:
    """The operator's rules against unconstrained P2P, when the run simulated both."""
    net = summary.get("network")
    free = net.get("unconstrained") if isinstance(net, Mapping) else None
    if not isinstance(free, Mapping) or not isinstance(net, Mapping):
        return ""
    cost = summary["cost"]

    def both(key: str, unit: str) -> tuple[str, str]:
        return number_text(free[key], unit), number_text(net[key], unit)

    def volts(case: Mapping[str, Any]) -> str:
        return f"{number_text(case['max_voltage_pu'], 'p.u.')} / " + number_text(
            case["min_voltage_pu"], "p.u."
        )

    def savings(case: Mapping[str, Any]) -> str:
        money = format_value(case["savings"], "currency", currency)
        return f"{money} ({format_value(case['savings_pct'], '%')})"

    rows = [
        ("Slots with a voltage violation", *both("voltage_violation_slots", "count")),
        ("Highest / lowest voltage [p.u.]", volts(free), volts(net)),
        ("Slots with an overload", *both("overload_slots", "count")),
        ("Highest loading [%]", *both("max_loading_pct", "%")),
        ("Curtailed PV [kWh]", *both("curtailed_kwh", "kWh")),
        ("P2P savings against the baseline", savings(free), savings(cost)),
        (
            "Community bill",
            format_value(free["total"], "currency", currency),
            format_value(cost["total"], "currency", currency),
        ),
    ]
    heads = ("Figure", "Unconstrained P2P", "With the operator's rules")
    return (
        '<section><h2 id="network-rules">Network rules against unconstrained P2P</h2>'
        '<p class="muted">The same community and market simulated a second time without the '
        "network operator's rules (no envelopes or connection limits, no permissioning, no "
        "network constraints in the coordinated schedule). Savings are each run's against its "
        "own baseline under the same rules.</p>"
        f"{table(heads, rows, (False, True, True))}</section>"
    )


def _extra_table(data: ReportData) -> str:
    leaves = _extra_leaves(data.summary)
    if not leaves:
        return ""
    rows = []
    for path, value in leaves:
        # The unit is in the leaf's name, or in its parent's ({"timing_s": {"build": 0.2}}).
        unit = ""
        for key in reversed(path.split(".")):
            _, unit, _ = _describe(path, key)
            if unit:
                break
        rows.append((path, format_value(value, unit, data.currency)))
    return f'<h2 id="more">More figures</h2>{table(("Key", "Value"), rows, (False, True))}'


_PARTICIPANT_LABELS: dict[str, tuple[str, str]] = {
    "participant": ("Participant", ""),
    "baseline_bill": ("Baseline bill", "currency"),
    "bill": ("Bill with P2P", "currency"),
    "saving": ("Saving", "currency"),
    "saving_pct": ("Saving", "%"),
    "grid_import_kwh": ("Grid import", "kWh"),
    "grid_export_kwh": ("Grid export", "kWh"),
    "p2p_bought_kwh": ("P2P bought", "kWh"),
    "p2p_sold_kwh": ("P2P sold", "kWh"),
    "baseline_grid_import_kwh": ("Baseline grid import", "kWh"),
    "baseline_grid_export_kwh": ("Baseline grid export", "kWh"),
    "demand_kwh": ("Demand", "kWh"),
    "generation_kwh": ("Generation", "kWh"),
    "pv_kwp": ("PV", "kWp"),
    "battery_kwh": ("Battery", "kWh"),
    "ev_kwh": ("EV battery", "kWh"),
    "heating": ("Heating", ""),
}


def _participants_table(data: ReportData) -> str:
    df = data.participants
    cur = data.currency
    columns = [str(c) for c in df.columns]
    numeric = [
        col != "participant"
        and pd.api.types.is_numeric_dtype(df[col])
        and not pd.api.types.is_bool_dtype(df[col])
        for col in columns
    ]
    heads, units = [], []
    for col in columns:
        if col in _PARTICIPANT_LABELS:
            label, unit = _PARTICIPANT_LABELS[col]
        else:
            label, unit, _ = _describe(f"participants.{col}", col)
        units.append(unit)
        heads.append(column_head(label, unit, cur))
    # The unit is in the column head; cells carry the bare number.
    rows = (
        [
            number_text(value, unit) if num else value
            for value, unit, num in zip(record, units, numeric, strict=True)
        ]
        for record in df.itertuples(index=False, name=None)
    )
    opened = " open" if len(df) <= 20 else ""
    return (
        f'<h2 id="participants">Participants</h2><details{opened}><summary>'
        f"Per-participant bills and energy ({len(df):,} participants)</summary>"
        f"{table(heads, rows, numeric)}</details>"
    )


@dataclass(frozen=True)
class _Figure:
    anchor: str
    heading: str
    caption: str
    svg: str | None  # None: nothing to draw; the caption says why


def _figures(data: ReportData) -> list[_Figure]:
    grid, series, cur = data.grid, data.series, data.currency
    bins = plots.time_bins(grid)
    res = bins.resolution
    when = {"slot": "Each slot is shown.", "hour": "Values are hourly means."}.get(
        res, "Values are daily means"
    )
    community = {
        "demand": plots.community_total(series["demand_kwh"]),
        "generation": plots.community_total(series["generation_kwh"]),
        "grid_import": plots.community_total(series["grid_import_kwh"]),
        "grid_export": plots.community_total(series["grid_export_kwh"]),
        "p2p_traded": plots.community_total(series["p2p_bought_kwh"]),
        "baseline_grid_import": plots.community_total(series["baseline_grid_import_kwh"]),
    }
    figures: list[_Figure] = []

    def add(anchor: str, heading: str, caption: str, fig: Figure | None) -> None:
        svg = None if fig is None else plots.figure_to_svg(fig, f"{anchor}-", heading)
        figures.append(_Figure(anchor, heading, caption, svg))

    add(
        "flows",
        "Energy flows",
        "Sum over all participants, as average power (energy per slot divided by the slot "
        f"length). {when}"
        + ("; thin lines in the lower panel are each day's peak slot." if res == "day" else "")
        + " The lower panel compares grid import with P2P trading against the baseline, the "
        "same community without P2P trading (dashed).",
        plots.flows_figure(grid, bins, community),
    )

    deviation = series["deviation_kwh"]
    forecast = data.summary.get("forecast", {})
    settlement = data.summary.get("settlement", {})
    add(
        "lifecycle",
        "Commitments and delivery",
        "Each slot's orders were due at its gate closure "
        f"({settlement.get('gate_closure', 'see the scenario')}), made from "
        f"{forecast.get('method', 'the')} forecasts; the upper panel sums what the homes "
        "committed and what their meters read (export positive), the lower one their short and "
        "long deviations, which settle by the "
        f"{settlement.get('deviation_rule', 'scenario')} rule. {when}",
        plots.lifecycle_figure(
            grid,
            bins,
            {
                "committed": plots.community_total(series["committed_kwh"]),
                "metered": plots.community_total(series["net_kwh"]),
                "short": plots.community_total(np.maximum(-deviation, 0.0)),
                "long": plots.community_total(np.maximum(deviation, 0.0)),
            },
        ),
    )

    prices = {
        col: data.prices[col].to_numpy(dtype=np.float64)
        for col, *_ in plots.PRICE_SERIES
        if col in data.prices.columns
    }
    absent = [
        label
        for col, label, *_ in plots.PRICE_SERIES
        if col not in prices or not np.isfinite(prices[col]).any()
    ]
    market = data.summary.get("market", "the market")
    add(
        "prices",
        "Prices",
        f"Prices per kWh in {cur}. Retail is what the supplier charges for grid import, "
        "feed-in what it pays for export; the P2P prices come from the "
        f"{market} mechanism. {when}"
        + (
            "; shaded bands span each day's lowest to highest retail, feed-in and P2P "
            "clearing (else buy) price."
            if res == "day"
            else ""
        )
        + (f" Not defined in this run: {', '.join(absent)}." if absent else ""),
        plots.prices_figure(grid, bins, prices, cur),
    )

    storages = [
        ("Battery", series["battery_soc_end_kwh"], series["battery_capacity_kwh"]),
        ("EV", series["ev_soc_end_kwh"], series["ev_capacity_kwh"]),
    ]
    add(
        "soc",
        "State of charge",
        "State of charge at the end of each slot as a share of capacity. The line is the "
        "community's total stored energy over its total capacity. "
        + (
            "Values are daily means; the band spans each day's lowest to highest community "
            "state of charge, i.e. how deeply the community cycles its storage."
            if res == "day"
            else f"{when} The band spans the 10th to 90th percentile of the participants' own "
            "state of charge (with fewer than five owners, their own lines are drawn)."
        )
        if any(float(np.sum(cap)) > 0 for _, _, cap in storages)
        else "No participant has a battery or an electric vehicle in this run.",
        plots.soc_figure(grid, bins, storages),
    )

    df = data.participants
    names = [str(n) for n in df["participant"]]
    add(
        "bills",
        "Bills",
        f"Each participant's bill over the whole run in {cur}: with P2P trading (narrow blue) "
        "against the baseline without it (wide grey), sorted by baseline bill. A negative bill "
        "is a net income.",
        plots.bills_figure(
            names,
            df["baseline_bill"].to_numpy(dtype=np.float64),
            df["bill"].to_numpy(dtype=np.float64),
            cur,
        ),
    )
    add(
        "savings",
        "Savings",
        f"How many participants save how much against the baseline, in {cur} over the whole "
        "run. Green: better off; red: worse off.",
        plots.savings_figure(df["saving"].to_numpy(dtype=np.float64), cur),
    )
    add(
        "day",
        "Average day",
        "Mean community power by local clock hour over the whole run: when the community "
        "uses, produces, imports and exports electricity.",
        plots.average_day_figure(grid, community),
    )
    return figures


def _network(data: ReportData) -> str:
    """The network section; its key figures are the summary's (summary.json's network block),
    computed from the arrays only when the summary has none."""
    if data.network is None:
        return ""
    block = data.summary.get("network")
    if not isinstance(block, Mapping):
        return network_section(data.network)
    n = data.grid.n_slots
    kpis = NetworkKpis.from_summary(block, n), NetworkKpis.from_summary(block["baseline"], n)
    return network_section(data.network, kpis)


def _version() -> str:
    try:
        return importlib.metadata.version("peergrid")
    except importlib.metadata.PackageNotFoundError:
        return "(development copy)"


def render_report(data: ReportData) -> str:
    """The report of one run as a self-contained HTML5 document (UTF-8 text).

    Raises:
        ValueError: the arrays or tables do not match `data.grid` and `data.names`.
    """
    _check(data)
    figures = _figures(data)
    extra = _extra_table(data)
    nav = " ".join(f'<a href="#{f.anchor}">{escape(f.heading)}</a>' for f in figures)
    sections = []
    for f in figures:
        body = f.svg if f.svg is not None else f'<p class="note">{escape(f.caption)}</p>'
        caption = f"<figcaption>{escape(f.caption)}</figcaption>" if f.svg is not None else ""
        sections.append(
            f'<section><h2 id="{f.anchor}">{escape(f.heading)}</h2><figure>{body}{caption}'
            "</figure></section>"
        )
    return document(
        data.title,
        [
            _header(data),
            f'<nav><a href="#kpi">Key figures</a> {nav}'
            + (f' <a href="#{NETWORK_ANCHOR}">Network</a>' if data.network is not None else "")
            + (' <a href="#public">Public release</a>' if data.public is not None else "")
            + ' <a href="#participants">Participants</a>'
            + (' <a href="#more">More figures</a>' if extra else "")
            + "</nav>",
            '<h2 id="kpi">Key figures</h2>',
            '<p class="muted">The baseline is the same community without P2P trading: every '
            "participant buys from and sells to the supplier at the retail and feed-in prices."
            "</p>",
            kpi_table(_kpi_rows(data)),
            *sections,
            _network(data),
            _unconstrained_note(data.summary, data.currency),
            "" if data.public is None else public_section(data.grid, data.public),
            _participants_table(data),
            extra,
            f"<footer>Made by peergrid {escape(_version())}. Self-contained: this file "
            "loads nothing from the network.</footer>",
        ],
    )


__all__ = ["ReportData", "render_report"]
