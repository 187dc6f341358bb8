"""assemble_forecast_data and the engine adapter: calendar, seasonal lags on clock-change days,
clear sky, the weather archive, and the run's rows bit for bit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from peergrid.forecast.base import ForecastData
from peergrid.forecast.data import seasonal_lag_rows
from peergrid.timegrid import make_grid
from tests.forecast.conftest import small_data


def _local(grid_start: dt.date, days: int) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    grid = make_grid(grid_start, days, 15, "Europe/Berlin")
    return grid.starts_local, seasonal_lag_rows(grid, 1), seasonal_lag_rows(grid, 7)


def test_prev_day_is_the_same_clock_time_one_day_earlier_on_ordinary_days() -> None:
    local, prev, week = _local(dt.date(2024, 5, 1), 10)
    i = 96 * 8 + 37  # 9 May 09:15
    assert local[prev[i]] == local[i] - pd.Timedelta(days=1)
    assert local[week[i]] == local[i] - pd.Timedelta(days=7)
    assert (prev[:96] == -1).all() and (prev[96:] >= 0).all()
    assert (week[: 7 * 96] == -1).all()


def test_prev_day_across_spring_forward() -> None:
    # 31 March 2024: 02:00 -> 03:00 in Europe/Berlin, a 92-slot day
    local, prev, _ = _local(dt.date(2024, 3, 30), 3)
    day = local.tz_localize(None).normalize()
    spring = np.flatnonzero(day == pd.Timestamp("2024-03-31"))
    assert spring.size == 92
    after = np.flatnonzero(day == pd.Timestamp("2024-04-01"))
    # on 1 April, 02:15 has no twin on 31 March: it maps to the first slot after the gap
    i = after[9]  # 02:15
    assert local[i].strftime("%H:%M") == "02:15"
    assert local[prev[i]].strftime("%Y-%m-%d %H:%M") == "2024-03-31 03:00"
    # 03:00 on 1 April maps to 03:00 on 31 March (same clock, 23 h earlier in UTC)
    j = after[12]
    assert local[prev[j]].strftime("%Y-%m-%d %H:%M") == "2024-03-31 03:00"
    # every slot of the spring-forward day maps to the same clock time on 30 March
    hm = local[spring].strftime("%H:%M")
    assert list(local[prev[spring]].strftime("%H:%M")) == list(hm)


def test_prev_day_across_fall_back() -> None:
    # 27 October 2024: 03:00 -> 02:00 in Europe/Berlin, a 100-slot day
    local, prev, _ = _local(dt.date(2024, 10, 26), 3)
    day = local.tz_localize(None).normalize()
    fall = np.flatnonzero(day == pd.Timestamp("2024-10-27"))
    assert fall.size == 100
    # both occurrences of 02:15 on the fall-back day map to 02:15 on 26 October
    twins = fall[local[fall].strftime("%H:%M") == "02:15"]
    assert twins.size == 2
    assert (prev[twins] == prev[twins[0]]).all()
    assert local[prev[twins[0]]].strftime("%Y-%m-%d %H:%M") == "2024-10-26 02:15"
    # 02:15 on 28 October maps to the second (standard-time) 02:15, exactly 24 h earlier
    after = np.flatnonzero(day == pd.Timestamp("2024-10-28"))
    i = after[9]
    assert prev[i] == twins[1]
    assert (local[i] - local[prev[i]]).total_seconds() == 24 * 3600


def test_calendar_and_clear_sky(small: ForecastData) -> None:
    assert small.local_minute.min() == 0 and small.local_minute.max() == 23 * 60 + 45
    assert set(np.unique(small.weekday)) == set(range(7))
    night = small.ghi_clearsky_w_m2 == 0.0
    assert night.any() and (small.pv_clearsky_kwh[night] == 0.0).all()
    assert (small.pv_clearsky_kwh[:, 2] == 0.0).all()  # no PV
    assert small.pv_clearsky_kwh[:, 1].max() > small.pv_clearsky_kwh[:, 0].max()  # 8 vs 5 kWp


def test_weather_archive_covers_every_gate(small: ForecastData) -> None:
    wf = small.weather
    assert wf.n_leads * small.dt_h >= 96.0
    # runs at 00 and 12 UTC: 2 a day
    assert abs(wf.run_slot.size - 2 * small.n_rows * small.dt_h / 24.0) <= 2
    # a day-ahead gate (12:00 local the day before the run) reaches the end of the day after
    temp, ghi = wf.at(-48, 0, 2 * 96)
    assert np.isfinite(temp).all() and np.isfinite(ghi).all()


def test_shape_errors_are_reported() -> None:
    data = small_data(days_history=2, days_run=1)
    from peergrid.forecast.data import assemble_forecast_data

    grid = make_grid(dt.date(2024, 3, 22), 3, 15, "Europe/Berlin")
    with pytest.raises(ValueError, match="demand_kwh"):
        assemble_forecast_data(
            grid=grid, n_history=192, demand_kwh=data.demand_kwh[:-1], pv_kwh=data.pv_kwh,
            temp_out_c=data.temp_out_c, ghi_w_m2=data.ghi_w_m2, latitude=52.0, longitude=13.0,
            altitude_m=0.0, kwp=np.ones(3), tilt_deg=np.ones(3), azimuth_deg=np.ones(3), seed=0,
        )  # fmt: skip


def test_adapter_keeps_the_run_bit_for_bit(demo_data: ForecastData) -> None:
    import peergrid
    from peergrid.engine.community import build_community
    from peergrid.engine.simulate import resolve_full

    community = build_community(resolve_full(peergrid.load_scenario("demo")), None)
    run = slice(demo_data.n_history, None)
    assert demo_data.n_history == 28 * 96
    assert np.array_equal(demo_data.demand_kwh[run], community.profiles.base_demand_kwh)
    assert np.array_equal(demo_data.pv_kwh[run], community.profiles.pv_kwh)
    assert np.array_equal(demo_data.temp_out_c[run], community.weather.temp_air_c)
    assert np.array_equal(demo_data.ghi_w_m2[run], community.weather.ghi_w_m2)
    assert demo_data.n_slots == community.grid.n_slots
    # the history is a different random draw of the same models
    assert not np.array_equal(demo_data.demand_kwh[:96], demo_data.demand_kwh[7 * 96 : 8 * 96])
