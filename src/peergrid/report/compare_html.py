"""Side-by-side report of one scenario under several market designs (self-contained HTML).

`render_comparison(ComparisonData) -> str` draws the page from plain data: the KPI table (one
row per design, as kpis.csv), each design's summary, per-participant savings and P2P prices,
and the tariff. `comparison_data` gathers those from the designs' runs, read through the small
`DesignRun` protocol, so that this module does not import the engine that calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray

from peergrid.report import plots
from peergrid.report.format import column_head, escape, number_text, table
from peergrid.report.page import document

FloatArray = NDArray[np.float64]

#: Columns of the KPI table shown, in order: column -> (head, unit of `report.format`).
COLUMNS: dict[str, tuple[str, str]] = {
    "market": ("Design", ""),
    "family": ("Family", ""),
    "savings_pct": ("Savings", "%"),
    "welfare_gain": ("Welfare gain", "currency"),
    "total_bill": ("Community bill", "currency"),
    "baseline_bill": ("Baseline bill", "currency"),
    "operator_surplus": ("Operator surplus", "currency"),
    "p2p_traded_kwh": ("P2P traded", "kWh"),
    "self_sufficiency": ("Self-sufficiency", "frac"),
    "self_consumption": ("Self-consumption", "frac"),
    "peak_import_kw": ("Peak import", "kW"),
    "fairness_jain": ("Fairness (Jain)", "-"),
    "participants_worse_off": ("Worse off", "count"),
    "iterations_mean": ("Iterations (mean)", "-"),
    "market_s": ("Solve time", "s"),
    "deviation_cost": ("Deviation cost", "currency"),
    "forecast_error_cost": ("Forecast error cost", "currency"),
    "perfect_foresight_savings": ("Savings, perfect foresight", "currency"),
    "perfect_foresight_savings_pct": ("Savings, perfect foresight", "%"),
    "rank": ("Rank", "count"),
    "rank_perfect_foresight": ("Rank, perfect foresight", "count"),
    "max_voltage_pu": ("Max voltage", "p.u."),
    "min_voltage_pu": ("Min voltage", "p.u."),
    "voltage_violation_slots": ("Voltage violation slots", "count"),
    "overload_slots": ("Overload slots", "count"),
    "losses_kwh": ("Losses", "kWh"),
    "curtailed_kwh": ("Curtailed", "kWh"),
    "network_charges": ("Network charges", "currency"),
}


@dataclass(frozen=True, eq=False)
class DesignData:
    """What the page shows of one design.

    Attributes:
        summary: the design's summary (summary.json).
        saving_per_participant: each participant's saving against the baseline [currency], (P,).
        p2p_price_per_kwh: volume-weighted price buyers paid for P2P energy in each slot
            [currency/kWh], (T,); NaN in slots without P2P trade.
    """

    summary: Mapping[str, Any]
    saving_per_participant: FloatArray
    p2p_price_per_kwh: FloatArray


@dataclass(frozen=True, eq=False)
class ComparisonData:
    """Everything the comparison page shows.

    Attributes:
        scenario_name: the scenario every design ran.
        table: one row per design, columns as in kpis.csv (those in `COLUMNS` are shown).
        designs: per design, in the order of the table.
        local_hour: local clock time at each slot start [h since local midnight], (T,).
        retail_price_per_kwh, feed_in_price_per_kwh: the tariff in each slot [currency/kWh],
            (T,), the same for every design.
    """

    scenario_name: str
    table: pd.DataFrame
    designs: dict[str, DesignData]
    local_hour: FloatArray
    retail_price_per_kwh: FloatArray
    feed_in_price_per_kwh: FloatArray


class DesignRun(Protocol):
    """What `comparison_data` reads of one design's run (a `SimulationResult` has it)."""

    @property
    def summary(self) -> Mapping[str, Any]: ...

    @property
    def participants(self) -> pd.DataFrame: ...

    @property
    def prices(self) -> pd.DataFrame: ...

    def series(self, name: str) -> np.ndarray: ...


def buyers_price_per_kwh(bought_kwh: FloatArray, price_per_kwh: FloatArray) -> FloatArray:
    """Volume-weighted price buyers paid in each slot [currency/kWh], (T,), from each
    participant's P2P purchases [kWh] and price (T, P); NaN where nothing was bought."""
    paid = np.nansum(bought_kwh * np.nan_to_num(price_per_kwh), axis=1)
    volume = bought_kwh.sum(axis=1)
    price = np.divide(paid, volume, out=np.full_like(volume, np.nan), where=volume > 1e-12)
    return np.asarray(price, dtype=np.float64)


def comparison_data(
    scenario_name: str, kpi_table: pd.DataFrame, runs: Mapping[str, DesignRun]
) -> ComparisonData:
    """The page's data from each design's run (`runs` in the order of `kpi_table`)."""
    first = next(iter(runs.values()))
    prices = first.prices
    starts = pd.DatetimeIndex(prices["slot_start"]).tz_convert(str(first.summary["timezone"]))
    return ComparisonData(
        scenario_name=scenario_name,
        table=kpi_table,
        designs={
            name: DesignData(
                summary=run.summary,
                saving_per_participant=run.participants["saving"].to_numpy(dtype=np.float64),
                p2p_price_per_kwh=buyers_price_per_kwh(
                    run.series("p2p_bought_kwh"), run.series("p2p_buy_price")
                ),
            )
            for name, run in runs.items()
        },
        local_hour=np.asarray(starts.hour + starts.minute / 60.0, dtype=np.float64),
        retail_price_per_kwh=prices["retail_price"].to_numpy(dtype=np.float64),
        feed_in_price_per_kwh=prices["feed_in_price"].to_numpy(dtype=np.float64),
    )


def _savings_figure(data: ComparisonData, currency: str) -> Figure:
    fig, (ax,) = plots._new_figure(3.2)
    names = list(data.designs)
    savings = [d.saving_per_participant for d in data.designs.values()]
    ax.boxplot(savings, tick_labels=[plots.drawable_text(n) for n in names], showmeans=True)
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    ax.set_ylabel(f"Saving per participant [{plots.drawable_text(currency, 8)}]")
    ax.set_title("Distribution of per-participant savings against the baseline")
    return fig


def _price_figure(data: ComparisonData, currency: str, timezone: str) -> Figure:
    fig, (ax,) = plots._new_figure(3.4)
    hours = np.arange(24) + 0.5
    hour = data.local_hour
    ax.plot(
        hours,
        plots.hour_of_day_mean(data.retail_price_per_kwh, hour),
        color="#444444",
        linewidth=1.2,
        label="retail",
    )
    ax.plot(
        hours,
        plots.hour_of_day_mean(data.feed_in_price_per_kwh, hour),
        color="#444444",
        linewidth=1.2,
        linestyle=":",
        label="feed-in",
    )
    for name, design in data.designs.items():
        ax.plot(
            hours,
            plots.hour_of_day_mean(design.p2p_price_per_kwh, hour),
            linewidth=1.6,
            label=plots.drawable_text(name),
        )
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel(f"Local hour of day ({timezone})")
    ax.set_ylabel(f"Price [{plots.drawable_text(currency, 8)}/kWh]")
    ax.set_title("Average P2P price paid by buyers, by hour of day (volume-weighted)")
    plots._legend(ax, ncols=4)
    plots._headroom(ax)
    return fig


def render_comparison(data: ComparisonData) -> str:
    """The comparison page as one HTML document (no external resources)."""
    s = next(iter(data.designs.values())).summary
    currency = str(s["cost"]["currency"])
    cols = [c for c in COLUMNS if c in data.table.columns]
    units = [COLUMNS[c][1] for c in cols]
    heads = [
        column_head(COLUMNS[c][0], unit, currency) for c, unit in zip(cols, units, strict=True)
    ]
    rows = (
        [number_text(row[c], unit) for c, unit in zip(cols, units, strict=True)]
        for _, row in data.table.iterrows()
    )
    numeric = [bool(unit) for unit in units]
    figures = [
        plots.figure_to_svg(_savings_figure(data, currency), "cs", "savings per design"),
        plots.figure_to_svg(
            _price_figure(data, currency, str(s["timezone"])), "cp", "price profiles per design"
        ),
    ]
    name = escape(data.scenario_name)
    return document(
        f"{data.scenario_name} — market designs compared",
        [
            f"<h1>{name}: market designs compared</h1>"
            f"<p>{s['participants']} participants, {s['days']} days from "
            f"{escape(s['start_local'])} ({escape(s['timezone'])}), {s['slot_minutes']}-min "
            f"slots, EMS {escape(s['ems'])}. Every design runs on the same community, data and "
            "EMS and is measured against the same baseline (no P2P trading).</p>",
            '<h2>Key figures</h2><div class="wide">'
            f"{table(heads, rows, numeric)}</div>"
            "<p>Welfare gain is the community's saving against the baseline (gains from trade). "
            "Solve time is the slot loop's time (EMS, clearing, settlement).</p>",
            f"<h2>Savings per participant</h2>{figures[0]}",
            f"<h2>Prices</h2>{figures[1]}",
        ],
    )
