"""Synthetic `ReportData` for the report tests: plausible shapes, exact bookkeeping not needed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from peergrid.report.html import ReportData
from peergrid.timegrid import make_grid

MakeData = Callable[..., ReportData]


def make_report_data(
    days: int = 1,
    n_participants: int = 5,
    *,
    start: dt.date = dt.date(2024, 3, 30),
    slot_minutes: int = 15,
    timezone: str = "Europe/Berlin",
    names: Sequence[str] | None = None,
    batteries: bool = True,
    evs: bool = True,
    generation: bool = True,
    clearing_nan: bool = False,
    extra_summary: dict[str, Any] | None = None,
    seed: int = 1,
) -> ReportData:
    """A run-like `ReportData`: PV on some roofs, evening demand peaks, pro-rata P2P sharing."""
    rng = np.random.default_rng(seed)
    grid = make_grid(start, days, slot_minutes, timezone)
    n, p, dt_h = grid.n_slots, n_participants, grid.dt_h
    hour = grid.local_hour[:, None]
    day_of_year = grid.local_day_of_year[:, None]

    scale = rng.uniform(0.5, 1.5, p)
    demand_kw = scale * (0.3 + 0.5 * np.exp(-(((hour - 19.0) / 2.5) ** 2)))
    demand_kw = demand_kw * rng.uniform(0.7, 1.3, (n, p))
    demand = demand_kw * dt_h
    season = 0.6 + 0.4 * np.cos(2 * np.pi * (day_of_year - 172) / 365)
    pv_kwp = np.where(rng.random(p) < 0.6, rng.uniform(3.0, 8.0, p), 0.0)
    pv_kwp[0] = 5.0
    if not generation:
        pv_kwp[:] = 0.0
    sun = np.clip(np.cos((hour - 13.0) / 12.0 * np.pi), 0.0, None) ** 2
    generation_kwh = np.zeros((n, p)) + pv_kwp * sun * season * dt_h

    net = generation_kwh - demand  # > 0: surplus
    base_import = np.clip(-net, 0.0, None)
    base_export = np.clip(net, 0.0, None)
    supply = base_export.sum(axis=1, keepdims=True)
    want = base_import.sum(axis=1, keepdims=True)
    traded = np.minimum(supply, want)
    bought = np.divide(base_import * traded, want, out=np.zeros_like(net), where=want > 0)
    sold = np.divide(base_export * traded, supply, out=np.zeros_like(net), where=supply > 0)
    grid_import, grid_export = base_import - bought, base_export - sold

    battery_cap = np.where(rng.random(p) < 0.5, 10.0, 0.0) if batteries else np.zeros(p)
    ev_cap = np.where(rng.random(p) < 0.3, 60.0, 0.0) if evs else np.zeros(p)
    phase = rng.uniform(0, 2 * np.pi, p)
    soc_frac = 0.5 + 0.4 * np.sin(2 * np.pi * hour / 24.0 + phase)
    ev_frac = 0.6 + 0.3 * np.cos(2 * np.pi * hour / 24.0 + phase)

    retail = np.where((grid.local_hour >= 17) & (grid.local_hour < 21), 0.40, 0.30)
    feed_in = np.full(n, 0.08)
    mid = (retail + feed_in) / 2
    has_trade = traded[:, 0] > 0
    clearing = np.full(n, np.nan) if clearing_nan else np.where(has_trade, mid, np.nan)
    buy = np.where(has_trade, mid + 0.01, np.nan)
    sell = np.where(has_trade, mid - 0.01, np.nan)
    prices = pd.DataFrame(
        {
            "slot_start": grid.starts_utc,
            "retail_price": retail,
            "feed_in_price": feed_in,
            "clearing_price": clearing,
            "buy_price": buy,
            "sell_price": sell,
            "p2p_traded_kwh": traded[:, 0],
            "operator_surplus": np.where(has_trade, 0.02 * traded[:, 0], 0.0),
        }
    )

    base_bill = (base_import * retail[:, None] - base_export * feed_in[:, None]).sum(axis=0)
    bill = (
        grid_import * retail[:, None]
        - grid_export * feed_in[:, None]
        + bought * np.nan_to_num(buy)[:, None]
        - sold * np.nan_to_num(sell)[:, None]
    ).sum(axis=0)
    bill = bill + rng.normal(0.0, 0.05 * days, p)  # some participants end up worse off
    names = list(names) if names is not None else [f"house-{i:03d}" for i in range(p)]
    saving = base_bill - bill
    participants = pd.DataFrame(
        {
            "participant": names,
            "baseline_bill": base_bill,
            "bill": bill,
            "saving": saving,
            "saving_pct": np.divide(
                100 * saving, base_bill, out=np.full(p, np.nan), where=base_bill > 0
            ),
            "grid_import_kwh": grid_import.sum(axis=0),
            "grid_export_kwh": grid_export.sum(axis=0),
            "p2p_bought_kwh": bought.sum(axis=0),
            "p2p_sold_kwh": sold.sum(axis=0),
            "pv_kwp": pv_kwp,
            "battery_kwh": battery_cap,
            "heating": ["heat-pump" if i % 2 else "" for i in range(p)],
        }
    )
    series = {
        "demand_kwh": demand,
        "generation_kwh": generation_kwh,
        "storage_charge_kwh": np.zeros((n, p)),
        "storage_discharge_kwh": np.zeros((n, p)),
        "net_kwh": net,
        "grid_import_kwh": grid_import,
        "grid_export_kwh": grid_export,
        "p2p_bought_kwh": bought,
        "p2p_sold_kwh": sold,
        "battery_soc_end_kwh": soc_frac * battery_cap,
        "ev_soc_end_kwh": ev_frac * ev_cap,
        "baseline_grid_import_kwh": base_import,
        "baseline_grid_export_kwh": base_export,
        # a forecast that missed by a tenth: the commitment the net was metered against
        "committed_kwh": net * 0.9,
        "deviation_kwh": net - net * 0.9,
        "battery_capacity_kwh": battery_cap,
        "ev_capacity_kwh": ev_cap,
    }
    total_demand, total_gen = float(demand.sum()), float(generation_kwh.sum())
    # Keys as the engine's `summarise` writes them.
    summary: dict[str, Any] = {
        "scenario": "synthetic",
        "market": "sdr",
        "ems": "rule-based",
        "participants": p,
        "slots": n,
        "slot_minutes": slot_minutes,
        "days": days,
        "start_local": start.isoformat(),
        "timezone": timezone,
        "seed": seed,
        "runtime_s": 1.234,
        "timing_s": {"build": 0.2, "slots": 0.9, "summarise": 0.134},
        "market_info": {"iterations": 3.0},
        "energy": {
            "demand_kwh": total_demand,
            "generation_kwh": total_gen,
            "grid_import_kwh": float(grid_import.sum()),
            "grid_export_kwh": float(grid_export.sum()),
            "p2p_traded_kwh": float(traded.sum()),
            "baseline_grid_import_kwh": float(base_import.sum()),
            "baseline_grid_export_kwh": float(base_export.sum()),
        },
        "cost": {
            "currency": "EUR",
            "baseline_total": float(base_bill.sum()),
            "total": float(bill.sum()),
            "savings": float(saving.sum()),
            "savings_pct": float(100 * saving.sum() / base_bill.sum()),
            "operator_surplus": float(prices["operator_surplus"].sum()),
        },
        "kpi": {
            "self_sufficiency": 1 - float(grid_import.sum()) / total_demand,
            "self_consumption": (
                1 - float(grid_export.sum()) / total_gen if total_gen > 0 else float("nan")
            ),
            "peak_import_kw": float(grid_import.sum(axis=1).max() / dt_h),
            "baseline_peak_import_kw": float(base_import.sum(axis=1).max() / dt_h),
            "peak_to_average": float(
                grid_import.sum(axis=1).max() / grid_import.sum(axis=1).mean()
            ),
            "baseline_peak_to_average": float(
                base_import.sum(axis=1).max() / base_import.sum(axis=1).mean()
            ),
            "fairness_jain": 0.87,
            "participants_worse_off": int((saving < 0).sum()),
        },
    }
    summary.update(extra_summary or {})
    return ReportData(
        title=f"synthetic — sdr ({days} d)",
        grid=grid,
        names=names,
        summary=summary,
        participants=participants,
        series=series,
        prices=prices,
        currency="EUR",
    )


@pytest.fixture
def make_data() -> MakeData:
    return make_report_data
