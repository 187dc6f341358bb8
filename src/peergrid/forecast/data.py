"""Assemble `ForecastData`: observed arrays on the extended axis plus everything known in advance.

`assemble_forecast_data` is a pure function of arrays and the extended slot grid (history days
then run days, one `SlotGrid`): it computes the clear-sky irradiance and each array's clear-sky
PV, the local calendar, the seasonal lags `prev_day` / `prev_week` and the weather-forecast
archive. The engine's adapter (`engine/forecast_data.py`) only concatenates history and run.

Seasonal lags follow local clock time. For row i at local clock time h on local day d,
`prev_day[i]` is the row at clock time h on day d − 1 (`prev_week`: d − 7):

- on the spring-forward day the clock times of the missing hour do not exist (02:00–02:59 in
  Europe/Berlin): a row of the next day at such a clock time maps to the first slot after the gap
  (03:00), as `data._localtime` moves nonexistent times;
- on the fall-back day the repeated hour exists twice: a row of the next day at such a clock time
  maps to its second occurrence (standard time), the one exactly 24 h earlier, and both
  occurrences on the fall-back day itself map to the single one of the day before;
- −1 where the day lies before the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.data.pv import pv_generation_kwh
from peergrid.data.weather import clear_sky_weather
from peergrid.data.weather_forecast import WeatherForecastParams, synthetic_weather_forecasts
from peergrid.forecast.base import ForecastData
from peergrid.rng import child_rng
from peergrid.timegrid import SlotGrid, epoch_ns

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_NS_PER_MIN = 60_000_000_000


def seasonal_lag_rows(grid: SlotGrid, days: int) -> IntArray:
    """For every slot of `grid`, the slot at the same local clock time `days` local days
    earlier (module docstring for clock-change days), −1 before the grid, int array (N,)."""
    local = grid.starts_local.tz_localize(None)
    target = local - pd.Timedelta(days=days)
    n = len(local)
    utc = target.tz_localize(
        grid.timezone, ambiguous=np.zeros(n, dtype=bool), nonexistent="shift_forward"
    )
    slot_ns = grid.slot_minutes * _NS_PER_MIN
    offset = epoch_ns(utc) - int(grid.starts_utc[0].value)
    row = offset // slot_ns
    exact = offset % slot_ns == 0
    ok = exact & (row >= 0) & (row < n)
    return np.where(ok, row, -1).astype(np.int64)


def calendar_of(grid: SlotGrid) -> tuple[IntArray, IntArray, IntArray]:
    """Local minute of day, weekday (Monday = 0) and day of year of every slot, int arrays."""
    minute = np.round(grid.local_hour * 60.0).astype(np.int64)
    return minute, grid.local_weekday.astype(np.int64), grid.local_day_of_year.astype(np.int64)


def utc_hour_of(grid: SlotGrid) -> FloatArray:
    """UTC clock time of every slot start [h since UTC midnight], (N,)."""
    utc = grid.starts_utc
    return np.asarray(utc.hour + utc.minute / 60.0, dtype=np.float64)


def assemble_forecast_data(
    *,
    grid: SlotGrid,
    n_history: int,
    demand_kwh: FloatArray,
    pv_kwh: FloatArray,
    temp_out_c: FloatArray,
    ghi_w_m2: FloatArray,
    latitude: float,
    longitude: float,
    altitude_m: float,
    kwp: FloatArray,
    tilt_deg: FloatArray,
    azimuth_deg: FloatArray,
    seed: int,
    weather_params: WeatherForecastParams | None = None,
) -> ForecastData:
    """Everything a forecaster may look at, on the extended axis (`forecast.base`).

    Args:
        grid: the extended slot grid (history days, then the run's days); its N slots are the
            rows of the arrays; its time zone, slot length and dates give the calendar.
        n_history: slots of history before the run (the first rows).
        demand_kwh: observed base demand, (N, P) [kWh per slot].
        pv_kwh: observed PV generation, (N, P) [kWh per slot].
        temp_out_c: observed outdoor temperature, (N,) [°C].
        ghi_w_m2: observed global horizontal irradiance, (N,) [W/m²].
        latitude, longitude: [deg], north and east positive.
        altitude_m: [m] above sea level.
        kwp, tilt_deg, azimuth_deg: each participant's PV array, (P,) [kWp], [deg], [deg]
            (kwp 0 for none).
        seed: seed of the weather-forecast archive's random stream.
        weather_params: the archive's error model (default calibration if None).

    Raises:
        ValueError: shapes disagree with the grid or `n_history` is out of range.
    """
    n = grid.n_slots
    p = int(demand_kwh.shape[1]) if demand_kwh.ndim == 2 else -1
    if demand_kwh.shape != (n, p) or pv_kwh.shape != (n, p):
        raise ValueError(
            f"demand_kwh {demand_kwh.shape} and pv_kwh {pv_kwh.shape} must be ({n}, P)"
        )
    if temp_out_c.shape != (n,) or ghi_w_m2.shape != (n,):
        raise ValueError(f"temp_out_c {temp_out_c.shape} and ghi_w_m2 {ghi_w_m2.shape} != ({n},)")
    if kwp.shape != (p,) or tilt_deg.shape != (p,) or azimuth_deg.shape != (p,):
        raise ValueError(f"kwp, tilt_deg and azimuth_deg must have shape ({p},)")
    if not 0 <= n_history < n:
        raise ValueError(f"n_history must lie in [0, {n}) (got {n_history})")

    clear = clear_sky_weather(grid, latitude, longitude, altitude_m)
    pv_clear = pv_generation_kwh(
        grid, clear, latitude, longitude, altitude_m, kwp=kwp, tilt_deg=tilt_deg,
        azimuth_deg=azimuth_deg,
    )  # fmt: skip
    minute, weekday, doy = calendar_of(grid)
    weather = synthetic_weather_forecasts(
        first_slot=-n_history,
        dt_h=grid.dt_h,
        utc_hour=utc_hour_of(grid),
        temp_out_c=temp_out_c,
        ghi_w_m2=ghi_w_m2,
        ghi_clearsky_w_m2=clear.ghi_w_m2,
        rng=child_rng(seed, "weather-forecast"),
        params=weather_params,
    )
    return ForecastData(
        n_history=n_history,
        dt_h=grid.dt_h,
        demand_kwh=demand_kwh,
        pv_kwh=pv_kwh,
        pv_clearsky_kwh=pv_clear,
        temp_out_c=temp_out_c,
        ghi_w_m2=ghi_w_m2,
        ghi_clearsky_w_m2=clear.ghi_w_m2,
        local_minute=minute,
        weekday=weekday,
        day_of_year=doy,
        prev_day=seasonal_lag_rows(grid, 1),
        prev_week=seasonal_lag_rows(grid, 7),
        weather=weather,
    )
