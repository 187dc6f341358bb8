"""Side-by-side report of one scenario under several market designs (self-contained HTML)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from peergrid.report import plots
from peergrid.report.page import PAGE_CSS

if TYPE_CHECKING:
    from peergrid.engine.compare import Comparison

_HEADS = {
    "market": "Design",
    "family": "Family",
    "savings_pct": "Savings [%]",
    "welfare_gain": "Welfare gain",
    "total_bill": "Community bill",
    "baseline_bill": "Baseline bill",
    "operator_surplus": "Operator surplus",
    "p2p_traded_kwh": "P2P traded [kWh]",
    "self_sufficiency": "Self-sufficiency",
    "self_consumption": "Self-consumption",
    "peak_import_kw": "Peak import [kW]",
    "fairness_jain": "Fairness (Jain)",
    "participants_worse_off": "Worse off",
    "iterations_mean": "Iterations (mean)",
    "market_s": "Solve time [s]",
    "max_voltage_pu": "Max voltage [pu]",
    "min_voltage_pu": "Min voltage [pu]",
    "voltage_violation_slots": "Voltage violation slots",
    "overload_slots": "Overload slots",
    "losses_kwh": "Losses [kWh]",
    "curtailed_kwh": "Curtailed [kWh]",
    "network_charges": "Network charges",
}
_PERCENT = {"self_sufficiency", "self_consumption"}


def _cell(key: str, value: Any, currency: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, str):
        return html.escape(value)
    if key in _PERCENT:
        return f"{100 * float(value):.1f} %"
    if key in {
        "savings",
        "welfare_gain",
        "total_bill",
        "baseline_bill",
        "operator_surplus",
        "network_charges",
    }:
        return f"{float(value):,.2f} {html.escape(currency)}"
    if key in {"participants_worse_off", "voltage_violation_slots", "overload_slots"}:
        return str(int(value))
    if key in {"max_voltage_pu", "min_voltage_pu"}:
        return f"{float(value):.4f}"
    return f"{float(value):,.3f}" if abs(float(value)) < 10 else f"{float(value):,.1f}"


def _savings_figure(comp: Comparison, currency: str) -> Figure:
    fig = Figure(figsize=(plots.FIG_WIDTH_IN, 3.2), layout="constrained")
    ax = fig.subplots()
    names = list(comp.results)
    data = [comp.results[n].participants["saving"].to_numpy() for n in names]
    ax.boxplot(data, tick_labels=[plots.drawable_text(n) for n in names], showmeans=True)
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    ax.set_ylabel(f"Saving per participant [{currency}]")
    ax.set_title("Distribution of per-participant savings against the baseline")
    ax.grid(True, axis="y", color="#DDDDDD", linewidth=0.6)
    return fig


def _price_figure(comp: Comparison, currency: str) -> Figure:
    fig = Figure(figsize=(plots.FIG_WIDTH_IN, 3.4), layout="constrained")
    ax = fig.subplots()
    first = next(iter(comp.results.values()))
    grid = first.community.grid
    hours = np.arange(24) + 0.5
    ax.plot(
        hours,
        plots.hour_of_day_mean(first.community.retail_price, grid),
        color="#444444",
        linewidth=1.2,
        label="retail",
    )
    ax.plot(
        hours,
        plots.hour_of_day_mean(first.community.feed_in_price, grid),
        color="#444444",
        linewidth=1.2,
        linestyle=":",
        label="feed-in",
    )
    for name, res in comp.results.items():
        bought = res.series("p2p_bought_kwh")
        paid = np.nansum(bought * np.nan_to_num(res.series("p2p_buy_price")), axis=1)
        vol = bought.sum(axis=1)
        price = np.divide(paid, vol, out=np.full_like(vol, np.nan), where=vol > 1e-12)
        ax.plot(
            hours,
            plots.hour_of_day_mean(price, grid),
            linewidth=1.6,
            label=plots.drawable_text(name),
        )
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel(f"Local hour of day ({grid.timezone})")
    ax.set_ylabel(f"Price [{currency}/kWh]")
    ax.set_title("Average P2P price paid by buyers, by hour of day (volume-weighted)")
    ax.grid(True, color="#DDDDDD", linewidth=0.6)
    ax.legend(fontsize=8, ncols=4, frameon=False, loc="upper left")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.3 * (high - low))
    return fig


def render_comparison(comp: Comparison) -> str:
    """The comparison page as one HTML document (no external resources)."""
    first = next(iter(comp.results.values()))
    s = first.summary
    currency = str(s["cost"]["currency"])
    table = comp.table()
    cols = [c for c in _HEADS if c in table.columns]
    head = "".join(f"<th>{html.escape(_HEADS[c])}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(c, row[c], currency)}</td>" for c in cols) + "</tr>"
        for _, row in table.iterrows()
    )
    e = html.escape
    figures = [
        plots.figure_to_svg(_savings_figure(comp, currency), "cs", "savings per design"),
        plots.figure_to_svg(_price_figure(comp, currency), "cp", "price profiles per design"),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(comp.scenario_name)} — market designs compared</title>"
        f"<style>{PAGE_CSS}</style></head><body>"
        f"<h1>{e(comp.scenario_name)}: market designs compared</h1>"
        f"<p>{s['participants']} participants, {s['days']} days from {e(s['start_local'])} "
        f"({e(s['timezone'])}), {s['slot_minutes']}-min slots, EMS {e(str(s['ems']))}. "
        "Every design runs on the same community, data and EMS and is measured against the same "
        "baseline (no P2P trading).</p>"
        "<h2>Key figures</h2><div style='overflow-x:auto'>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        "<p>Welfare gain is the community's saving against the baseline (gains from trade). "
        "Solve time is the slot loop's time (EMS, clearing, settlement).</p>"
        "<h2>Savings per participant</h2>"
        + figures[0]
        + "<h2>Prices</h2>"
        + figures[1]
        + "</body></html>"
    )
