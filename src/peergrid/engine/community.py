"""From a resolved scenario to arrays: the community the engine simulates.

Everything "scalar or profile" is normalised here, once: asset parameters become arrays across
participants, exogenous data become (T, P) arrays on the slot grid, tariffs become (T,) arrays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from peergrid.assets.params import (
    THERMAL_AIR_CONDITIONER,
    THERMAL_HEAT_PUMP,
    THERMAL_NONE,
    AssetParams,
    BatteryParams,
    EvParams,
    Profiles,
    ShiftableJobs,
    ThermalParams,
)
from peergrid.data.demand import household_demand_kwh
from peergrid.data.ev import ev_mobility
from peergrid.data.meter import read_meter_data
from peergrid.data.pv import pv_generation_kwh
from peergrid.data.shiftable import shiftable_jobs
from peergrid.data.weather import Weather, load_weather
from peergrid.errors import InputError
from peergrid.rng import child_rng
from peergrid.scenario.schema import ParticipantSpec, Scenario, hhmm_to_hours
from peergrid.scenario.tariff import feed_in_price_per_kwh, retail_price_per_kwh
from peergrid.timegrid import SlotGrid, make_grid

if TYPE_CHECKING:
    from peergrid.engine.network import NetworkSetup
    from peergrid.forecast.base import ForecastData

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Community:
    """A resolved scenario as arrays."""

    scenario: Scenario
    grid: SlotGrid
    names: list[str]
    assets: AssetParams
    profiles: Profiles
    weather: Weather
    retail_price: FloatArray  # (T,) [currency/kWh]
    feed_in_price: FloatArray  # (T,) [currency/kWh]
    daily_charge: float  # per participant and local day [currency]
    network: NetworkSetup | None = None  # the feeder, when the scenario has a [network]
    meter_names: list[str] = field(default_factory=list)  # participants with meter data
    forecast_data: ForecastData | None = None  # history + run data for the forecasters

    @property
    def n_participants(self) -> int:
        return len(self.names)

    def history_slots(self, days: int) -> int:
        """Slots in the `days` local days before the run."""
        t = self.scenario.time
        start = t.start - dt.timedelta(days=days)
        return make_grid(start, days, t.slot_minutes, t.timezone).n_slots if days else 0


def _arr(values: list[float]) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _battery(parts: list[ParticipantSpec]) -> BatteryParams:
    cap = _arr([p.battery.capacity_kwh if p.battery else 0.0 for p in parts])
    eff = _arr([p.battery.round_trip_efficiency if p.battery else 1.0 for p in parts])
    one_way = np.sqrt(eff)
    return BatteryParams(
        capacity_kwh=cap,
        power_kw=_arr([p.battery.power_kw if p.battery else 0.0 for p in parts]),
        efficiency_charge=one_way,
        efficiency_discharge=one_way.copy(),
        soc_min_kwh=cap * _arr([p.battery.soc_min if p.battery else 0.0 for p in parts]),
        soc_max_kwh=cap * _arr([p.battery.soc_max if p.battery else 0.0 for p in parts]),
        soc_initial_kwh=cap * _arr([p.battery.soc_initial if p.battery else 0.0 for p in parts]),
    )


def _ev(parts: list[ParticipantSpec]) -> EvParams:
    cap = _arr([p.ev.capacity_kwh if p.ev else 0.0 for p in parts])
    one_way = np.sqrt(_arr([p.ev.round_trip_efficiency if p.ev else 1.0 for p in parts]))
    return EvParams(
        capacity_kwh=cap,
        power_kw=_arr([p.ev.power_kw if p.ev else 0.0 for p in parts]),
        efficiency_charge=one_way,
        efficiency_discharge=one_way.copy(),
        v2h=np.asarray([bool(p.ev and p.ev.v2h) for p in parts], dtype=bool),
        soc_min_kwh=cap * _arr([p.ev.soc_min if p.ev else 0.0 for p in parts]),
        target_kwh=cap * _arr([p.ev.target_soc if p.ev else 0.0 for p in parts]),
        soc_initial_kwh=cap * _arr([p.ev.soc_initial if p.ev else 0.0 for p in parts]),
    )


def _thermal(parts: list[ParticipantSpec]) -> ThermalParams:
    kinds = {"heat-pump": THERMAL_HEAT_PUMP, "air-conditioner": THERMAL_AIR_CONDITIONER}
    h = [p.heating for p in parts]
    return ThermalParams(
        kind=np.asarray([kinds[x.kind] if x else THERMAL_NONE for x in h], dtype=np.int64),
        p_max_kw=_arr([x.power_kw if x else 0.0 for x in h]),
        cop=_arr([x.cop if x else 1.0 for x in h]),
        ua_kw_per_k=_arr([x.ua_kw_per_k if x else 1.0 for x in h]),
        capacity_kwh_per_k=_arr([x.capacity_kwh_per_k if x else 1.0 for x in h]),
        t_min_c=_arr([x.comfort_min_c if x else 20.0 for x in h]),
        t_max_c=_arr([x.comfort_max_c if x else 20.0 for x in h]),
        t_initial_c=_arr(
            [
                (
                    x.initial_c
                    if x.initial_c is not None
                    else (x.comfort_min_c + x.comfort_max_c) / 2
                )
                if x
                else 20.0
                for x in h
            ]
        ),
    )


def _jobs(parts: list[ParticipantSpec], grid: SlotGrid, seed: int) -> ShiftableJobs:
    specs = [(i, s) for i, p in enumerate(parts) for s in p.shiftable]
    return shiftable_jobs(
        grid,
        child_rng(seed, "shiftable"),
        participant=np.asarray([i for i, _ in specs], dtype=np.int64),
        appliance=np.asarray([s.appliance for _, s in specs], dtype=np.str_),
        energy_kwh=_arr([s.energy_kwh for _, s in specs]),
        duration_min=np.asarray([s.duration_min for _, s in specs], dtype=np.int64),
        window_start_h=_arr([hhmm_to_hours(s.window_start) for _, s in specs]),
        window_end_h=_arr([hhmm_to_hours(s.window_end) for _, s in specs]),
        runs_per_week=_arr([s.runs_per_week for _, s in specs]),
    )


def _site(scenario: Scenario) -> tuple[float, float, float]:
    loc = scenario.location
    lat, lon, alt = loc.latitude, loc.longitude, loc.altitude_m
    if lat is None or lon is None or alt is None:
        raise InputError("location: latitude, longitude and altitude_m are needed for this weather")
    return lat, lon, alt


def _pv_arrays(parts: list[ParticipantSpec]) -> dict[str, FloatArray]:
    return {
        "kwp": _arr([p.pv.kwp if p.pv else 0.0 for p in parts]),
        "tilt_deg": _arr([p.pv.tilt_deg if p.pv else 30.0 for p in parts]),
        "azimuth_deg": _arr([p.pv.azimuth_deg if p.pv else 180.0 for p in parts]),
    }


def _demand_and_pv(
    scenario: Scenario, grid: SlotGrid, weather: Weather, purpose: str
) -> tuple[FloatArray, FloatArray]:
    """Synthetic base demand and PV (T, P) [kWh] on `grid`; `purpose` names the random stream
    of the demand model ("demand" for the run, "demand-history" before it)."""
    parts = scenario.participants
    lat, lon, alt = _site(scenario)
    demand = household_demand_kwh(
        grid,
        child_rng(scenario.seed, purpose),
        annual_kwh=_arr([p.demand.annual_kwh for p in parts]),
        occupants=np.asarray([p.demand.occupants for p in parts], dtype=np.int64),
        kind=np.asarray([p.demand.kind for p in parts], dtype=np.str_),
        ghi_w_m2=weather.ghi_w_m2,
        # appliances that run as shiftable jobs are not also drawn as base load
        include_shiftable=np.asarray([not p.shiftable for p in parts], dtype=bool),
        latitude_deg=lat,
    )
    arrays = _pv_arrays(parts)
    pv = pv_generation_kwh(
        grid,
        weather,
        lat,
        lon,
        alt,
        kwp=arrays["kwp"],
        tilt_deg=arrays["tilt_deg"],
        azimuth_deg=arrays["azimuth_deg"],
    )
    return demand, pv


@dataclass(frozen=True, eq=False)
class History:
    """What the meters and the weather station recorded before the run: the forecasters'
    training data. Synthetic from the same models as the run (the demand model on its own
    random stream); participants whose demand and PV come from a meter file get the
    synthetic history of their declared demand and PV (`synthetic_for_meter`).

    Attributes:
        grid: the history's slot grid (whole local days ending where the run starts).
        demand_kwh, pv_kwh: base demand and PV, (T_h, P) [kWh].
        weather: the observed weather on `grid`.
        synthetic_for_meter: names of meter-data participants whose history is synthetic.
    """

    grid: SlotGrid
    demand_kwh: FloatArray
    pv_kwh: FloatArray
    weather: Weather
    synthetic_for_meter: list[str]


def build_history(scenario: Scenario, days: int, meter_names: list[str]) -> History:
    """`days` whole local days of history before the run of `scenario` (resolved);
    `meter_names` are the participants whose run data come from a meter file."""
    t = scenario.time
    grid = make_grid(t.start - dt.timedelta(days=days), days, t.slot_minutes, t.timezone)
    lat, lon, alt = _site(scenario)
    weather = load_weather(grid, scenario.location.weather, lat, lon, alt, scenario.seed)
    demand, pv = _demand_and_pv(scenario, grid, weather, "demand-history")
    return History(grid, demand, pv, weather, list(meter_names))


def build_community(scenario: Scenario, base_dir: Path | None) -> Community:
    """Arrays for a resolved scenario (groups expanded, location explicit)."""
    t = scenario.time
    grid = make_grid(t.start, t.days, t.slot_minutes, t.timezone)
    parts = scenario.participants
    names = [p.name for p in parts]
    n = len(parts)
    lat, lon, alt = _site(scenario)
    weather = load_weather(grid, scenario.location.weather, lat, lon, alt, scenario.seed)
    demand, pv = _demand_and_pv(scenario, grid, weather, "demand")
    has_ev = np.asarray([p.ev is not None for p in parts], dtype=bool)
    mobility = ev_mobility(
        grid,
        child_rng(scenario.seed, "ev"),
        n,
        daily_km_mean=_arr([p.ev.daily_km if p.ev else 0.0 for p in parts]),
        kwh_per_km=_arr([p.ev.kwh_per_km if p.ev else 0.0 for p in parts]),
    )
    ev_plugged = mobility.plugged & has_ev[None, :]
    ev_trip = np.where(has_ev[None, :], mobility.trip_kwh, 0.0)

    meter_names: list[str] = []
    if scenario.data is not None:
        if base_dir is None:
            raise InputError("data.meter_file: a built-in scenario cannot name a meter file")
        meter = read_meter_data(
            base_dir / scenario.data.meter_file, grid, names, scenario.data.unit, scenario.data.fill
        )
        meter_names = list(meter.names)
        cols = [names.index(name) for name in meter.names]
        demand[:, cols] = meter.demand_kwh
        pv[:, cols] = meter.generation_kwh

    assets = AssetParams(
        n_participants=n,
        battery=_battery(parts),
        ev=_ev(parts),
        thermal=_thermal(parts),
        jobs=_jobs(parts, grid, scenario.seed),
    )
    profiles = Profiles(
        base_demand_kwh=demand,
        pv_kwh=pv,
        temp_out_c=weather.temp_air_c,
        ev_plugged=ev_plugged,
        ev_trip_kwh=ev_trip,
    )
    return Community(
        scenario=scenario,
        grid=grid,
        names=names,
        assets=assets,
        profiles=profiles,
        weather=weather,
        retail_price=retail_price_per_kwh(scenario.tariff, grid),
        feed_in_price=feed_in_price_per_kwh(scenario.tariff, grid),
        daily_charge=scenario.tariff.daily_charge,
        meter_names=meter_names,
    )
