"""Small `ForecastData` for the forecaster tests: built from arrays, or from the demo scenario."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from peergrid.data.pv import pv_generation_kwh
from peergrid.data.weather import clear_sky_weather
from peergrid.forecast.base import ForecastData
from peergrid.forecast.data import assemble_forecast_data
from peergrid.timegrid import make_grid

LAT, LON, ALT = 52.4, 13.1, 81.0

#: A fast configuration of `ml` for tests: tiny models, short training windows.
ML_SMALL = {
    "n_estimators": 5,
    "num_leaves": 4,
    "min_child_samples": 5,
    "train_days": 3,
    "min_train_days": 2,
    "retrain_days": 2,
    "max_train_rows": 2_000,
    "train_horizon_h": 24.0,
}


def small_data(
    *,
    days_history: int = 10,
    days_run: int = 4,
    start: dt.date = dt.date(2024, 3, 22),
    seed: int = 0,
    slot_minutes: int = 15,
) -> ForecastData:
    """Three households (one without PV), synthetic demand with a daily shape and noise, PV as
    a random clear-sky index times clear-sky PV; the grid spans the spring clock change."""
    grid = make_grid(start, days_history + days_run, slot_minutes, "Europe/Berlin")
    n = grid.n_slots
    rng = np.random.default_rng(seed)
    kwp = np.array([5.0, 8.0, 0.0])
    tilt = np.array([30.0, 20.0, 30.0])
    azimuth = np.array([180.0, 135.0, 180.0])
    clear = clear_sky_weather(grid, LAT, LON, ALT)
    pv_clear = pv_generation_kwh(
        grid, clear, LAT, LON, ALT, kwp=kwp, tilt_deg=tilt, azimuth_deg=azimuth
    )
    day_k = rng.uniform(0.2, 1.0, grid.days)[grid.local_day]
    k = np.clip(day_k + 0.1 * rng.standard_normal(n), 0.0, 1.2)
    hour = grid.local_hour
    shape = 1.0 + 0.8 * np.exp(-((hour - 19.0) ** 2) / 4.0) + 0.4 * np.exp(-((hour - 7.5) ** 2))
    level = np.array([0.10, 0.15, 0.06])
    demand = shape[:, None] * level[None, :] * rng.lognormal(0.0, 0.4, (n, 3))
    return assemble_forecast_data(
        grid=grid,
        n_history=int(grid.day_first_slot[days_history]),
        demand_kwh=demand,
        pv_kwh=pv_clear * k[:, None],
        temp_out_c=10.0 + 5.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0) + rng.standard_normal(n),
        ghi_w_m2=clear.ghi_w_m2 * k,
        latitude=LAT,
        longitude=LON,
        altitude_m=ALT,
        kwp=kwp,
        tilt_deg=tilt,
        azimuth_deg=azimuth,
        seed=seed,
    )


@pytest.fixture(scope="session")
def small() -> ForecastData:
    return small_data()


@pytest.fixture(scope="session")
def demo_data() -> ForecastData:
    """The demo scenario's run with 28 days of history."""
    import peergrid
    from peergrid.engine.community import build_community, build_history
    from peergrid.engine.forecast_data import forecast_data_of
    from peergrid.engine.simulate import resolve_full

    scenario = resolve_full(peergrid.load_scenario("demo"))
    community = build_community(scenario, None)
    history = build_history(scenario, 28, [])
    return forecast_data_of(community, history, seed=scenario.seed)
