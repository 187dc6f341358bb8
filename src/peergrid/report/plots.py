"""Figures for the HTML report, drawn with matplotlib and returned as inline SVG.

Two kinds of pure functions live here:

- aggregation over the slot grid: community totals (sum across participants) and time bins
  (slot, local hour or local day) with NaN-aware bin means and min/max;
- figure builders that take those aggregates and return a `matplotlib.figure.Figure`.

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot, so nothing
touches matplotlib's global state and no backend has to be selected: `figure_to_svg` renders
with the SVG backend that `Figure.savefig` picks by format.

Time axes show local time: x values are matplotlib date numbers of UTC instants, and the tick
locator and formatter carry the run's time zone, so days on which the clock changes (23 or 25
hours) are drawn to scale. Energies per slot [kWh] are shown as average power [kW] = e_kwh / dt_h.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from numpy.typing import NDArray

from peergrid.metrics.kpi import participants_worse_off
from peergrid.report.format import number_text
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

Resolution = Literal["slot", "hour", "day"]

# Okabe-Ito colour-blind-safe palette, one colour per quantity across every figure.
COLOURS: dict[str, str] = {
    "demand": "#000000",
    "generation": "#E69F00",
    "grid_import": "#D55E00",
    "grid_export": "#009E73",
    "p2p": "#0072B2",
    "baseline": "#7F7F7F",
    "retail": "#D55E00",
    "feed_in": "#009E73",
    "clearing": "#CC79A7",
    "buy": "#0072B2",
    "sell": "#56B4E9",
    "battery": "#0072B2",
    "ev": "#CC79A7",
    "gain": "#009E73",
    "loss": "#D55E00",
}

FIG_WIDTH_IN = 10.0
_FONT_SIZE = 10.0
_TITLE_SIZE = 12.0
_BAND_ALPHA = 0.18
_MAX_NAMED_PARTICIPANTS = 40  # above this, bars are indexed by rank instead of by name
_MAX_NAME_CHARS = 16
_BAR_LIMIT = 150  # above this, bills are drawn as one step outline instead of bar patches


# --- time bins ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TimeBins:
    """Contiguous groups of slots used to thin long runs before plotting.

    Attributes:
        resolution: "slot" (no thinning), "hour" (local clock hours) or "day" (local days).
        first_slot: index of the first slot of each bin, int array (n_bins,).
        edges: bin edges as matplotlib date numbers of UTC instants, float array (n_bins + 1,).
    """

    resolution: Resolution
    first_slot: IntArray
    edges: FloatArray

    @property
    def n_bins(self) -> int:
        return int(self.first_slot.shape[0])

    @property
    def describe(self) -> str:
        """How a plotted value relates to the slots, for captions and axis labels."""
        return {"slot": "", "hour": "hourly mean", "day": "daily mean"}[self.resolution]

    def label(self, text: str) -> str:
        """An axis label with the aggregation appended, e.g. "Power [kW], daily mean"."""
        return f"{text}, {self.describe}" if self.describe else text


def slot_edges(grid: SlotGrid) -> FloatArray:
    """Slot boundaries as matplotlib date numbers [d since the epoch], (n_slots + 1,)."""
    starts = grid.starts_utc.tz_convert(None).to_numpy()
    end = starts[-1] + np.timedelta64(grid.slot_minutes, "m")
    days = mdates.date2num(np.append(starts, end))  # type: ignore[no-untyped-call]
    return np.asarray(days, dtype=np.float64)


def choose_resolution(grid: SlotGrid) -> Resolution:
    """Thin by run length: every slot up to 3 days, hourly means up to 31 days, else daily."""
    if grid.days <= 3:
        return "slot"
    if grid.days <= 31:
        return "hour"
    return "day"


def time_bins(grid: SlotGrid, resolution: Resolution | None = None) -> TimeBins:
    """Bins of `grid` at `resolution` (chosen by run length when None).

    Hourly bins are blocks of `slots_per_hour` slots counted from the first local midnight, so
    they follow the local clock, also in time zones with half-hour offsets.
    """
    res = choose_resolution(grid) if resolution is None else resolution
    edges = slot_edges(grid)
    n = grid.n_slots
    if res == "slot":
        first = np.arange(n, dtype=np.int64)
    elif res == "hour":
        first = np.arange(0, n, grid.slots_per_hour, dtype=np.int64)
    else:
        first = np.asarray(grid.day_first_slot[:-1], dtype=np.int64)
    bounds = np.append(first, n)
    return TimeBins(resolution=res, first_slot=first, edges=edges[bounds])


def bin_mean(values: FloatArray, bins: TimeBins) -> FloatArray:
    """Mean of the finite values in each bin along axis 0; NaN for a bin with none (no warning)."""
    if bins.resolution == "slot":
        return np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    total = np.add.reduceat(np.where(finite, values, 0.0), bins.first_slot, axis=0)
    count = np.add.reduceat(finite.astype(np.float64), bins.first_slot, axis=0)
    out = np.full(total.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def bin_min(values: FloatArray, bins: TimeBins) -> FloatArray:
    """Minimum of each bin along axis 0, ignoring NaN (NaN only if the whole bin is NaN)."""
    return np.asarray(np.fmin.reduceat(values, bins.first_slot, axis=0), dtype=np.float64)


def bin_max(values: FloatArray, bins: TimeBins) -> FloatArray:
    """Maximum of each bin along axis 0, ignoring NaN (NaN only if the whole bin is NaN)."""
    return np.asarray(np.fmax.reduceat(values, bins.first_slot, axis=0), dtype=np.float64)


def community_total(values_kwh: FloatArray) -> FloatArray:
    """Sum across participants of a (T, P) array [kWh per slot], giving (T,)."""
    return np.asarray(np.sum(values_kwh, axis=1), dtype=np.float64)


def hour_of_day_mean(values: FloatArray, local_hour: FloatArray) -> FloatArray:
    """Mean of a (T,) array by local clock hour (0..23), giving (24,); NaN for absent hours.

    Args:
        local_hour: local clock time at each slot start [h since midnight], (T,), e.g.
            `SlotGrid.local_hour`.
    """
    hour = np.floor(local_hour).astype(np.int64)
    finite = np.isfinite(values)
    total = np.bincount(hour, weights=np.where(finite, values, 0.0), minlength=24)
    count = np.bincount(hour, weights=finite.astype(np.float64), minlength=24)
    out = np.full(24, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


# --- small drawing helpers -----------------------------------------------------------------


def _new_figure(height_in: float, nrows: int = 1, sharex: bool = True) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(FIG_WIDTH_IN, height_in), layout="constrained")
    axes = fig.subplots(nrows=nrows, ncols=1, sharex=sharex, squeeze=False)
    out: list[Axes] = [ax for ax in axes[:, 0]]
    for ax in out:
        ax.grid(True, color="#DDDDDD", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=_FONT_SIZE - 1)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, out


def _local_time_axis(ax: Axes, grid: SlotGrid) -> None:
    edges = slot_edges(grid)
    ax.set_xlim(float(edges[0]), float(edges[-1]))
    tz = ZoneInfo(grid.timezone)
    # matplotlib.dates is not annotated: hence the ignores on its constructors.
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=tz)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel(f"Local time ({grid.timezone})", fontsize=_FONT_SIZE)


def _legend(ax: Axes, ncols: int = 3) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=_FONT_SIZE - 1, ncols=ncols, frameon=False, loc="upper left")


def _headroom(ax: Axes, frac: float = 0.3) -> None:
    """Stretch the y-axis upwards so the legend at the top does not cover data."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + frac * (high - low))


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="#555555")


def _steps(ax: Axes, values: FloatArray, edges: FloatArray, **style: Any) -> None:
    """Draw `values` (n,) as a step line over `edges` (n + 1,).

    A Line2D with steps-post, not `Axes.stairs`: a StepPatch updates the data limits segment
    by segment in Python, which dominated the render time of a year.
    """
    ax.plot(edges, np.append(values, values[-1]), drawstyle="steps-post", **style)


def _step_band(
    ax: Axes, low: FloatArray, high: FloatArray, edges: FloatArray, **style: Any
) -> None:
    """Shade between `low` and `high` (n,) as steps over `edges` (n + 1,)."""
    ax.fill_between(
        edges, np.append(low, low[-1]), np.append(high, high[-1]), step="post", linewidth=0, **style
    )


def _binned_line(
    ax: Axes,
    values: FloatArray,
    bins: TimeBins,
    *,
    label: str,
    colour: str,
    band: bool = False,
    linestyle: str = "-",
    linewidth: float = 1.3,
) -> None:
    """Draw the bin means of a (T,) series as stairs; with `band`, at daily resolution, the
    daily min-max as a shaded band."""
    _steps(
        ax,
        bin_mean(values, bins),
        bins.edges,
        label=label,
        color=colour,
        linestyle=linestyle,
        linewidth=linewidth,
    )
    if band and bins.resolution == "day":
        _step_band(
            ax,
            bin_min(values, bins),
            bin_max(values, bins),
            bins.edges,
            color=colour,
            alpha=_BAND_ALPHA,
        )


@lru_cache(maxsize=1)
def _font_charmap() -> frozenset[int]:
    """Code points the default matplotlib font can draw."""
    font = get_font(findfont(FontProperties()))
    return frozenset(font.get_charmap())


def drawable_text(text: str, max_chars: int = _MAX_NAME_CHARS) -> str:
    """`text` shortened and with characters the default font cannot draw replaced by '?'.

    User-supplied names go into tick labels; replacing unknown glyphs avoids matplotlib's
    missing-glyph warnings and tofu boxes.
    """
    charmap = _font_charmap()
    clean = "".join(ch if ord(ch) in charmap and ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= max_chars else clean[: max_chars - 1] + "…"


# --- figures -------------------------------------------------------------------------------


def flows_figure(grid: SlotGrid, bins: TimeBins, community_kwh: Mapping[str, FloatArray]) -> Figure:
    """Community energy flows over time, as average power [kW].

    Top: demand, generation, grid import and export, P2P traded. Bottom: grid import with
    P2P trading against the baseline without it; at daily resolution, thin lines show each
    day's peak slot (the peaks that size connections and drive network charges).

    Args:
        community_kwh: (T,) community totals [kWh per slot] with keys demand, generation,
            grid_import, grid_export, p2p_traded, baseline_grid_import.
    """
    fig, (top, bottom) = _new_figure(6.4, nrows=2)
    kw = {key: np.asarray(v, dtype=np.float64) / grid.dt_h for key, v in community_kwh.items()}
    for key, label, colour in (
        ("demand", "Demand", "demand"),
        ("generation", "Generation", "generation"),
        ("grid_import", "Grid import", "grid_import"),
        ("grid_export", "Grid export", "grid_export"),
        ("p2p_traded", "P2P traded", "p2p"),
    ):
        # Demand is drawn wider underneath: where import equals demand both stay visible.
        width = 2.4 if key == "demand" else 1.3
        _binned_line(top, kw[key], bins, label=label, colour=COLOURS[colour], linewidth=width)
    top.set_title("Community energy flows", fontsize=_TITLE_SIZE, loc="left")
    top.set_ylabel(bins.label("Power [kW]"), fontsize=_FONT_SIZE)
    _legend(top, ncols=5)

    for key, label, colour, style in (
        ("baseline_grid_import", "Baseline (no P2P)", "baseline", "--"),
        ("grid_import", "With P2P", "grid_import", "-"),
    ):
        _binned_line(bottom, kw[key], bins, label=label, colour=COLOURS[colour], linestyle=style)
        if bins.resolution == "day":
            # Daily means hide the peaks that size the grid connection: draw them too.
            _steps(
                bottom,
                bin_max(kw[key], bins),
                bins.edges,
                color=COLOURS[colour],
                linestyle=style,
                linewidth=0.6,
                alpha=0.7,
                label=f"{label}, daily peak",
            )
    bottom.set_title("Grid import: P2P against baseline", fontsize=_TITLE_SIZE, loc="left")
    bottom.set_ylabel(bins.label("Import [kW]"), fontsize=_FONT_SIZE)
    _legend(bottom, ncols=2)
    _local_time_axis(bottom, grid)
    for ax in (top, bottom):
        ax.set_ylim(bottom=0.0)
        _headroom(ax)
        ax.margins(x=0.0)
    return fig


def lifecycle_figure(
    grid: SlotGrid, bins: TimeBins, community_kwh: Mapping[str, FloatArray]
) -> Figure:
    """What the community committed at gate closure against what it delivered, over time.

    Top: the community's committed and metered net position, as average power [kW] (export
    positive). Bottom: its short (metered below committed) and long deviations, summed over the
    participants separately [kW].

    Args:
        community_kwh: (T,) community totals [kWh per slot] with keys committed, metered,
            short, long.
    """
    fig, (top, bottom) = _new_figure(5.6, nrows=2)
    kw = {key: np.asarray(v, dtype=np.float64) / grid.dt_h for key, v in community_kwh.items()}
    _binned_line(
        top, kw["committed"], bins, label="Committed", colour=COLOURS["p2p"], linestyle="--"
    )
    _binned_line(top, kw["metered"], bins, label="Metered", colour=COLOURS["demand"])
    top.axhline(0.0, color=COLOURS["baseline"], linewidth=0.6)
    top.set_title("Community net position: committed and metered", fontsize=_TITLE_SIZE, loc="left")
    top.set_ylabel(bins.label("Export − import [kW]"), fontsize=_FONT_SIZE)
    _legend(top, ncols=2)
    _binned_line(bottom, kw["short"], bins, label="Short", colour=COLOURS["loss"])
    _binned_line(bottom, kw["long"], bins, label="Long", colour=COLOURS["gain"])
    bottom.set_title("Deviations from the commitments", fontsize=_TITLE_SIZE, loc="left")
    bottom.set_ylabel(bins.label("Deviation [kW]"), fontsize=_FONT_SIZE)
    bottom.set_ylim(bottom=0.0)
    _legend(bottom, ncols=2)
    _local_time_axis(bottom, grid)
    for ax in (top, bottom):
        _headroom(ax)
        ax.margins(x=0.0)
    return fig


PRICE_SERIES: tuple[tuple[str, str, str, str], ...] = (
    # (column, label, colour key, line style)
    ("retail_price", "Retail (import)", "retail", "-"),
    ("feed_in_price", "Feed-in (export)", "feed_in", "-"),
    ("clearing_price", "P2P clearing", "clearing", ":"),
    ("buy_price", "P2P buy", "buy", "-"),
    ("sell_price", "P2P sell", "sell", "--"),
)


def prices_figure(
    grid: SlotGrid, bins: TimeBins, prices: Mapping[str, FloatArray], currency: str
) -> Figure:
    """Retail, feed-in and the mechanism's prices over time [currency/kWh].

    A series that is NaN throughout (a mechanism without such a price) is left out; NaN slots
    inside a series leave gaps. At daily resolution, bands show each day's min-max of retail,
    feed-in and the first P2P price drawn (clearing, else buy, else sell).

    Args:
        prices: (T,) price arrays keyed by the columns in `PRICE_SERIES`; missing keys are skipped.
    """
    fig, (ax,) = _new_figure(3.6)
    drawn = 0
    p2p_band_done = False
    for column, label, colour, style in PRICE_SERIES:
        values = prices.get(column)
        if values is None or not np.isfinite(values).any():
            continue
        # One band per kind of price keeps the overlapping P2P prices readable.
        is_p2p = column not in ("retail_price", "feed_in_price")
        band = not (is_p2p and p2p_band_done)
        p2p_band_done = p2p_band_done or is_p2p
        _binned_line(
            ax, values, bins, label=label, colour=COLOURS[colour], band=band, linestyle=style
        )
        drawn += 1
    if not drawn:
        _no_data(ax, "No prices in this run")
    ax.use_sticky_edges = False  # let the y-margin apply below a band's baseline too
    ax.margins(x=0.0, y=0.08)
    _headroom(ax)
    ax.set_title("Prices", fontsize=_TITLE_SIZE, loc="left")
    ax.set_ylabel(bins.label(f"Price [{drawable_text(currency, 8)}/kWh]"), fontsize=_FONT_SIZE)
    _legend(ax, ncols=5)
    _local_time_axis(ax, grid)
    return fig


def _soc_panel(
    ax: Axes,
    bins: TimeBins,
    ends: FloatArray,
    soc_kwh: FloatArray,
    capacity_kwh: FloatArray,
    *,
    colour: str,
    what: str,
) -> None:
    has = capacity_kwh > 0
    soc = np.asarray(soc_kwh[:, has], dtype=np.float64)
    cap = np.asarray(capacity_kwh[has], dtype=np.float64)
    n_with = int(cap.shape[0])
    aggregate_pct = 100.0 * soc.sum(axis=1) / cap.sum()
    line_label = f"Community {what.lower() if what != 'EV' else what}"
    if bins.resolution == "day":
        # Daily means of a daily cycle are flat: the band shows how deep the community cycles.
        _steps(
            ax,
            bin_mean(aggregate_pct, bins),
            bins.edges,
            color=colour,
            linewidth=1.6,
            label=f"{line_label}, daily mean",
        )
        _step_band(
            ax,
            bin_min(aggregate_pct, bins),
            bin_max(aggregate_pct, bins),
            bins.edges,
            color=colour,
            alpha=_BAND_ALPHA,
            label=f"{line_label}, daily min-max",
        )
    else:
        each_pct = bin_mean(100.0 * soc / cap, bins)  # (n_bins, n_with)
        agg = bin_mean(aggregate_pct, bins)
        # States are at slot ends; at slot resolution draw them there, else as bin stairs.
        if bins.resolution == "slot":
            ax.plot(ends, agg, color=colour, linewidth=1.6, label=line_label)
        else:
            _steps(
                ax, agg, bins.edges, color=colour, linewidth=1.6, label=f"{line_label}, hourly mean"
            )
        if n_with >= 5:
            lo, hi = np.percentile(each_pct, [10.0, 90.0], axis=1)
            band_label = "Participants, 10th-90th percentile"
            if bins.resolution == "slot":
                ax.fill_between(
                    ends, lo, hi, color=colour, alpha=_BAND_ALPHA, linewidth=0, label=band_label
                )
            else:
                _step_band(
                    ax, lo, hi, bins.edges, color=colour, alpha=_BAND_ALPHA, label=band_label
                )
        elif n_with > 1:
            for j in range(n_with):
                if bins.resolution == "slot":
                    ax.plot(ends, each_pct[:, j], color=colour, linewidth=0.7, alpha=0.45)
                else:
                    _steps(ax, each_pct[:, j], bins.edges, color=colour, linewidth=0.7, alpha=0.45)
    ax.set_ylim(0.0, 125.0)  # room above 100 % for the legend
    ax.set_yticks(np.arange(0.0, 101.0, 20.0))
    ax.set_ylabel(f"{what} SoC [%]", fontsize=_FONT_SIZE)
    ax.set_title(
        f"{what} state of charge ({n_with} participant{'s' if n_with != 1 else ''}, "
        f"{cap.sum():,.0f} kWh in total)",
        fontsize=_TITLE_SIZE,
        loc="left",
    )
    _legend(ax, ncols=2)


def soc_figure(
    grid: SlotGrid,
    bins: TimeBins,
    storages: Sequence[tuple[str, FloatArray, FloatArray]],
) -> Figure | None:
    """State of charge of the community's batteries and EVs [% of total capacity].

    The line is the community aggregate, sum(SoC) / sum(capacity). Up to hourly resolution
    the band spans the 10th to 90th percentile of the participants' own SoC [%] (with fewer
    than 5 storage owners, their lines are drawn instead); at daily resolution it spans each
    day's min-max of the aggregate, since daily means of a daily cycle are flat. States are at
    slot ends.

    Args:
        storages: (label, soc_end_kwh (T, P), capacity_kwh (P,)) per storage kind, e.g. "Battery".
            Kinds with no capacity anywhere are skipped; returns None if none is left.
    """
    present = [(what, soc, cap) for what, soc, cap in storages if float(np.sum(cap)) > 0]
    if not present:
        return None
    fig, axes = _new_figure(3.0 * len(present) + 0.4, nrows=len(present))
    ends = slot_edges(grid)[1:]
    for ax, (what, soc, cap) in zip(axes, present, strict=True):
        colour = COLOURS["ev" if what.lower().startswith("ev") else "battery"]
        _soc_panel(ax, bins, ends, soc, cap, colour=colour, what=what)
        ax.margins(x=0.0)
    _local_time_axis(axes[-1], grid)
    return fig


def bills_figure(
    names: Sequence[str], baseline_bill: FloatArray, bill: FloatArray, currency: str
) -> Figure:
    """Bill per participant with P2P against the baseline [currency], sorted by baseline bill."""
    order = np.argsort(baseline_bill, kind="stable")
    base = np.asarray(baseline_bill, dtype=np.float64)[order]
    p2p = np.asarray(bill, dtype=np.float64)[order]
    n = int(base.shape[0])
    fig, (ax,) = _new_figure(3.8)
    x = np.arange(n, dtype=np.float64)
    if n <= _BAR_LIMIT:
        ax.bar(x, base, width=0.8, color="#C8C8C8", label="Baseline (no P2P)")
        ax.bar(x, p2p, width=0.45, color=COLOURS["p2p"], label="With P2P")
    else:
        edges = np.arange(n + 1, dtype=np.float64) - 0.5
        _step_band(ax, np.zeros(n), base, edges, color="#C8C8C8", label="Baseline (no P2P)")
        _steps(ax, p2p, edges, color=COLOURS["p2p"], linewidth=1.0, label="With P2P")
    ax.axhline(0.0, color="#333333", linewidth=0.8)
    if n <= _MAX_NAMED_PARTICIPANTS:
        labels = [drawable_text(names[i]) for i in order]
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=_FONT_SIZE - 1, parse_math=False)
        ax.set_xlabel("Participant (sorted by baseline bill)", fontsize=_FONT_SIZE)
    else:
        ax.set_xlabel("Participants, sorted by baseline bill (rank)", fontsize=_FONT_SIZE)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel(f"Bill [{drawable_text(currency, 8)}]", fontsize=_FONT_SIZE)
    _headroom(ax, 0.15)
    ax.set_title("Bills per participant", fontsize=_TITLE_SIZE, loc="left")
    _legend(ax, ncols=2)
    return fig


def _zero_aligned_edges(values: FloatArray, n_bins: int) -> FloatArray:
    """Histogram edges of equal width with 0 on an edge, so no bin mixes gains and losses."""
    low, high = float(values.min()), float(values.max())
    span = high - low
    if span <= 0:
        span = max(abs(low), 1.0) * 0.2
    raw = span / n_bins
    step = float(10.0 ** np.floor(np.log10(raw)))
    width = step * min((m for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * step >= raw), default=10.0)
    first = float(np.floor(low / width) * width)
    n = max(int(np.ceil(high / width) - np.floor(low / width)), 1)
    edges: FloatArray = first + width * np.arange(n + 1, dtype=np.float64)
    edges[-1] = max(float(edges[-1]), high)  # rounding must not drop the largest value
    return edges


def savings_figure(saving: FloatArray, currency: str) -> Figure:
    """Histogram of per-participant savings against the baseline [currency]; > 0 is better off."""
    values = np.asarray(saving, dtype=np.float64)
    values = values[np.isfinite(values)]
    fig, (ax,) = _new_figure(3.4)
    unit = drawable_text(currency, 8)
    if values.size == 0:
        _no_data(ax, "No savings to show")
    else:
        edges = _zero_aligned_edges(values, int(np.clip(2 * np.ceil(np.sqrt(values.size)), 5, 40)))
        counts, _ = np.histogram(values, bins=edges)
        colours = [COLOURS["gain"] if low >= 0 else COLOURS["loss"] for low in edges[:-1]]
        ax.bar(
            edges[:-1],
            counts,
            width=np.diff(edges),
            align="edge",
            color=colours,
            edgecolor="white",
            linewidth=0.5,
        )
        ax.axvline(0.0, color="#333333", linewidth=0.8)
        median = float(np.median(values))
        ax.axvline(
            median,
            color="#333333",
            linewidth=1.2,
            linestyle="--",
            label=f"Median {number_text(median, 'currency')} {unit}",
        )
        worse = participants_worse_off(values)  # as the summary counts them
        ax.text(
            0.99,
            0.95,
            f"{worse} of {values.size} worse off",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=_FONT_SIZE - 1,
            color="#333333",
        )
        _legend(ax, ncols=1)
    ax.set_xlabel(f"Saving against baseline [{unit}]  (> 0: better off)", fontsize=_FONT_SIZE)
    ax.set_ylabel("Participants [-]", fontsize=_FONT_SIZE)
    ax.set_title("Distribution of savings", fontsize=_TITLE_SIZE, loc="left")
    return fig


def average_day_figure(grid: SlotGrid, community_kwh: Mapping[str, FloatArray]) -> Figure:
    """Average day: mean community power by local clock hour [kW].

    Args:
        community_kwh: (T,) community totals [kWh per slot] with keys demand, generation,
            grid_import, grid_export, baseline_grid_import.
    """
    fig, (ax,) = _new_figure(3.6)
    edges = np.arange(25, dtype=np.float64)
    for key, label, colour, style in (
        ("demand", "Demand", "demand", "-"),
        ("generation", "Generation", "generation", "-"),
        ("grid_import", "Grid import", "grid_import", "-"),
        ("grid_export", "Grid export", "grid_export", "-"),
        ("baseline_grid_import", "Baseline import", "baseline", "--"),
    ):
        kw = np.asarray(community_kwh[key], dtype=np.float64) / grid.dt_h
        _steps(
            ax,
            hour_of_day_mean(kw, grid.local_hour),
            edges,
            label=label,
            color=COLOURS[colour],
            linestyle=style,
            linewidth=2.4 if key == "demand" else 1.5,
        )
    ax.set_xlim(0.0, 24.0)
    ax.set_ylim(bottom=0.0)
    _headroom(ax)
    ax.set_xticks(np.arange(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.set_xlabel(f"Local time of day ({grid.timezone})", fontsize=_FONT_SIZE)
    ax.set_ylabel("Mean power [kW]", fontsize=_FONT_SIZE)
    ax.set_title(
        f"Average day over {grid.days} day{'s' if grid.days != 1 else ''}",
        fontsize=_TITLE_SIZE,
        loc="left",
    )
    _legend(ax, ncols=5)
    return fig


# --- SVG -----------------------------------------------------------------------------------

_ID_OR_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')
_XMLNS = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SIZE = re.compile(r'\s(width|height)="[^"]*"')


def figure_to_svg(fig: Figure, id_prefix: str, label: str = "") -> str:
    """Render `fig` as an SVG element to inline in an HTML5 document, then free the figure.

    The XML prolog, DOCTYPE, RDF metadata and namespace declarations are dropped (the HTML
    parser puts inline `<svg>` and `xlink:href` in the right namespaces), so the markup carries no
    URLs. Every id is renamed to `{id_prefix}{n}` in order of appearance, making ids unique across
    the figures of one page and the output reproducible. The root scales to its container.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    fig.clear()
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = _METADATA.sub("", svg)
    head_end = svg.index(">")
    root = _SIZE.sub("", _XMLNS.sub("", svg[:head_end]))
    aria = f' role="img" aria-label="{html.escape(label, quote=True)}"' if label else ""
    svg = f'{root} class="figure" preserveAspectRatio="xMidYMid meet"{aria}{svg[head_end:]}'

    ids: dict[str, str] = {}
    for match in re.finditer(r'\bid="([^"]+)"', svg):
        ids.setdefault(match.group(1), f"{id_prefix}{len(ids)}")

    def _rename(match: re.Match[str]) -> str:
        return match.group(1) + ids.get(match.group(2), match.group(2))

    return _ID_OR_REF.sub(_rename, svg).strip()
