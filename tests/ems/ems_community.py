"""Synthetic communities for the EMS tests and the step benchmark (numpy only, seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets.params import (
    THERMAL_AIR_CONDITIONER,
    THERMAL_HEAT_PUMP,
    AssetParams,
    BatteryParams,
    EvParams,
    Profiles,
    ShiftableJobs,
    ThermalParams,
)


@dataclass(frozen=True)
class Community:
    assets: AssetParams
    profiles: Profiles
    retail: np.ndarray
    feed_in: np.ndarray
    dt_h: float

    @property
    def n_slots(self) -> int:
        return int(self.profiles.base_demand_kwh.shape[0])


def _hours(n_slots: int, dt_h: float) -> np.ndarray:
    return (np.arange(n_slots) * dt_h) % 24.0


def pv_shape(n_slots: int, dt_h: float) -> np.ndarray:
    """Clear-sky-like PV per kWp [kWh per slot], (T,)."""
    mid = _hours(n_slots, dt_h) + dt_h / 2
    return np.clip(np.sin((mid - 6.0) / 12.0 * np.pi), 0.0, None) * 0.8 * dt_h


def tou_prices(
    n_slots: int,
    dt_h: float,
    *,
    night: float = 0.15,
    day: float = 0.28,
    peak: float = 0.45,
    feed_in: float = 0.07,
) -> tuple[np.ndarray, np.ndarray]:
    h = _hours(n_slots, dt_h)
    retail = np.where(h < 6.0, night, np.where((h >= 17.0) & (h < 21.0), peak, day))
    return retail.astype(float), np.full(n_slots, feed_in)


def ev_sessions(
    rng: np.random.Generator,
    *,
    n_slots: int,
    n: int,
    dt_h: float,
    present: np.ndarray,
    capacity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Plugged-in flags and trip energies booked at each return, (T, P)."""
    plugged = np.zeros((n_slots, n), dtype=bool)
    trips = np.zeros((n_slots, n))
    for p in range(n):
        if not present[p]:
            continue
        t = 0
        home = bool(rng.random() < 0.6)
        while t < n_slots:
            length = max(1, int(rng.uniform(0.5, 16.0) / dt_h))
            if home:
                plugged[t : t + length, p] = True
                if t > 0:
                    trips[t, p] = rng.uniform(0.0, 0.6) * capacity[p]
            t += length
            home = not home
    return plugged, trips


def random_community(
    seed: int,
    n: int,
    days: int,
    dt_h: float,
    *,
    ample_thermal: bool = False,
    flat: bool | None = None,
) -> Community:
    """A random community: every asset sometimes absent or zero, random profiles and prices."""
    rng = np.random.default_rng(seed)
    n_slots = round(days * 24 / dt_h)

    has_b = rng.random(n) < 0.6
    cap_b = np.where(has_b, rng.uniform(0.5, 20.0, n), 0.0)
    pow_b = np.where(has_b & (rng.random(n) < 0.9), rng.uniform(0.2, 8.0, n), 0.0)
    smin_b = cap_b * rng.uniform(0.0, 0.3, n)
    smax_b = np.where(rng.random(n) < 0.1, smin_b, cap_b * rng.uniform(0.7, 1.0, n))
    # absent assets may come with all-zero parameters, efficiencies included
    zero_eta_b = ~has_b & (rng.random(n) < 0.5)
    bat = BatteryParams(
        capacity_kwh=cap_b,
        power_kw=pow_b,
        efficiency_charge=np.where(
            zero_eta_b, 0.0, np.where(rng.random(n) < 0.2, 1.0, rng.uniform(0.8, 1.0, n))
        ),
        efficiency_discharge=np.where(
            zero_eta_b, 0.0, np.where(rng.random(n) < 0.2, 1.0, rng.uniform(0.8, 1.0, n))
        ),
        soc_min_kwh=smin_b,
        soc_max_kwh=smax_b,
        soc_initial_kwh=smin_b + (smax_b - smin_b) * rng.random(n),
    )

    has_e = rng.random(n) < 0.6
    cap_e = np.where(has_e, rng.uniform(10.0, 90.0, n), 0.0)
    pow_e = np.where(has_e & (rng.random(n) < 0.9), rng.uniform(1.0, 22.0, n), 0.0)
    evp = EvParams(
        capacity_kwh=cap_e,
        power_kw=pow_e,
        efficiency_charge=np.where(has_e, rng.uniform(0.85, 1.0, n), 0.0),
        efficiency_discharge=np.where(has_e, rng.uniform(0.85, 1.0, n), 0.0),
        v2h=rng.random(n) < 0.5,
        soc_min_kwh=cap_e * rng.uniform(0.0, 0.3, n),
        target_kwh=cap_e * rng.uniform(0.3, 1.1, n),
        soc_initial_kwh=cap_e * rng.random(n),
    )

    kind = rng.choice([0, THERMAL_HEAT_PUMP, THERMAL_AIR_CONDITIONER], size=n)
    t_min = rng.uniform(17.0, 22.0, n)
    t_max = t_min + np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.5, 5.0, n))
    th = ThermalParams(
        kind=kind.astype(np.int64),
        p_max_kw=(
            np.full(n, 60.0)
            if ample_thermal
            else np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.5, 5.0, n))
        ),
        cop=rng.uniform(2.0, 5.0, n),
        ua_kw_per_k=np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.05, 0.4, n)),
        capacity_kwh_per_k=np.where(rng.random(n) < 0.05, 0.0, rng.uniform(2.0, 20.0, n)),
        t_min_c=t_min,
        t_max_c=t_max,
        t_initial_c=rng.uniform(t_min, t_max),
    )

    part, es, le, dur, pkw = [], [], [], [], []
    for p in range(n):
        for _ in range(int(rng.integers(0, 5))):
            d = int(rng.integers(1, max(2, int(3 / dt_h)) + 1))
            start = int(rng.integers(0, max(1, n_slots - d)))
            slack = int(rng.integers(0, max(1, int(16 / dt_h))))
            end = min(n_slots, start + d + slack)
            if end - start < d:
                continue
            part.append(p)
            es.append(start)
            le.append(end)
            dur.append(d)
            pkw.append(float(rng.uniform(0.3, 2.5)))
    order = np.argsort(np.array(es, dtype=np.int64), kind="stable")
    jobs = ShiftableJobs(
        participant=np.array(part, dtype=np.int64)[order],
        earliest_start=np.array(es, dtype=np.int64)[order],
        latest_end=np.array(le, dtype=np.int64)[order],
        duration_slots=np.array(dur, dtype=np.int64)[order],
        p_kw=np.array(pkw, dtype=float)[order],
        appliance=np.array(["wm"] * len(part), dtype=np.str_)[order],
    )
    assets = AssetParams(n_participants=n, battery=bat, ev=evp, thermal=th, jobs=jobs)

    base = rng.uniform(0.05, 1.5, (n_slots, n)) * dt_h
    kwp = np.where(rng.random(n) < 0.6, rng.uniform(0.5, 12.0, n), 0.0)
    clouds = rng.uniform(0.2, 1.0, (n_slots, 1))
    pv = pv_shape(n_slots, dt_h)[:, None] * kwp[None, :] * clouds
    mean_t = rng.uniform(-10.0, 32.0)
    temp = (
        mean_t + 6.0 * np.sin(_hours(n_slots, dt_h) / 24 * 2 * np.pi) + rng.normal(0, 1.0, n_slots)
    )
    plugged, trips = ev_sessions(
        rng, n_slots=n_slots, n=n, dt_h=dt_h, present=has_e, capacity=cap_e
    )
    profiles = Profiles(
        base_demand_kwh=base, pv_kwh=pv, temp_out_c=temp, ev_plugged=plugged, ev_trip_kwh=trips
    )
    if flat is None:
        flat = bool(rng.random() < 0.4)
    if flat:
        r = float(rng.uniform(0.1, 0.5))
        retail, feed_in = np.full(n_slots, r), np.full(n_slots, r * rng.uniform(0.0, 0.9))
    else:
        retail, feed_in = tou_prices(
            n_slots,
            dt_h,
            night=float(rng.uniform(0.05, 0.2)),
            day=float(rng.uniform(0.2, 0.35)),
            peak=float(rng.uniform(0.35, 0.7)),
            feed_in=float(rng.uniform(0.0, 0.1)),
        )
        retail = retail + rng.normal(0.0, 0.01, n_slots).round(3) * (rng.random() < 0.5)
    return Community(assets, profiles, retail, feed_in, dt_h)


def suburb(n: int, days: int, dt_h: float, seed: int = 7, *, tou: bool = True) -> Community:
    """A plausible community in which everyone has a battery, an EV, a heat pump, PV and
    about three appliance runs a week (for the benchmark and the cost comparison)."""
    rng = np.random.default_rng(seed)
    n_slots = round(days * 24 / dt_h)
    per_day = round(24 / dt_h)
    cap_b = rng.uniform(5.0, 12.0, n)
    bat = BatteryParams(
        capacity_kwh=cap_b,
        power_kw=cap_b / 2,
        efficiency_charge=np.full(n, 0.95),
        efficiency_discharge=np.full(n, 0.95),
        soc_min_kwh=0.1 * cap_b,
        soc_max_kwh=0.95 * cap_b,
        soc_initial_kwh=0.5 * cap_b,
    )
    cap_e = rng.uniform(40.0, 80.0, n)
    evp = EvParams(
        capacity_kwh=cap_e,
        power_kw=np.full(n, 7.4),
        efficiency_charge=np.full(n, 0.92),
        efficiency_discharge=np.full(n, 0.92),
        v2h=rng.random(n) < 0.3,
        soc_min_kwh=0.2 * cap_e,
        target_kwh=0.8 * cap_e,
        soc_initial_kwh=0.6 * cap_e,
    )
    th = ThermalParams(
        kind=np.full(n, THERMAL_HEAT_PUMP, dtype=np.int64),
        p_max_kw=np.full(n, 3.0),
        cop=np.full(n, 3.5),
        ua_kw_per_k=rng.uniform(0.12, 0.25, n),
        capacity_kwh_per_k=rng.uniform(6.0, 12.0, n),
        t_min_c=np.full(n, 20.0),
        t_max_c=np.full(n, 23.0),
        t_initial_c=np.full(n, 21.0),
    )
    # ~3 runs a week each: windows 8-14 h wide, 2 h long
    runs = max(1, round(3 * days / 7))
    part = np.repeat(np.arange(n), runs)
    es = rng.integers(0, max(1, n_slots - per_day), part.size)
    dur = np.full(part.size, max(1, round(2 / dt_h)))
    le = np.minimum(es + dur + rng.integers(int(6 / dt_h), int(12 / dt_h), part.size), n_slots)
    order = np.argsort(es, kind="stable")
    jobs = ShiftableJobs(
        participant=part[order].astype(np.int64),
        earliest_start=es[order].astype(np.int64),
        latest_end=le[order].astype(np.int64),
        duration_slots=dur[order].astype(np.int64),
        p_kw=np.full(part.size, 1.2),
        appliance=np.full(part.size, "dishwasher"),
    )
    assets = AssetParams(n_participants=n, battery=bat, ev=evp, thermal=th, jobs=jobs)
    h = _hours(n_slots, dt_h)
    base = (0.3 + 0.4 * ((h >= 7) & (h < 9)) + 0.6 * ((h >= 18) & (h < 22)))[:, None] * dt_h
    base = base * rng.uniform(0.7, 1.3, (1, n)) * rng.uniform(0.8, 1.2, (n_slots, n))
    day = np.arange(n_slots) * dt_h / 24.0
    season = np.cos(2 * np.pi * day / 365.0)  # 1 in winter, −1 in summer
    pv = (
        pv_shape(n_slots, dt_h)[:, None]
        * rng.uniform(3.0, 8.0, (1, n))
        * (0.6 - 0.3 * season[:, None])
        * rng.uniform(0.3, 1.0, (n_slots, 1))
    )
    temp = 9.0 - 9.0 * season + 5.0 * np.sin((h - 9.0) / 24 * 2 * np.pi)
    # EV away 7:00-17:00 on weekdays for most, trip energy booked at return
    away = ((h >= 7) & (h < 17))[:, None] & (rng.random((1, n)) < 0.8)
    weekend = ((np.arange(n_slots) // per_day) % 7 >= 5)[:, None]
    plugged = ~(away & ~weekend)
    arrive = plugged & ~np.vstack([plugged[:1], plugged[:-1]])
    trips = np.where(arrive, rng.uniform(4.0, 15.0, (n_slots, n)), 0.0)
    profiles = Profiles(
        base_demand_kwh=base, pv_kwh=pv, temp_out_c=temp, ev_plugged=plugged, ev_trip_kwh=trips
    )
    if tou:
        retail, feed_in = tou_prices(n_slots, dt_h)
    else:
        retail, feed_in = np.full(n_slots, 0.30), np.full(n_slots, 0.07)
    return Community(assets, profiles, retail, feed_in, dt_h)


def _f(n: int, v: float) -> np.ndarray:
    return np.full(n, float(v))


def no_battery(n: int) -> BatteryParams:
    z = _f(n, 0.0)
    return BatteryParams(
        capacity_kwh=z,
        power_kw=z,
        efficiency_charge=_f(n, 1.0),
        efficiency_discharge=_f(n, 1.0),
        soc_min_kwh=z,
        soc_max_kwh=z,
        soc_initial_kwh=z,
    )


def battery(
    n: int, *, capacity: float = 10.0, power: float = 5.0, eta: float = 0.95, soc: float = 0.0
) -> BatteryParams:
    return BatteryParams(
        capacity_kwh=_f(n, capacity),
        power_kw=_f(n, power),
        efficiency_charge=_f(n, eta),
        efficiency_discharge=_f(n, eta),
        soc_min_kwh=_f(n, 0.0),
        soc_max_kwh=_f(n, capacity),
        soc_initial_kwh=_f(n, soc),
    )


def no_ev(n: int) -> EvParams:
    z = _f(n, 0.0)
    return EvParams(
        capacity_kwh=z,
        power_kw=z,
        efficiency_charge=_f(n, 1.0),
        efficiency_discharge=_f(n, 1.0),
        v2h=np.zeros(n, dtype=bool),
        soc_min_kwh=z,
        target_kwh=z,
        soc_initial_kwh=z,
    )


def ev(
    n: int,
    *,
    capacity: float = 50.0,
    power: float = 10.0,
    eta: float = 1.0,
    v2h: bool = False,
    soc: float = 10.0,
    target: float = 40.0,
    soc_min: float = 0.0,
) -> EvParams:
    return EvParams(
        capacity_kwh=_f(n, capacity),
        power_kw=_f(n, power),
        efficiency_charge=_f(n, eta),
        efficiency_discharge=_f(n, eta),
        v2h=np.full(n, v2h),
        soc_min_kwh=_f(n, soc_min),
        target_kwh=_f(n, target),
        soc_initial_kwh=_f(n, soc),
    )


def no_thermal(n: int) -> ThermalParams:
    z = _f(n, 0.0)
    return ThermalParams(
        kind=np.zeros(n, dtype=np.int64),
        p_max_kw=z,
        cop=z,
        ua_kw_per_k=z,
        capacity_kwh_per_k=z,
        t_min_c=_f(n, 20.0),
        t_max_c=_f(n, 22.0),
        t_initial_c=_f(n, 21.0),
    )


def heat_pump(
    n: int, *, p_max: float = 5.0, t_min: float = 20.0, t_max: float = 23.0, t0: float = 20.5
) -> ThermalParams:
    return ThermalParams(
        kind=np.full(n, THERMAL_HEAT_PUMP, dtype=np.int64),
        p_max_kw=_f(n, p_max),
        cop=_f(n, 3.5),
        ua_kw_per_k=_f(n, 0.2),
        capacity_kwh_per_k=_f(n, 10.0),
        t_min_c=_f(n, t_min),
        t_max_c=_f(n, t_max),
        t_initial_c=_f(n, t0),
    )


def jobs_of(rows: list[tuple[int, int, int, int, float]]) -> ShiftableJobs:
    """(participant, earliest_start, latest_end, duration_slots, p_kw) per job."""
    rows = sorted(rows, key=lambda r: r[1])
    col = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return ShiftableJobs(
        participant=np.array(col[0], dtype=np.int64),
        earliest_start=np.array(col[1], dtype=np.int64),
        latest_end=np.array(col[2], dtype=np.int64),
        duration_slots=np.array(col[3], dtype=np.int64),
        p_kw=np.array(col[4], dtype=float),
        appliance=np.array(["wm"] * len(rows), dtype=np.str_),
    )


def hand_built(
    n_slots: int,
    dt_h: float,
    *,
    n: int = 1,
    battery_params: BatteryParams | None = None,
    ev_params: EvParams | None = None,
    thermal_params: ThermalParams | None = None,
    jobs: ShiftableJobs | None = None,
    base_kw: float = 0.5,
    pv_kwh: np.ndarray | None = None,
    temp_out_c: float = 5.0,
    plugged: np.ndarray | None = None,
    trips: np.ndarray | None = None,
    retail: np.ndarray | None = None,
    feed_in: np.ndarray | None = None,
) -> Community:
    """A small community with only the assets asked for; profiles default to flat."""
    assets = AssetParams(
        n_participants=n,
        battery=battery_params or no_battery(n),
        ev=ev_params or no_ev(n),
        thermal=thermal_params or no_thermal(n),
        jobs=jobs or jobs_of([]),
    )
    profiles = Profiles(
        base_demand_kwh=np.full((n_slots, n), base_kw * dt_h),
        pv_kwh=np.zeros((n_slots, n)) if pv_kwh is None else pv_kwh,
        temp_out_c=np.full(n_slots, temp_out_c),
        ev_plugged=np.zeros((n_slots, n), dtype=bool) if plugged is None else plugged,
        ev_trip_kwh=np.zeros((n_slots, n)) if trips is None else trips,
    )
    return Community(
        assets,
        profiles,
        np.full(n_slots, 0.30) if retail is None else retail,
        np.full(n_slots, 0.08) if feed_in is None else feed_in,
        dt_h,
    )


def run(
    policy_name: str, comm: Community, params: dict[str, object] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    from peergrid.ems.driver import run_policy
    from peergrid.ems.registry import make_policy

    if policy_name == "stackelberg" and params is None:
        params = {"max_iterations": 2}  # keep the full game out of the generic behaviour tests
    policy = make_policy(
        policy_name, params, comm.assets.n_participants, np.random.default_rng(seed)
    )
    return run_policy(policy, comm.assets, comm.profiles, comm.retail, comm.feed_in, comm.dt_h)


def net_of(r: dict[str, np.ndarray]) -> np.ndarray:
    """Net export at the connection point of a recorded run [kWh], (T, P)."""
    out: np.ndarray = (
        r["generation_kwh"]
        + r["battery_discharge_kwh"]
        + r["ev_discharge_kwh"]
        - r["demand_kwh"]
        - r["battery_charge_kwh"]
        - r["ev_charge_kwh"]
    )
    return out


def cost(comm: Community, r: dict[str, np.ndarray]) -> float:
    """Energy cost with the retailer only (no community market) [currency]."""
    net = net_of(r)
    return float(
        (
            np.maximum(-net, 0.0) * comm.retail[:, None]
            - np.maximum(net, 0.0) * comm.feed_in[:, None]
        ).sum()
    )
