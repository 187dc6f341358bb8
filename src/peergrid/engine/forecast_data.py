"""The engine's adapter from a community and its history to `ForecastData`.

It only concatenates: history rows first, then the run's rows (bit for bit the community's
arrays), on one extended grid whose tail is the run's grid; `forecast.data` computes the rest.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from peergrid.data.weather_forecast import WeatherForecastParams
from peergrid.engine.community import Community, History, _pv_arrays, _site
from peergrid.forecast.base import ForecastData
from peergrid.forecast.data import assemble_forecast_data
from peergrid.timegrid import make_grid


def forecast_data_of(
    community: Community,
    history: History,
    *,
    seed: int,
    weather_params: WeatherForecastParams | None = None,
) -> ForecastData:
    """`ForecastData` for a run: `history` (from `build_history`) then `community`'s arrays.

    Raises:
        ValueError: the history does not end where the run starts.
    """
    run, hist = community.grid, history.grid
    if hist.start_local + dt.timedelta(days=hist.days) != run.start_local or (
        hist.slot_minutes,
        hist.timezone,
    ) != (run.slot_minutes, run.timezone):
        raise ValueError(
            f"history {hist.start_local} + {hist.days} days does not end where the run "
            f"starts ({run.start_local}) on the same slots and time zone"
        )
    grid = make_grid(hist.start_local, hist.days + run.days, run.slot_minutes, run.timezone)
    n_hist = hist.n_slots
    if not grid.starts_utc[n_hist:].equals(run.starts_utc):  # pragma: no cover - make_grid's
        raise ValueError("the extended grid's tail differs from the run's grid")
    lat, lon, alt = _site(community.scenario)
    pv_arrays = _pv_arrays(community.scenario.participants)
    profiles = community.profiles
    return assemble_forecast_data(
        grid=grid,
        n_history=n_hist,
        demand_kwh=np.concatenate([history.demand_kwh, profiles.base_demand_kwh], axis=0),
        pv_kwh=np.concatenate([history.pv_kwh, profiles.pv_kwh], axis=0),
        temp_out_c=np.concatenate([history.weather.temp_air_c, community.weather.temp_air_c]),
        ghi_w_m2=np.concatenate([history.weather.ghi_w_m2, community.weather.ghi_w_m2]),
        latitude=lat,
        longitude=lon,
        altitude_m=alt,
        kwp=pv_arrays["kwp"],
        tilt_deg=pv_arrays["tilt_deg"],
        azimuth_deg=pv_arrays["azimuth_deg"],
        seed=seed,
        weather_params=weather_params,
    )
