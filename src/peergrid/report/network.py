"""The network section of the run report: voltages, branch loading, losses and curtailment.

`network_section(NetworkReportData) -> str` returns an HTML fragment (`<section>…</section>`)
that uses the classes of the page style (`peergrid.report.page.PAGE_CSS`). It compares the run
with P2P trading against the baseline without it on the same feeder:

- a table of key network figures (voltage extremes, slots outside the voltage limits, slots
  with an overloaded branch, highest loading, losses, curtailment);
- a heat map of voltage by bus (rows in the given, electrical order) and time, for both cases on
  one colour scale whose ends are the voltage limits, with 1.0 p.u. white;
- the buses with the highest and the lowest voltages;
- the time series of the highest branch loading against the limit, and the most loaded branches;
- energy losses (and curtailment, when there is any) per local day.

Long runs are thinned before drawing: a heat map has at most `MAX_HEATMAP_COLUMNS` columns of
`k` consecutive slots, and each cell keeps the bus's most extreme voltage in those slots (the
maximum, unless the minimum lies relatively closer to or beyond its limit), so a single slot
outside the limits stays visible. The heat map is a raster (a PNG embedded in the inline SVG
as a `data:` URI): a vector grid of 130 buses x 1,500 columns would weigh tens of MB. A year of
15-minute slots on 130 buses gives a fragment of about 1 MB, rendered in about 2 s.

Inputs should be finite; a NaN (e.g. a slot whose power flow did not converge) is tolerated:
extremes and counts ignore it and the heat map draws it grey. The key figures and their
tolerances are `peergrid.network.kpi`'s, the text of numbers `peergrid.report.format`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from numpy.typing import NDArray

from peergrid.network.kpi import (
    V_TOL_PU,
    NetworkKpis,
    most_loaded_branches,
    network_kpis,
    overloaded,
    overvoltage,
    undervoltage,
    worst_buses,
)
from peergrid.report import plots
from peergrid.report.format import (
    KpiRow,
    duration,
    escape,
    format_change,
    format_value,
    kpi_table,
    number_text,
    table,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MAX_HEATMAP_COLUMNS = 1500
"""Most time columns a voltage heat map has; longer runs are grouped into blocks of slots."""

N_WORST = 10
"""Rows of the worst-bus and most-loaded-branch tables."""

ANCHOR = "network"
"""Id of the section heading, for the page's navigation."""

_OVER_COLOUR = "#000000"  # heat-map cells above the upper voltage limit
_UNDER_COLOUR = "#E69F00"  # heat-map cells below the lower voltage limit
_NAN_COLOUR = "#BBBBBB"
_LIMIT_COLOUR = "#D55E00"
_MAX_BUS_TICKS = 24


@dataclass(frozen=True, eq=False)
class NetworkCase:
    """Network state of one run ("P2P" or "baseline") over the slot grid.

    Attributes:
        v_pu: voltage magnitude of the reported (LV) buses [p.u.], (T, M).
        loading_pct: loading of the monitored lines and transformers [% of rating], (T, K).
        losses_kw: active power losses of the feeder [kW], (T,).
        curtailed_kwh: generation curtailed in the community [kWh per slot], (T,); zeros if none.
    """

    v_pu: NDArray[np.float32]
    loading_pct: NDArray[np.float32]
    losses_kw: NDArray[np.float64]
    curtailed_kwh: NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class NetworkReportData:
    """Everything the network section shows; built by the engine.

    Attributes:
        feeder_name: e.g. "simbench-lv-rural3".
        bus_labels: (M,) names of the reported buses, in electrical order (kept as given).
        branch_labels: (K,) names of the monitored branches, e.g. "line 12", "trafo 0".
        times_local: (T,) slot starts in local time (tz-aware; naive is read as local).
        dt_h: slot length [h].
        v_min_pu, v_max_pu: voltage limits [p.u.].
        max_loading_pct: loading limit of every branch [%].
        p2p: the run with P2P trading.
        baseline: the same community without P2P trading.
        envelope_note: how exports were limited, e.g. "dynamic operating envelopes"; None if not.
    """

    feeder_name: str
    bus_labels: list[str]
    branch_labels: list[str]
    times_local: pd.DatetimeIndex
    dt_h: float
    v_min_pu: float
    v_max_pu: float
    max_loading_pct: float
    p2p: NetworkCase
    baseline: NetworkCase
    envelope_note: str | None


def _check(data: NetworkReportData) -> None:
    """Fail early, naming the field, if the arrays do not fit the labels and the time index."""
    n_slots, n_bus, n_branch = len(data.times_local), len(data.bus_labels), len(data.branch_labels)
    if n_slots < 1:
        raise ValueError("NetworkReportData.times_local: at least one slot is needed")
    if n_bus < 1:
        raise ValueError("NetworkReportData.bus_labels: at least one bus is needed")
    if not data.dt_h > 0:
        raise ValueError(f"NetworkReportData.dt_h: {data.dt_h}, expected > 0")
    if not data.v_min_pu < data.v_max_pu:
        raise ValueError(
            f"NetworkReportData: v_min_pu {data.v_min_pu} must be below v_max_pu {data.v_max_pu}"
        )
    for name, case in (("p2p", data.p2p), ("baseline", data.baseline)):
        for field, expected in (
            ("v_pu", (n_slots, n_bus)),
            ("loading_pct", (n_slots, n_branch)),
            ("losses_kw", (n_slots,)),
            ("curtailed_kwh", (n_slots,)),
        ):
            shape = np.shape(getattr(case, field))
            if shape != expected:
                raise ValueError(
                    f"NetworkReportData.{name}.{field}: shape {shape}, expected {expected}"
                )


# --- aggregates ------------------------------------------------------------------------------


def case_kpis(data: NetworkReportData, case: NetworkCase) -> NetworkKpis:
    """The key figures of one case of `data` (`peergrid.network.kpi.network_kpis`)."""
    return network_kpis(
        case.v_pu,
        case.loading_pct,
        case.losses_kw,
        dt_h=data.dt_h,
        v_min_pu=data.v_min_pu,
        v_max_pu=data.v_max_pu,
        max_loading_pct=data.max_loading_pct,
        curtailed_kwh=case.curtailed_kwh,
    )


def percentile_by_column(values: NDArray[np.floating], q: float) -> FloatArray:
    """The `q`-th percentile of each column over its finite values; NaN for a column with none."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if finite.all():
        return np.asarray(np.percentile(x, q, axis=0), dtype=np.float64)
    out = np.full(x.shape[1], np.nan)
    for j in np.flatnonzero(finite.any(axis=0)):  # only with NaN present: rare, per column
        out[j] = np.percentile(x[finite[:, j], j], q)
    return out


def slots_per_column(n_slots: int, dt_h: float, max_columns: int = MAX_HEATMAP_COLUMNS) -> int:
    """Slots per heat-map column: 1 if the run fits in `max_columns`, else the smallest block
    of at least ceil(n_slots / max_columns) slots that divides a day (so columns follow the
    clock), falling back to that minimum when no such divisor exists."""
    k_min = -(-n_slots // max_columns)
    if k_min <= 1:
        return 1
    per_day = 24.0 / dt_h
    if abs(per_day - round(per_day)) < 1e-9:
        whole = round(per_day)
        for k in range(k_min, whole + 1):
            if whole % k == 0:
                return k
    return k_min


def heatmap_columns(
    v_pu: NDArray[np.floating], k: int, *, v_min_pu: float, v_max_pu: float
) -> FloatArray:
    """Voltages thinned to blocks of `k` slots for a heat map, (ceil(T / k), M) [p.u.].

    Each cell is the bus's most severe voltage in the block: the block maximum, unless the
    block minimum is relatively further from 1.0 p.u. towards its limit, i.e.
    (1 - min) / (1 - v_min_pu) > (max - 1) / (v_max_pu - 1). A single slot outside a limit
    therefore shows, unless a worse one on the other side shares its block. With limits that
    do not bracket 1.0 p.u., the block maximum is kept.
    """
    v = np.asarray(v_pu, dtype=np.float64)
    if k <= 1:
        return v
    starts = np.arange(0, v.shape[0], k)
    high = np.fmax.reduceat(v, starts, axis=0)
    low = np.fmin.reduceat(v, starts, axis=0)
    if not v_min_pu < 1.0 < v_max_pu:
        return np.asarray(high, dtype=np.float64)
    over = (high - 1.0) / (v_max_pu - 1.0)
    under = (1.0 - low) / (1.0 - v_min_pu)
    return np.asarray(np.where(under > over, low, high), dtype=np.float64)


def slot_edges(times_local: pd.DatetimeIndex, dt_h: float) -> FloatArray:
    """Slot boundaries as matplotlib date numbers of UTC instants [d], (T + 1,)."""
    if times_local.tz is not None:
        naive = times_local.tz_convert("UTC").tz_localize(None)
    else:
        naive = times_local
    starts = naive.to_numpy(dtype="datetime64[ns]")
    end = starts[-1] + np.timedelta64(round(dt_h * 3.6e12), "ns")
    days = mdates.date2num(np.append(starts, end))  # type: ignore[no-untyped-call]
    return np.asarray(days, dtype=np.float64)


def day_first_slots(times_local: pd.DatetimeIndex) -> IntArray:
    """Index of the first slot of each local calendar day, (n_days,)."""
    day = times_local.normalize().to_numpy()
    return np.flatnonzero(np.r_[True, day[1:] != day[:-1]]).astype(np.int64)


# --- figures ---------------------------------------------------------------------------------


def _time_axis(ax: Axes, edges: FloatArray, times_local: pd.DatetimeIndex) -> None:
    """Local-time ticks on a date-number axis (as `plots`, but without a SlotGrid)."""
    ax.set_xlim(float(edges[0]), float(edges[-1]))
    tz = times_local.tz
    # matplotlib.dates is not annotated: hence the ignores on its constructors.
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=tz)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    label = f"Local time ({tz})" if tz is not None else "Local time"
    ax.set_xlabel(plots.drawable_text(label, 60), fontsize=9.0)


def _voltage_norm(v_min_pu: float, v_max_pu: float) -> Normalize:
    # Widened by the tolerance: a voltage held at a limit is not drawn as a violation.
    low, high = v_min_pu - V_TOL_PU, v_max_pu + V_TOL_PU
    if v_min_pu < 1.0 < v_max_pu:
        return TwoSlopeNorm(vcenter=1.0, vmin=low, vmax=high)
    return Normalize(vmin=low, vmax=high)


def voltage_heatmap_figure(
    data: NetworkReportData, edges: FloatArray, k: int, columns: Sequence[FloatArray]
) -> Figure:
    """Voltage by bus (rows, given order) and time (columns of `k` slots), P2P above baseline.

    One colour scale: its ends are the voltage limits, 1.0 p.u. is white; cells above the upper
    limit are black, below the lower limit orange, NaN grey.
    """
    n_slots, n_bus = len(data.times_local), len(data.bus_labels)
    panel_in = float(np.clip(0.9 + 0.014 * n_bus, 1.4, 2.8))
    fig, axes = plots._new_figure(2 * panel_in + 0.9, nrows=2)
    cmap = colormaps["RdBu_r"].with_extremes(
        over=_OVER_COLOUR, under=_UNDER_COLOUR, bad=_NAN_COLOUR
    )
    norm = _voltage_norm(data.v_min_pu, data.v_max_pu)
    n_cols = -(-n_slots // k)
    # Every column spans k slots; a shorter last block is cut off by the axis limit.
    x_right = float(edges[0] + n_cols * k * (edges[-1] - edges[0]) / n_slots)
    step = max(1, -(-n_bus // _MAX_BUS_TICKS))
    ticks = np.arange(0, n_bus, step)
    images = []
    for ax, title, values in zip(axes, ("With P2P", "Baseline (no P2P)"), columns, strict=True):
        image = ax.imshow(
            values.T,
            aspect="auto",
            interpolation="none",
            cmap=cmap,
            norm=norm,
            extent=(float(edges[0]), x_right, n_bus - 0.5, -0.5),
        )
        images.append(image)
        ax.grid(False)
        ax.set_yticks(
            ticks,
            [plots.drawable_text(data.bus_labels[i]) for i in ticks],
            fontsize=7.0,
            parse_math=False,
        )
        ax.set_ylabel("Bus (feeder order)", fontsize=9.0)
        ax.set_title(f"Bus voltage: {title}", fontsize=12.0, loc="left")
    _time_axis(axes[-1], edges, data.times_local)
    cbar = fig.colorbar(images[0], ax=axes, extend="both", fraction=0.03, pad=0.01)
    limits = [data.v_min_pu, 1.0, data.v_max_pu] if data.v_min_pu < 1.0 < data.v_max_pu else []
    ticks_v = limits or [data.v_min_pu, data.v_max_pu]
    cbar.set_ticks(ticks_v, labels=[f"{t:.2f}" for t in ticks_v])
    cbar.ax.tick_params(labelsize=8.0)
    cbar.set_label("Voltage [p.u.]; ends = limits", fontsize=9.0)
    return fig


def series_bins(times_local: pd.DatetimeIndex, dt_h: float) -> tuple[IntArray, str]:
    """First slot of each bin for a time-series line, and what one bin is ("" for a slot).

    As the other report figures: every slot up to 3 days, clock hours up to 31 days (when an
    hour is a whole number of slots), local days beyond.
    """
    n_slots = len(times_local)
    days = n_slots * dt_h / 24.0
    per_hour = 1.0 / dt_h
    if days <= 3 or (days <= 31 and (per_hour < 1.5 or abs(per_hour - round(per_hour)) > 1e-9)):
        return np.arange(n_slots, dtype=np.int64), ""
    if days <= 31:
        return np.arange(0, n_slots, round(per_hour), dtype=np.int64), "hour"
    return day_first_slots(times_local), "local day"


def loading_figure(
    data: NetworkReportData,
    edges: FloatArray,
    first: IntArray,
    per: str,
    max_loading: Sequence[FloatArray],
) -> Figure:
    """Highest branch loading [%], the maximum over the slots of each bin starting at `first`
    (`per` names the bin, "" for single slots), P2P and baseline, against the loading limit."""
    fig, (ax,) = plots._new_figure(3.4)
    n_slots = len(data.times_local)
    bin_edges = edges[np.append(first, n_slots)]
    for values, label, colour, style in (
        (max_loading[1], "Baseline (no P2P)", plots.COLOURS["baseline"], "--"),
        (max_loading[0], "With P2P", plots.COLOURS["p2p"], "-"),
    ):
        binned = np.fmax.reduceat(values, first) if per else values
        plots._steps(
            ax, binned, bin_edges, label=label, color=colour, linestyle=style, linewidth=1.2
        )
    ax.axhline(
        data.max_loading_pct,
        color=_LIMIT_COLOUR,
        linestyle=":",
        linewidth=1.4,
        label=f"Limit {data.max_loading_pct:g} %",
    )
    ax.set_ylim(bottom=0.0)
    plots._headroom(ax)
    ax.margins(x=0.0)
    what = "Highest branch loading [%]"
    ax.set_ylabel(f"{what},\nmax per {per}" if per else what, fontsize=9.0)
    ax.set_title("Branch loading: P2P against baseline", fontsize=12.0, loc="left")
    plots._legend(ax, ncols=3)
    _time_axis(ax, edges, data.times_local)
    return fig


def daily_figure(
    data: NetworkReportData,
    edges: FloatArray,
    losses_kwh: Sequence[FloatArray],
    curtailed_kwh: Sequence[FloatArray] | None,
) -> Figure:
    """Energy losses per local day [kWh], P2P and baseline; curtailment per day below if given."""
    first = day_first_slots(data.times_local)
    day_edges = edges[np.append(first, len(data.times_local))]
    panels: list[tuple[str, str, Sequence[FloatArray]]] = [
        ("Network losses per day", "Losses [kWh/day]", losses_kwh)
    ]
    if curtailed_kwh is not None:
        panels.append(("Curtailed generation per day", "Curtailed [kWh/day]", curtailed_kwh))
    fig, axes = plots._new_figure(3.0 * len(panels) + 0.4, nrows=len(panels))
    for ax, (title, ylabel, pair) in zip(axes, panels, strict=True):
        for values, label, colour, style in (
            (pair[1], "Baseline (no P2P)", plots.COLOURS["baseline"], "--"),
            (pair[0], "With P2P", plots.COLOURS["p2p"], "-"),
        ):
            daily = np.add.reduceat(np.nan_to_num(values), first)
            plots._steps(
                ax, daily, day_edges, label=label, color=colour, linestyle=style, linewidth=1.4
            )
        ax.set_ylim(bottom=0.0)
        plots._headroom(ax)
        ax.margins(x=0.0)
        ax.set_ylabel(ylabel, fontsize=9.0)
        ax.set_title(title, fontsize=12.0, loc="left")
        plots._legend(ax, ncols=2)
    _time_axis(axes[-1], edges, data.times_local)
    return fig


# --- HTML ------------------------------------------------------------------------------------


def _kpi_rows(data: NetworkReportData, p2p: NetworkKpis, base: NetworkKpis) -> list[KpiRow]:
    """(label, P2P, baseline, change, meaning) of the key-figure table."""

    def measured(a: float, b: float, unit: str) -> tuple[str, str, str]:
        return format_value(a, unit), format_value(b, unit), format_change(a, b, unit)

    def slots(a: int, b: int) -> tuple[str, str, str]:
        def one(x: int) -> str:
            return f"{number_text(x, 'count')} ({number_text(100 * x / p2p.n_slots, '%')} %)"

        return one(a), one(b), format_change(a, b, "count", relative=False)

    lo, hi, lim = data.v_min_pu, data.v_max_pu, data.max_loading_pct
    curtail_meaning = "Generation held back to keep the network within its limits"
    if data.envelope_note:
        curtail_meaning += f" ({data.envelope_note})"
    rows = [
        (
            "Lowest voltage",
            *measured(p2p.min_voltage_pu, base.min_voltage_pu, "p.u."),
            f"Lowest voltage at any bus in any slot; lower limit {lo:.2f} p.u.",
        ),
        (
            "Highest voltage",
            *measured(p2p.max_voltage_pu, base.max_voltage_pu, "p.u."),
            f"Highest voltage at any bus in any slot; upper limit {hi:.2f} p.u.",
        ),
        (
            "Slots with over-voltage",
            *slots(p2p.overvoltage_slots, base.overvoltage_slots),
            f"Slots in which at least one bus is above {hi:.2f} p.u.",
        ),
        (
            "Slots with under-voltage",
            *slots(p2p.undervoltage_slots, base.undervoltage_slots),
            f"Slots in which at least one bus is below {lo:.2f} p.u.",
        ),
        (
            "Slots with a voltage violation",
            *slots(p2p.voltage_violation_slots, base.voltage_violation_slots),
            "Slots in which at least one bus is outside the voltage limits.",
        ),
        (
            "Slots with an overload",
            *slots(p2p.overload_slots, base.overload_slots),
            f"Slots in which a line or transformer is loaded above {lim:g} %.",
        ),
        (
            "Highest loading",
            *measured(p2p.max_loading_pct, base.max_loading_pct, "%"),
            "Highest loading of any line or transformer, in % of its rating.",
        ),
        (
            "Network losses",
            *measured(p2p.losses_kwh, base.losses_kwh, "kWh"),
            "Energy lost in the feeder's lines and transformers.",
        ),
        (
            "Curtailed generation",
            *measured(p2p.curtailed_kwh, base.curtailed_kwh, "kWh"),
            curtail_meaning,
        ),
    ]
    return rows


def _bus_table(data: NetworkReportData, *, high: bool) -> str:
    p2p, base = data.p2p.v_pu, data.baseline.v_pu
    if high:
        reduce, limit, sign, word = np.fmax.reduce, data.v_max_pu, ">", "Max"
        p2p_count = overvoltage(p2p, limit).sum(axis=0)
        base_count = overvoltage(base, limit).sum(axis=0)
    else:
        reduce, limit, sign, word = np.fmin.reduce, data.v_min_pu, "<", "Min"
        p2p_count = undervoltage(p2p, limit).sum(axis=0)
        base_count = undervoltage(base, limit).sum(axis=0)
    p2p_ext, base_ext = reduce(p2p, axis=0), reduce(base, axis=0)
    rows = [
        (
            str(rank),
            data.bus_labels[i],
            number_text(float(p2p_ext[i]), "p.u."),
            number_text(int(p2p_count[i]), "count"),
            number_text(float(base_ext[i]), "p.u."),
            number_text(int(base_count[i]), "count"),
        )
        for rank, i in enumerate(worst_buses(p2p, N_WORST, high=high), start=1)
    ]
    heads = (
        "#",
        "Bus",
        f"{word} with P2P [p.u.]",
        f"Slots {sign} {limit:.2f} p.u. with P2P",
        f"{word} baseline [p.u.]",
        f"Slots {sign} {limit:.2f} p.u. baseline",
    )
    return table(heads, rows, (True, False, True, True, True, True))


def _branch_table(data: NetworkReportData) -> str:
    lim = data.max_loading_pct
    stats = []
    for case in (data.p2p, data.baseline):
        x = case.loading_pct
        stats.append(
            (
                np.fmax.reduce(x, axis=0),
                percentile_by_column(x, 99.0),
                overloaded(x, lim).sum(axis=0),
            )
        )
    rows = []
    for rank, j in enumerate(most_loaded_branches(data.p2p.loading_pct, N_WORST), start=1):
        cells = [str(rank), data.branch_labels[j]]
        for top, p99, count in stats:
            cells += [number_text(float(x[j]), "%") for x in (top, p99)]
            cells.append(number_text(int(count[j]), "count"))
        rows.append(cells)
    heads = ["#", "Branch"]
    for which in ("with P2P", "baseline"):
        heads += [f"Max {which} [%]", f"99th pct {which} [%]", f"Slots > {lim:g} % {which}"]
    return table(heads, rows, [True, False] + [True] * 6)


_PIXELATED = ' style="image-rendering:crisp-edges;image-rendering:pixelated"'
_CRISP_MAX_COLUMNS = 600


def _figure(
    anchor: str, heading: str, fig: Figure, caption: str, *, smooth_images: bool = False
) -> str:
    svg = plots.figure_to_svg(fig, f"{anchor}-fig-", heading)
    if smooth_images:
        # matplotlib asks browsers for nearest-neighbour scaling of unsampled images: right
        # when cells are enlarged, but when a wide heat map is shrunk to the page it drops
        # columns, and with them the one-slot extremes the columns were built to keep.
        svg = svg.replace(_PIXELATED, "")
    return (
        f'<h3 id="{anchor}">{escape(heading)}</h3><figure>{svg}'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def network_section(
    data: NetworkReportData, kpis: tuple[NetworkKpis, NetworkKpis] | None = None
) -> str:
    """The network section of the report as an HTML fragment, `<section>…</section>`.

    `kpis` are the key figures (P2P, baseline) the run's summary states; the report of a run
    passes them, so that its table shows summary.json's figures. None computes them from
    `data` with the same function (`peergrid.network.kpi.network_kpis`).

    Raises:
        ValueError: the arrays do not match the labels and `times_local`, or the limits are
            inverted.
    """
    _check(data)
    n_slots, n_bus, n_branch = len(data.times_local), len(data.bus_labels), len(data.branch_labels)
    p2p, base = (
        kpis if kpis is not None else (case_kpis(data, data.p2p), case_kpis(data, data.baseline))
    )
    edges = slot_edges(data.times_local, data.dt_h)
    cases = (data.p2p, data.baseline)

    intro = (
        f"Feeder {data.feeder_name}: {n_bus:,} buses reported, {n_branch:,} lines and "
        f"transformers monitored, {n_slots:,} slots of {duration(data.dt_h)}. Limits: "
        f"voltage {data.v_min_pu:.2f}\u2013{data.v_max_pu:.2f} p.u., loading "
        f"{data.max_loading_pct:g} % of rating. Exports limited by: "
        f"{data.envelope_note or 'nothing (no operating envelope)'}."
    )
    parts = [
        f'<section><h2 id="{ANCHOR}">Network</h2><p class="muted">{escape(intro)}</p>',
        kpi_table(_kpi_rows(data, p2p, base)),
    ]

    k = slots_per_column(n_slots, data.dt_h)
    columns = [
        heatmap_columns(c.v_pu, k, v_min_pu=data.v_min_pu, v_max_pu=data.v_max_pu) for c in cases
    ]
    thinning = (
        "Each column is one slot."
        if k == 1
        else f"Each column covers {k} slots ({duration(k * data.dt_h)}) and shows the bus's "
        "most extreme voltage in them: the maximum, unless the minimum lies relatively closer "
        "to (or beyond) the lower limit, so that a single slot outside a limit stays visible."
    )
    nan_note = (
        " Grey cells have no voltage (the power flow did not converge)."
        if any(not np.isfinite(c.v_pu).all() for c in cases)
        else ""
    )
    parts.append(
        _figure(
            f"{ANCHOR}-voltage",
            "Voltage by bus and time",
            voltage_heatmap_figure(data, edges, k, columns),
            "Voltage of every reported bus (rows, in feeder order) over time, with P2P trading "
            "(top) and in the baseline without it (bottom), on one colour scale: white is "
            f"1.00 p.u., the darkest blue and red are the limits {data.v_min_pu:.2f} and "
            f"{data.v_max_pu:.2f} p.u.; orange cells are below the lower limit, black cells "
            f"above the upper one. {thinning}{nan_note}",
            smooth_images=columns[0].shape[0] > _CRISP_MAX_COLUMNS,
        )
    )
    parts += [
        f'<h3 id="{ANCHOR}-high">Buses with the highest voltage</h3>',
        _bus_table(data, high=True),
        f'<h3 id="{ANCHOR}-low">Buses with the lowest voltage</h3>',
        _bus_table(data, high=False),
        '<p class="muted">Ranked by the run with P2P trading; the slot counts are this bus\'s '
        "slots outside the limit.</p>",
    ]

    if n_branch:
        max_loading = [np.fmax.reduce(c.loading_pct, axis=1).astype(np.float64) for c in cases]
        first, per = series_bins(data.times_local, data.dt_h)
        parts.append(
            _figure(
                f"{ANCHOR}-loading",
                "Branch loading",
                loading_figure(data, edges, first, per, max_loading),
                "The highest loading of any line or transformer, in % of its rating, with P2P "
                "trading and in the baseline, against the limit (dotted). "
                + (f"Each step is the highest of a {per}." if per else "Each slot is shown."),
            )
        )
        parts += [
            f'<h3 id="{ANCHOR}-branches">Most loaded branches</h3>',
            _branch_table(data),
            '<p class="muted">Ranked by the highest loading with P2P trading. The 99th '
            "percentile is the loading exceeded in 1 % of the slots.</p>",
        ]
    else:
        parts.append('<p class="note">No lines or transformers are monitored on this feeder.</p>')

    losses = [np.asarray(c.losses_kw, dtype=np.float64) * data.dt_h for c in cases]
    curtailed = [np.asarray(c.curtailed_kwh, dtype=np.float64) for c in cases]
    any_curtailed = any(bool(np.nansum(c) > 0) for c in curtailed)
    parts.append(
        _figure(
            f"{ANCHOR}-losses",
            "Losses" + (" and curtailment" if any_curtailed else ""),
            daily_figure(data, edges, losses, curtailed if any_curtailed else None),
            "Energy lost in the feeder per local day, with P2P trading and in the baseline"
            + (
                "; below, generation curtailed per day."
                if any_curtailed
                else ". No generation was curtailed in either case."
            ),
        )
    )
    parts.append("</section>")
    return "".join(parts)


__all__ = [
    "ANCHOR",
    "MAX_HEATMAP_COLUMNS",
    "N_WORST",
    "NetworkCase",
    "NetworkReportData",
    "case_kpis",
    "day_first_slots",
    "heatmap_columns",
    "network_section",
    "percentile_by_column",
    "series_bins",
    "slot_edges",
    "slots_per_column",
]
