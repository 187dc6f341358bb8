"""The comparison page from plain data: no engine, numbers as the run report writes them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from peergrid.report.compare_html import (
    ComparisonData,
    DesignData,
    buyers_price_per_kwh,
    render_comparison,
)
from peergrid.report.format import format_value
from peergrid.timegrid import make_grid


def _data() -> ComparisonData:
    grid = make_grid(dt.date(2024, 6, 1), 1, 60, "Europe/Berlin")
    summary = {
        "participants": 3,
        "days": 1,
        "start_local": "2024-06-01",
        "timezone": "Europe/Berlin",
        "slot_minutes": 60,
        "ems": "self-consumption",
        "cost": {"currency": "EUR"},
    }
    table = pd.DataFrame(
        {
            "market": ["sdr", "<b>odd</b>"],
            "family": ["community", "auction"],
            "savings_pct": [12.345, -1.5],
            "total_bill": [1234.5, -0.001],
            "self_sufficiency": [0.4567, float("nan")],
            "participants_worse_off": [0, 1200],
            "iterations_mean": [None, None],
            "max_voltage_pu": [1.10391, 1.05],
        }
    )
    price = np.where(np.arange(24) % 2 == 0, 0.2, np.nan)
    designs = {
        name: DesignData(summary, np.array([1.0, -0.5, 2.0]), price) for name in table["market"]
    }
    return ComparisonData(
        scenario_name="demo & co",
        table=table,
        designs=designs,
        local_hour=grid.local_hour,
        retail_price_per_kwh=np.full(24, 0.3),
        feed_in_price_per_kwh=np.full(24, 0.08),
    )


def test_table_cells_use_the_report_formatting() -> None:
    page = render_comparison(_data())
    assert "<title>demo &amp; co — market designs compared</title>" in page
    assert '<th class="num">Community bill [EUR]</th>' in page
    assert '<th class="num">Self-sufficiency [%]</th>' in page
    assert '<th class="num">Max voltage [p.u.]</th>' in page
    for cell in ("12.3", "\u22121.5", "1,234.50", "0.00", "45.7", "n/a", "1,200", "1.1039"):
        assert f'<td class="num">{cell}</td>' in page, cell
    assert "<td>&lt;b&gt;odd&lt;/b&gt;</td>" in page
    assert format_value(0.4567, "frac") == "45.7 %"  # the run report's text of the same value
    assert page.count("<svg") == 2 and "https://" not in page and "<div style" not in page


def test_buyers_price_is_volume_weighted_and_nan_without_trade() -> None:
    bought = np.array([[1.0, 3.0], [0.0, 0.0]])
    price = np.array([[0.2, 0.1], [np.nan, np.nan]])
    np.testing.assert_allclose(buyers_price_per_kwh(bought, price), [0.125, np.nan])
