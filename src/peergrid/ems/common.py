"""What the EMS policies share: parameters, state, per-run constants and the slot bookkeeping.

The policies differ only in their decisions (when to charge, which setpoint, when a job
starts); trips, plug-in sessions, the building's response, the job queue and the assembly of
the `Dispatch` are the same and live here. Everything is arrays across participants; the only
Python-level work per slot is a handful of scalar checks that skip the rare events (a trip,
an EV arriving, a job window opening) when nothing happens.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass
from typing import Self

import numpy as np
from pydantic import Field

from peergrid.assets import battery, ev, shiftable, thermal
from peergrid.assets.battery import StorageFlows
from peergrid.assets.params import (
    THERMAL_AIR_CONDITIONER,
    AssetParams,
    BoolArray,
    FloatArray,
    IntArray,
)
from peergrid.ems.base import Dispatch, EmsParams, Forecast, PhysicalState, SlotInputs
from peergrid.ems.bidding import BiddingParams, BidFactors, limit_prices

NO_SLOT = np.iinfo(np.int64).max  # "never" for scalar slot indices


class _LookAheadParams(EmsParams):
    horizon_h: float = Field(
        24.0,
        gt=0.0,
        le=168.0,
        description="look-ahead the policy asks for [h]; it finds EV departures in it",
    )
    comfort_margin_k: float = Field(
        0.5,
        ge=0.0,
        le=5.0,
        description="distance the thermostat keeps from the comfort band's edges [K] "
        "(at most half the band)",
    )


class PolicyParams(BiddingParams, _LookAheadParams):
    """Parameters every policy has: horizon_h, comfort_margin_k and the bidding ranges of
    `BiddingParams`."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False, slots=True)
class Constants:
    """Per-run arrays derived once from the asset parameters and the slot length.

    Efficiencies of absent assets (≤ 0) are replaced by 1 so no division can fail; their
    power is 0, so nothing else changes. Job arrays are indexed by job id (position in
    `ShiftableJobs`); `job_order` lists the ids by earliest start.
    """

    assets: AssetParams
    dt_h: float
    n: int
    zeros: FloatArray  # shared read-only zeros, (P,)
    cols: IntArray  # 0 .. P − 1
    # battery
    bat_soc_min_kwh: FloatArray
    bat_soc_max_kwh: FloatArray
    bat_power_kw: FloatArray
    bat_eta_c: FloatArray
    bat_eta_d: FloatArray
    bat_e_max_kwh: FloatArray  # power·Δt
    has_battery: BoolArray
    # EV
    ev_capacity_kwh: FloatArray
    ev_power_kw: FloatArray
    ev_eta_c: FloatArray
    ev_eta_d: FloatArray
    ev_v2h: BoolArray
    any_v2h: bool
    ev_soc_min_kwh: FloatArray
    ev_target_kwh: FloatArray  # min(target, capacity)
    ev_eta_rt: FloatArray  # η_c·η_d
    ev_floor_at_target_kwh: FloatArray  # max(soc_min, target): v2h of the energy above target
    # thermal
    th_kind: IntArray
    th_cop_rated: FloatArray  # 1 where there is no thermal asset
    th_cop_max: FloatArray  # thermal.COP_MAX_FACTOR · th_cop_rated
    th_cooling: BoolArray | None  # air conditioners; None when there are none
    th_decay: FloatArray
    th_one_minus_decay: FloatArray
    th_signed_gain: FloatArray  # ±g [K/kWh]; 1 without a thermal asset (whose e_max is 0)
    th_e_max_kwh: FloatArray
    th_near_c: FloatArray  # thermostat setpoint at the cheap-to-hold edge of the band
    th_far_c: FloatArray  # setpoint at the other edge (pre-heating / pre-cooling)
    any_thermal: bool
    # jobs
    n_jobs: int
    job_order: IntArray
    job_earliest: IntArray
    job_earliest_sorted: list[int]
    job_participant: IntArray
    job_duration: IntArray
    job_latest_start: IntArray
    job_p_kw: FloatArray
    job_e_kwh: FloatArray  # p·Δt


def _safe_eta(eta: FloatArray) -> FloatArray:
    return np.where(eta > 0.0, eta, 1.0).astype(np.float64)


def build_constants(assets: AssetParams, dt_h: float, comfort_margin_k: float) -> Constants:
    """Derive the per-run arrays (not on the hot path: once per run)."""
    n = assets.n_participants
    b, e, th, jobs = assets.battery, assets.ev, assets.thermal, assets.jobs
    f = np.float64

    sign = thermal.heat_sign(th.kind)
    decay, gain = thermal.response(th.ua_kw_per_k, th.capacity_kwh_per_k, dt_h)
    valid_th = (sign != 0.0) & (th.cop > 0.0) & (gain > 0.0) & (th.p_max_kw > 0.0)
    margin = np.minimum(comfort_margin_k, np.maximum(th.t_max_c - th.t_min_c, 0.0) / 2.0)
    lower = th.t_min_c + margin
    upper = th.t_max_c - margin
    heating = sign > 0.0
    cop_rated = np.where(valid_th, th.cop, 1.0).astype(f)
    cooling: BoolArray = np.asarray(th.kind == THERMAL_AIR_CONDITIONER, dtype=np.bool_)

    order = np.argsort(jobs.earliest_start, kind="stable").astype(np.int64)
    latest = shiftable.latest_start_slot(jobs.earliest_start, jobs.latest_end, jobs.duration_slots)
    ev_power = np.asarray(e.power_kw, dtype=f)
    return Constants(
        assets=assets,
        dt_h=dt_h,
        n=n,
        zeros=_readonly(np.zeros(n)),
        cols=_readonly(np.arange(n, dtype=np.int64)),
        bat_soc_min_kwh=np.asarray(b.soc_min_kwh, dtype=f),
        bat_soc_max_kwh=np.asarray(b.soc_max_kwh, dtype=f),
        bat_power_kw=np.asarray(b.power_kw, dtype=f),
        bat_eta_c=_safe_eta(b.efficiency_charge),
        bat_eta_d=_safe_eta(b.efficiency_discharge),
        bat_e_max_kwh=_readonly(b.power_kw * dt_h),
        has_battery=(b.capacity_kwh > 0.0) & (b.power_kw > 0.0) & (b.soc_max_kwh > b.soc_min_kwh),
        ev_capacity_kwh=np.asarray(e.capacity_kwh, dtype=f),
        ev_power_kw=ev_power,
        ev_eta_c=_safe_eta(e.efficiency_charge),
        ev_eta_d=_safe_eta(e.efficiency_discharge),
        ev_v2h=np.asarray(e.v2h, dtype=bool) & (ev_power > 0.0),
        any_v2h=bool(np.any(np.asarray(e.v2h, dtype=bool) & (ev_power > 0.0))),
        ev_soc_min_kwh=np.asarray(e.soc_min_kwh, dtype=f),
        ev_target_kwh=ev.reachable_target_kwh(e.target_kwh, e.capacity_kwh),
        ev_eta_rt=_safe_eta(e.efficiency_charge) * _safe_eta(e.efficiency_discharge),
        ev_floor_at_target_kwh=np.maximum(
            e.soc_min_kwh, ev.reachable_target_kwh(e.target_kwh, e.capacity_kwh)
        ),
        th_kind=np.asarray(th.kind, dtype=np.int64),
        th_cop_rated=cop_rated,
        th_cop_max=thermal.COP_MAX_FACTOR * cop_rated,
        th_cooling=cooling if cooling.any() else None,
        th_decay=decay,
        th_one_minus_decay=1.0 - decay,
        # 1 K/kWh where there is no thermal asset: no division by zero, and with
        # th_e_max_kwh = 0 the asset still does nothing
        th_signed_gain=np.where(valid_th, sign * gain, 1.0),
        th_e_max_kwh=np.where(valid_th, th.p_max_kw * dt_h, 0.0),
        th_near_c=np.where(heating, lower, upper),
        th_far_c=np.where(heating, upper, lower),
        any_thermal=bool(valid_th.any()),
        n_jobs=jobs.n_jobs,
        job_order=order,
        job_earliest=np.asarray(jobs.earliest_start, dtype=np.int64),
        job_earliest_sorted=[int(x) for x in jobs.earliest_start[order]],
        job_participant=np.asarray(jobs.participant, dtype=np.int64),
        job_duration=np.asarray(jobs.duration_slots, dtype=np.int64),
        job_latest_start=np.asarray(latest, dtype=np.int64),
        job_p_kw=np.asarray(jobs.p_kw, dtype=f),
        job_e_kwh=np.asarray(jobs.p_kw * dt_h, dtype=f),
    )


# --------------------------------------------------------------------------------------------
# Shiftable jobs: a small queue instead of a scan over the year's jobs


@dataclass(frozen=True, eq=False, slots=True)
class JobLog:
    """The jobs that started in one slot, linked to the previous entry (a persistent list)."""

    jobs: IntArray
    slot: int
    previous: JobLog | None


_EMPTY_INT = _readonly(np.zeros(0, dtype=np.int64))


@dataclass(frozen=True, eq=False, slots=True)
class JobQueue:
    """The jobs a policy is handling, none of them mutated after construction.

    Attributes:
        next_open: position in the earliest-start order of the next job to open.
        pending: ids of open jobs that have not started.
        pending_due: per pending job, the slot at which it starts at the latest: its planned
            start (price-aware) or its latest feasible start.
        next_due: min(pending_due), NO_SLOT when nothing is pending.
        running: ids of started jobs that still draw power.
        running_end: per running job, the first slot after its run.
        next_end: min(running_end), NO_SLOT when nothing runs.
        load_kwh: energy the running jobs draw in the slot, (P,); None while the running set
            changed and the load is not yet recomputed (`settle`).
        log: the start slots so far.
    """

    next_open: int
    pending: IntArray
    pending_due: IntArray
    next_due: int
    running: IntArray
    running_end: IntArray
    next_end: int
    load_kwh: FloatArray | None
    log: JobLog | None

    @staticmethod
    def empty(n_participants: int) -> JobQueue:
        return JobQueue(
            next_open=0,
            pending=_EMPTY_INT,
            pending_due=_EMPTY_INT,
            next_due=NO_SLOT,
            running=_EMPTY_INT,
            running_end=_EMPTY_INT,
            next_end=NO_SLOT,
            load_kwh=_readonly(np.zeros(n_participants)),
            log=None,
        )

    def start_slots(self, n_jobs: int) -> IntArray:
        """Start slot of every job, `shiftable.NOT_STARTED` for those that have not started."""
        out = np.full(n_jobs, shiftable.NOT_STARTED, dtype=np.int64)
        node = self.log
        while node is not None:
            out[node.jobs] = node.slot
            node = node.previous
        return out


def _running_load(c: Constants, running: IntArray, running_end: IntArray, t: int) -> FloatArray:
    if running.size == 0:
        return c.zeros
    start = running_end - c.job_duration[running]
    load = shiftable.energy_kwh(
        start,
        c.job_duration[running],
        c.job_participant[running],
        c.job_p_kw[running],
        t=t,
        dt_h=c.dt_h,
        n_participants=c.n,
    )
    return _readonly(load)  # shared by the dispatches of the slots it stays unchanged


def retire_and_open(q: JobQueue, c: Constants, t: int) -> tuple[JobQueue, IntArray]:
    """Drop the runs that ended before slot t and open the windows that began by t.

    Returns the queue and the ids of the jobs opened now (their `pending_due` is their latest
    start; a policy that plans them overwrites it with `with_due`).
    """
    if q.next_end <= t:
        keep = q.running_end > t
        running = q.running[keep]
        running_end = q.running_end[keep]
        q = JobQueue(
            next_open=q.next_open,
            pending=q.pending,
            pending_due=q.pending_due,
            next_due=q.next_due,
            running=running,
            running_end=running_end,
            next_end=int(running_end.min()) if running_end.size else NO_SLOT,
            load_kwh=None,
            log=q.log,
        )
    opened = _EMPTY_INT
    if q.next_open < c.n_jobs and c.job_earliest_sorted[q.next_open] <= t:
        stop = bisect.bisect_right(c.job_earliest_sorted, t)
        opened = c.job_order[q.next_open : stop]
        due = c.job_latest_start[opened]
        pending_due = np.concatenate([q.pending_due, due])
        q = JobQueue(
            next_open=stop,
            pending=np.concatenate([q.pending, opened]),
            pending_due=pending_due,
            next_due=int(pending_due.min()),
            running=q.running,
            running_end=q.running_end,
            next_end=q.next_end,
            load_kwh=q.load_kwh,
            log=q.log,
        )
    return q, opened


def with_due(q: JobQueue, opened: IntArray, due: IntArray) -> JobQueue:
    """Set the planned start of the jobs just opened (the last `opened.size` pending ones)."""
    pending_due = np.concatenate([q.pending_due[: q.pending.size - opened.size], due])
    return JobQueue(
        next_open=q.next_open,
        pending=q.pending,
        pending_due=pending_due,
        next_due=int(pending_due.min()),
        running=q.running,
        running_end=q.running_end,
        next_end=q.next_end,
        load_kwh=q.load_kwh,
        log=q.log,
    )


def start_jobs(q: JobQueue, c: Constants, t: int, starting: BoolArray) -> JobQueue:
    """Start the pending jobs marked in `starting` (aligned with `q.pending`) in slot t."""
    started = q.pending[starting]
    if started.size == 0:
        return q
    stay = ~starting
    pending = q.pending[stay]
    pending_due = q.pending_due[stay]
    running = np.concatenate([q.running, started])
    running_end = np.concatenate([q.running_end, t + c.job_duration[started]])
    # a job of zero duration starts and ends at once
    live = running_end > t
    running, running_end = running[live], running_end[live]
    return JobQueue(
        next_open=q.next_open,
        pending=pending,
        pending_due=pending_due,
        next_due=int(pending_due.min()) if pending_due.size else NO_SLOT,
        running=running,
        running_end=running_end,
        next_end=int(running_end.min()) if running_end.size else NO_SLOT,
        load_kwh=None,
        log=JobLog(jobs=started, slot=t, previous=q.log),
    )


def settle(q: JobQueue, c: Constants, t: int) -> tuple[JobQueue, FloatArray]:
    """The queue with its load recomputed if the running set changed, and that load (P,)."""
    if q.load_kwh is not None:
        return q, q.load_kwh
    load = _running_load(c, q.running, q.running_end, t)
    q = JobQueue(
        next_open=q.next_open,
        pending=q.pending,
        pending_due=q.pending_due,
        next_due=q.next_due,
        running=q.running,
        running_end=q.running_end,
        next_end=q.next_end,
        load_kwh=load,
        log=q.log,
    )
    return q, load


# --------------------------------------------------------------------------------------------
# EV plug-in sessions


def ev_arrival(
    c: Constants,
    soc_kwh: FloatArray,
    departure_slot: IntArray,
    inputs: SlotInputs,
    forecast: Forecast,
) -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
    """Book trips and find the departure of sessions the policy does not know yet.

    A session is unknown when the EV is plugged in and its known departure is not after t (it
    just arrived, or the look-ahead at arrival did not reach its departure and that assumed
    departure has come).

    Returns:
        (soc_kwh, unserved_kwh, departure_slot, renewed): the state after trips, the unserved
        trip energy, the first slot after each session, and the participants whose session
        was (re)discovered in this slot.
    """
    t = inputs.t
    if np.count_nonzero(inputs.ev_trip_kwh):
        soc_kwh, unserved = ev.apply_trip(soc_kwh, inputs.ev_trip_kwh)
    else:
        unserved = c.zeros
    unknown = inputs.ev_plugged & (departure_slot <= t)
    if not np.count_nonzero(unknown):
        return soc_kwh, unserved, departure_slot, _EMPTY_INT
    renewed = np.flatnonzero(unknown)
    n_slots = ev.session_slots(forecast.ev_plugged[:, renewed])
    departure_slot = departure_slot.copy()
    departure_slot[renewed] = t + np.maximum(n_slots, 1)
    return soc_kwh, unserved, departure_slot, renewed


# --------------------------------------------------------------------------------------------
# Storage within the run's limits


def home_battery_dispatch(
    c: Constants,
    soc_kwh: FloatArray,
    charge_request_kwh: FloatArray,
    discharge_request_kwh: FloatArray,
) -> StorageFlows:
    """`battery.dispatch` of every home battery within its limits (the run's constants)."""
    return battery.dispatch(
        soc_kwh,
        charge_request_kwh,
        discharge_request_kwh,
        soc_min_kwh=c.bat_soc_min_kwh,
        soc_max_kwh=c.bat_soc_max_kwh,
        power_kw=c.bat_power_kw,
        efficiency_charge=c.bat_eta_c,
        efficiency_discharge=c.bat_eta_d,
        dt_h=c.dt_h,
    )


def ev_v2h_floor_kwh(
    c: Constants, power_kw: FloatArray, slots_to_departure: IntArray
) -> FloatArray:
    """`ev.v2h_floor_kwh` of every EV (the run's constants); `power_kw` is 0 where the EV is
    not plugged in."""
    return ev.v2h_floor_kwh(
        c.ev_target_kwh,
        c.ev_soc_min_kwh,
        power_kw=power_kw,
        efficiency_charge=c.ev_eta_c,
        slots_to_departure=slots_to_departure,
        dt_h=c.dt_h,
    )


def home_ev_dispatch(
    c: Constants,
    soc_kwh: FloatArray,
    charge_request_kwh: FloatArray,
    discharge_request_kwh: FloatArray,
    plugged: BoolArray,
    slots_to_departure: IntArray,
) -> StorageFlows:
    """`ev.dispatch` of every EV within its limits (the run's constants), as requested but
    charging at least the deadline minimum (`ev.min_charge_kwh`) and not discharging while that
    minimum is positive, never below the v2h floor (`ev_v2h_floor_kwh`)."""
    power = c.ev_power_kw * plugged
    min_charge = ev.min_charge_kwh(
        soc_kwh,
        c.ev_target_kwh,
        power_kw=power,
        efficiency_charge=c.ev_eta_c,
        slots_to_departure=slots_to_departure,
        dt_h=c.dt_h,
    )
    return ev.dispatch(
        soc_kwh,
        np.maximum(charge_request_kwh, min_charge),
        np.where(min_charge > 0.0, 0.0, discharge_request_kwh),
        plugged=plugged,
        v2h=c.ev_v2h,
        capacity_kwh=c.ev_capacity_kwh,
        floor_kwh=ev_v2h_floor_kwh(c, power, slots_to_departure),
        power_kw=c.ev_power_kw,
        efficiency_charge=c.ev_eta_c,
        efficiency_discharge=c.ev_eta_d,
        dt_h=c.dt_h,
    )


# --------------------------------------------------------------------------------------------
# Thermal


def thermal_terms(
    c: Constants, temp_c: FloatArray, temp_out_c: float
) -> tuple[FloatArray, FloatArray]:
    """The slot's free-running end temperature [°C] and the effect of 1 kWh of electricity on
    it [K/kWh] (any non-zero value without a thermal asset, whose e_max is 0)."""
    free = c.th_decay * temp_c + c.th_one_minus_decay * temp_out_c
    if not c.any_thermal:
        return free, c.zeros
    return free, c.th_signed_gain * thermal.cop_at(
        c.th_cop_rated, c.th_cop_max, c.th_cooling, temp_out_c
    )


def thermostat(
    c: Constants, temp_c: FloatArray, temp_out_c: float, setpoint_c: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Electric energy that ends the slot at the setpoint as far as p_max allows, and the
    resulting indoor temperature [kWh], [°C]."""
    free, effect = thermal_terms(c, temp_c, temp_out_c)
    if not c.any_thermal:
        return c.zeros, free
    e_kwh = thermal.energy_for_setpoint_kwh(free, setpoint_c, effect, c.th_e_max_kwh)
    return e_kwh, thermal.next_temperature_c(free, e_kwh, effect)


# --------------------------------------------------------------------------------------------
# Dispatch


@dataclass(frozen=True, eq=False, slots=True)
class LimitPrices:
    """The participants' limit prices for one pair of retail and feed-in prices (kept in the
    state, so slots with the same prices share them instead of recomputing)."""

    retail_price: float
    feed_in_price: float
    buy: FloatArray
    sell: FloatArray


def limit_prices_for(
    previous: LimitPrices | None, factors: BidFactors, retail_price: float, feed_in_price: float
) -> LimitPrices:
    """The limit prices for this slot's retail and feed-in prices (`bidding.limit_prices`)."""
    if (
        previous is not None
        and previous.retail_price == retail_price
        and previous.feed_in_price == feed_in_price
    ):
        return previous
    buy, sell = limit_prices(factors, retail_price, feed_in_price)
    return LimitPrices(retail_price, feed_in_price, _readonly(buy), _readonly(sell))


def make_dispatch(
    *,
    limits: LimitPrices,
    demand_kwh: FloatArray,
    generation_kwh: FloatArray,
    battery_charge_kwh: FloatArray,
    battery_discharge_kwh: FloatArray,
    ev_charge_kwh: FloatArray,
    ev_discharge_kwh: FloatArray,
    thermal_kwh: FloatArray,
    shiftable_kwh: FloatArray,
    ev_unserved_kwh: FloatArray,
) -> Dispatch:
    return Dispatch(
        demand_kwh=demand_kwh,
        generation_kwh=generation_kwh,
        battery_charge_kwh=battery_charge_kwh,
        battery_discharge_kwh=battery_discharge_kwh,
        ev_charge_kwh=ev_charge_kwh,
        ev_discharge_kwh=ev_discharge_kwh,
        thermal_kwh=thermal_kwh,
        shiftable_kwh=shiftable_kwh,
        ev_unserved_kwh=ev_unserved_kwh,
        buy_limit_price=limits.buy,
        sell_limit_price=limits.sell,
    )


@dataclass(frozen=True, eq=False, slots=True)
class PolicyState:
    """What a policy carries from slot to slot; a step returns a new one.

    Attributes:
        battery_soc_kwh: home-battery state at the start of the next slot, (P,).
        ev_soc_kwh: EV state at the start of the next slot, (P,).
        indoor_temp_c: indoor temperature at the start of the next slot, (P,).
        ev_departure_slot: first slot after the current (or last) plug-in session as far as
            the policy knows, (P,); a value <= t means "unknown".
        jobs: the shiftable-job queue.
        constants: per-run arrays, built at the first step (None before).
        limits: the last slot's limit prices (reused while the prices stay the same).
    """

    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    indoor_temp_c: FloatArray
    ev_departure_slot: IntArray
    jobs: JobQueue
    constants: Constants | None
    limits: LimitPrices | None

    def job_start_slot(self) -> IntArray:
        """Start slot of every job so far, −1 where it has not started, (J,)."""
        n_jobs = self.constants.n_jobs if self.constants is not None else 0
        return self.jobs.start_slots(n_jobs)

    def with_physical(self, physical: PhysicalState) -> Self:
        """This state with the given states of charge and indoor temperatures."""
        return dataclasses.replace(
            self,
            battery_soc_kwh=physical.battery_soc_kwh,
            ev_soc_kwh=physical.ev_soc_kwh,
            indoor_temp_c=physical.indoor_temp_c,
        )


def initial_state(assets: AssetParams) -> PolicyState:
    """The common state at the start of a run: the assets' initial states, nothing planned."""
    f = np.float64
    return PolicyState(
        battery_soc_kwh=np.asarray(assets.battery.soc_initial_kwh, dtype=f).copy(),
        ev_soc_kwh=np.asarray(assets.ev.soc_initial_kwh, dtype=f).copy(),
        indoor_temp_c=np.asarray(assets.thermal.t_initial_c, dtype=f).copy(),
        ev_departure_slot=np.full(assets.n_participants, -1, dtype=np.int64),
        jobs=JobQueue.empty(assets.n_participants),
        constants=None,
        limits=None,
    )


def constants_for(
    state: PolicyState, assets: AssetParams, dt_h: float, comfort_margin_k: float
) -> Constants:
    """The state's constants, rebuilt if they are missing or were built for other inputs."""
    c = state.constants
    if c is None or c.dt_h != dt_h or c.assets is not assets:
        c = build_constants(assets, dt_h, comfort_margin_k)
    return c
