"""Aggregation and figure helpers of the report."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
import pytest

from peergrid.metrics.kpi import participants_worse_off
from peergrid.report import plots
from peergrid.report.html import ReportData
from peergrid.timegrid import make_grid

MakeData = Callable[..., ReportData]  # the `make_data` fixture of conftest.py


def test_resolution_follows_run_length() -> None:
    start = dt.date(2024, 1, 1)
    assert plots.time_bins(make_grid(start, 3, 15, "UTC")).resolution == "slot"
    assert plots.time_bins(make_grid(start, 4, 15, "UTC")).resolution == "hour"
    assert plots.time_bins(make_grid(start, 31, 15, "UTC")).resolution == "hour"
    assert plots.time_bins(make_grid(start, 32, 15, "UTC")).resolution == "day"


def test_daily_bins_follow_local_days_across_clock_changes() -> None:
    # Berlin, spring forward on 31 March: that local day has 23 hours = 92 slots.
    grid = make_grid(dt.date(2024, 3, 30), 3, 15, "Europe/Berlin")
    bins = plots.time_bins(grid, "day")
    np.testing.assert_array_equal(bins.first_slot, [0, 96, 188])
    widths_h = np.diff(bins.edges) * 24
    np.testing.assert_allclose(widths_h, [24.0, 23.0, 24.0])
    hours = plots.time_bins(grid, "hour")
    assert hours.n_bins == 24 + 23 + 24
    np.testing.assert_allclose(np.diff(hours.edges) * 24, 1.0)


def test_bin_statistics_ignore_nan_without_warnings() -> None:
    grid = make_grid(dt.date(2024, 1, 1), 2, 60, "UTC")
    bins = plots.time_bins(grid, "day")
    values = np.arange(48, dtype=np.float64)
    values[24:] = np.nan  # a whole day without values (e.g. no clearing price)
    values[0] = np.nan
    np.testing.assert_allclose(plots.bin_mean(values, bins), [12.0, np.nan])  # mean of 1..23
    np.testing.assert_allclose(plots.bin_min(values, bins), [1.0, np.nan])
    np.testing.assert_allclose(plots.bin_max(values, bins), [23.0, np.nan])
    two = np.stack([values, 2 * values], axis=1)
    np.testing.assert_allclose(plots.bin_mean(two, bins), [[12.0, 24.0], [np.nan, np.nan]])


def test_hour_of_day_mean_uses_local_clock() -> None:
    grid = make_grid(dt.date(2024, 7, 1), 2, 30, "Europe/Berlin")
    values = grid.local_hour.copy()  # each slot holds its local clock time [h]
    mean = plots.hour_of_day_mean(values, grid.local_hour)
    np.testing.assert_allclose(mean, np.arange(24) + 0.25)


def test_time_axis_ticks_are_local_time(make_data: MakeData) -> None:
    data = make_data(days=1, n_participants=2, start=dt.date(2024, 7, 1))
    grid = data.grid
    bins = plots.time_bins(grid)
    zeros = np.zeros(grid.n_slots)
    community = dict.fromkeys(
        ("demand", "generation", "grid_import", "grid_export", "p2p_traded"), zeros
    )
    community["baseline_grid_import"] = zeros
    fig = plots.flows_figure(grid, bins, community)
    ax = fig.axes[-1]
    ticks = ax.xaxis.get_majorticklocs()
    tz = ZoneInfo("Europe/Berlin")
    local = [mdates.num2date(t, tz) for t in ticks]  # type: ignore[no-untyped-call]
    assert local[0].hour == 0  # the run starts at local midnight, not at 22:00 UTC
    assert all(t.minute == 0 and t.hour % 3 == 0 for t in local)
    xmin, xmax = ax.get_xlim()
    assert (xmax - xmin) * 24 == pytest.approx(24.0)


def test_drawable_text_replaces_glyphs_the_font_lacks() -> None:
    assert plots.drawable_text("house-1") == "house-1"
    assert plots.drawable_text("émile 🏠") == "émile ?"
    assert plots.drawable_text("a\nb") == "a?b"
    assert plots.drawable_text("x" * 40) == "x" * 15 + "…"


def test_bills_with_odd_names_render_without_mathtext_or_glyph_warnings() -> None:
    names = ["$\\frac{1$", "a_b^c", "🏠 home", "$x$"]
    fig = plots.bills_figure(names, np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4), "€")
    svg = plots.figure_to_svg(fig, "b-")
    assert svg.startswith("<svg")


def test_savings_figure_counts_the_worse_off_as_the_summary_does() -> None:
    # a saving of -1e-12 is rounding noise: the summary's KPI does not count it, nor the figure
    saving = np.array([-1e-12, -2.0, 3.0])
    fig = plots.savings_figure(saving, "EUR")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert f"{participants_worse_off(saving)} of 3 worse off" in texts
    assert "1 of 3 worse off" in texts


def test_figure_to_svg_is_inline_ready() -> None:
    fig = plots.savings_figure(np.array([-1.0, 2.0, 3.0]), "EUR")
    svg = plots.figure_to_svg(fig, "s-", label='x"<y>')
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "http" not in svg and "<metadata" not in svg and "<?xml" not in svg
    assert 'aria-label="x&quot;&lt;y&gt;"' in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(re.fullmatch(r"s-\d+", i) for i in ids)
    assert len(ids) == len(set(ids))
    refs = re.findall(r'href="#([^"]+)"', svg) + re.findall(r"url\(#([^)]+)\)", svg)
    assert refs and set(refs) <= set(ids)


@pytest.mark.parametrize(
    "values",
    [
        np.array([-12.3, -0.1, 0.0, 4.0, 37.5]),
        np.array([5.0]),
        np.array([0.0, 0.0]),
        np.array([-3.0, -1.0]),
        np.linspace(0.1, 0.7, 7),
    ],
)
def test_savings_histogram_edges_have_zero_on_an_edge_and_hold_every_value(
    values: np.ndarray,
) -> None:
    edges = plots._zero_aligned_edges(values, 10)
    assert edges[0] <= values.min() and values.max() <= edges[-1]
    width = edges[1] - edges[0]
    assert abs(edges[0] / width - round(edges[0] / width)) < 1e-9  # 0 falls on an edge
    counts, _ = np.histogram(values, bins=edges)
    assert counts.sum() == values.size


def test_soc_figure_is_none_without_storage() -> None:
    grid = make_grid(dt.date(2024, 1, 1), 1, 60, "UTC")
    zeros = np.zeros((24, 3))
    assert plots.soc_figure(grid, plots.time_bins(grid), [("Battery", zeros, np.zeros(3))]) is None
