"""`coordinated`: every participant follows the community coordinator's central schedule.

At the start of each planning interval (`replan_h`, default 6 h) the coordinator solves the
community's schedule LP (`peergrid.coordination.schedule`) over the `Forecast` window
(`horizon_h`, default 24 h; in the simulator perfect foresight of the run's data) from the
current state, and every participant executes the plan until the next one:

- **Tracking, not replaying.** Each slot the battery, EV and building are steered towards the
  plan's *state* at the end of the slot (state of charge, indoor temperature), and the request is
  carried out by the asset functions of `peergrid.assets` (`battery.dispatch`, `ev.dispatch`,
  the thermal response), which clip it to every physical limit. So the limits hold exactly
  whatever numerical noise the interior-point solver leaves, and a deviation from the plan (a
  trip longer than expected) is recovered at once instead of accumulating.
- **Guards.** The EV always charges at least the deadline minimum (`ev.min_charge_kwh`) and v2h
  never discharges below `ev.v2h_floor_kwh`; the heat pump (air conditioner) always runs at least
  what keeps the near edge of the comfort band and at most what reaches the far edge. Where the
  LP's plan already satisfies these, they change nothing.
- **Trips.** The `Forecast` carries no trip energies. The plan assumes that every return in the
  window costs what the participant's last trip cost (0 before the first); the trip booked in
  the current slot is known exactly. With `replan_on_trip` every booked trip triggers a new plan
  (exact, but one LP per arrival).
- **Shiftable runs.** The LP places each run's energy in its window (relaxation, or the MILP with
  `shiftable = "milp"`); the relaxed plan is rounded to blocks (`block_starts`: the start covering
  most of the run's LP energy), the starts that fall in the planning interval are fixed and the
  LP is solved again with them, so the executed plan and λ belong to real blocks. A run that
  reaches its latest start starts regardless (`shiftable.must_start`).
- **Prices.** Both limit prices of every participant are the slot's internal marginal price λ_t
  (dual of the community balance), clipped to [feed-in, retail]: that is how the coordinator
  tells the market (`markets/coordinated.py`) the internal price.
- **Network.** With `NetworkConstraints` (`Coordinated(..., network=...)` or
  `with_network`), every plan keeps the feeder's voltages and branch flows inside their limits
  (LinDistFlow) and every participant inside its export / import limits of the plan's slots
  (the constraints hold run-long (T, P) limits; each plan takes its window's rows). Where the
  batteries cannot take a surplus the plan curtails PV, and the participants generate the
  plan's PV less its curtailment (`Dispatch.generation_kwh`). Tracking the planned states
  reproduces the planned nets where the forecast is right.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import ClassVar, Literal, Self

import numpy as np
from pydantic import Field, model_validator

from peergrid.assets import shiftable, thermal
from peergrid.assets.params import AssetParams, FloatArray, IntArray
from peergrid.coordination.network import NetworkConstraints
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.rolling import block_starts
from peergrid.coordination.schedule import schedule
from peergrid.ems.base import Dispatch, EmsParams, Forecast, PhysicalState, SlotInputs
from peergrid.ems.common import (
    Constants,
    build_constants,
    ev_arrival,
    home_battery_dispatch,
    home_ev_dispatch,
    thermal_terms,
)

_TINY_KWH = 1e-9  # requests below this are solver noise [kWh]


class CoordinatedParams(EmsParams):
    """Parameters of `coordinated`."""

    horizon_h: float = Field(
        24.0, gt=0.0, le=168.0, description="look-ahead of each plan [h] (the LP's horizon)"
    )
    replan_h: float | None = Field(
        6.0,
        gt=0.0,
        description="a new plan every this many hours [h]; None: every horizon_h (day-ahead)",
    )
    replan_on_trip: bool = Field(
        False, description="also re-plan in every slot in which an EV returns from a trip"
    )
    shiftable: Literal["relaxed", "milp"] = Field(
        "relaxed",
        description="'relaxed': LP relaxation of the appliance runs, rounded to blocks; "
        "'milp': one start per run with binaries",
    )
    mip_time_limit_s: float = Field(30.0, gt=0.0, description="MILP time limit per plan [s]")
    wear_per_kwh: float = Field(
        1e-4, ge=0.0, description="battery/EV throughput cost, a tie-breaker [currency/kWh]"
    )
    penalty_factor: float = Field(
        4.0,
        gt=1.0,
        description="soft constraints (EV target, comfort band, limits) cost this multiple of "
        "the dearest way to meet them [-]",
    )
    import_limit_kw: float | None = Field(
        None, ge=0.0, description="community import limit [kW]; None for none"
    )
    export_limit_kw: float | None = Field(
        None, ge=0.0, description="community export limit [kW]; None for none"
    )
    solver: Literal["auto", "ipm", "simplex"] = Field(
        "auto", description="HiGHS method: 'auto' (IPM for large plans), 'ipm' or 'simplex'"
    )

    @model_validator(mode="after")
    def _replan_within_horizon(self) -> CoordinatedParams:
        if self.replan_h is not None and self.replan_h > self.horizon_h:
            raise ValueError(
                f"replan_h must be <= horizon_h (got {self.replan_h} > {self.horizon_h})"
            )
        return self

    def schedule_options(self) -> ScheduleOptions:
        return ScheduleOptions(
            wear_per_kwh=self.wear_per_kwh,
            penalty_factor=self.penalty_factor,
            import_limit_kw=self.import_limit_kw,
            export_limit_kw=self.export_limit_kw,
            shiftable=self.shiftable,
            mip_time_limit_s=self.mip_time_limit_s,
            solver=self.solver,
        )


@dataclass(frozen=True, eq=False, slots=True)
class Plan:
    """The coordinator's plan from slot `t0` on.

    Attributes:
        t0: run slot of row 0.
        n_rows: slots the plan covers (H).
        battery_soc_kwh, ev_soc_kwh: planned states, (H + 1, P) [kWh].
        indoor_temp_c: planned indoor temperatures, (H + 1, P) [°C].
        marginal_price: λ_t, (H,) [currency/kWh].
        job_start: (J,) planned start of the runs committed in this plan, −1 elsewhere.
        job_ids: runs that are running or may start inside the plan.
        objective: the LP's optimal value [currency].
        status: the solver's status.
        pv_curtailment_kwh: planned PV curtailment, (H, P) [kWh] (zeros without a network).
    """

    t0: int
    n_rows: int
    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    indoor_temp_c: FloatArray
    marginal_price: FloatArray
    job_start: IntArray
    job_ids: IntArray
    objective: float
    status: str
    pv_curtailment_kwh: FloatArray


@dataclass(frozen=True, eq=False, slots=True)
class CoordinatedState:
    """What `coordinated` carries from slot to slot (a step returns a new one).

    Attributes:
        battery_soc_kwh, ev_soc_kwh, indoor_temp_c: states at the start of the next slot, (P,).
        ev_departure_slot: first slot after the current plug-in session, as far as known, (P,).
        job_starts: (J,) run slot each run started, −1 where it has not.
        trip_estimate_kwh: energy the next trip is expected to take, (P,) [kWh].
        plan: the current plan (None before the first step).
        constants: per-run arrays (None before the first step).
        n_plans: plans solved so far.
    """

    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    indoor_temp_c: FloatArray
    ev_departure_slot: IntArray
    job_starts: IntArray
    trip_estimate_kwh: FloatArray
    plan: Plan | None
    constants: Constants | None
    n_plans: int

    def job_start_slot(self) -> IntArray:
        """Start slot of every run so far, −1 where it has not started, (J,)."""
        return self.job_starts.copy()

    def with_physical(self, physical: PhysicalState) -> Self:
        """This state with the given states of charge and indoor temperatures."""
        return replace(
            self,
            battery_soc_kwh=physical.battery_soc_kwh,
            ev_soc_kwh=physical.ev_soc_kwh,
            indoor_temp_c=physical.indoor_temp_c,
        )


def _forecast_trips(plugged: np.ndarray, estimate_kwh: FloatArray) -> FloatArray:
    """Expected trip energy at every return inside the window (row 0's trip is booked)."""
    trips = np.zeros(plugged.shape)
    trips[1:] = np.where(plugged[1:] & ~plugged[:-1], estimate_kwh[None, :], 0.0)
    return trips


def make_plan(
    t: int,
    forecast: Forecast,
    assets: AssetParams,
    dt_h: float,
    *,
    battery_soc_kwh: FloatArray,
    ev_soc_kwh: FloatArray,
    indoor_temp_c: FloatArray,
    job_starts: IntArray,
    trip_estimate_kwh: FloatArray,
    commit_slots: int,
    options: ScheduleOptions,
    network: NetworkConstraints | None = None,
) -> Plan:
    """Solve the community's schedule from slot t over the forecast window.

    `ev_soc_kwh` is the state after this slot's trip. The relaxed runs are rounded to blocks;
    those starting before t + `commit_slots` are fixed and the LP is solved again with them.
    `network` (run-long limits) constrains the plan's slots t..t + H − 1.
    """
    problem = ScheduleProblem(
        assets=assets,
        base_demand_kwh=forecast.base_demand_kwh,
        pv_kwh=forecast.pv_kwh,
        temp_out_c=forecast.temp_out_c,
        ev_plugged=forecast.ev_plugged,
        ev_trip_kwh=_forecast_trips(forecast.ev_plugged, trip_estimate_kwh),
        retail_price=np.asarray(forecast.retail_price, dtype=np.float64),
        feed_in_price=np.asarray(forecast.feed_in_price, dtype=np.float64),
        dt_h=dt_h,
        battery_soc_kwh=battery_soc_kwh,
        ev_soc_kwh=ev_soc_kwh,
        indoor_temp_c=indoor_temp_c,
        t0=t,
        job_start_slot=job_starts,
        network=network,
        export_limit_kwh=forecast.export_limit_kwh,
        import_limit_kwh=forecast.import_limit_kwh,
    )
    s = schedule(problem, options)
    starts = s.job_start_slot.copy()
    if options.shiftable == "relaxed" and np.count_nonzero(s.job_placed):
        ids, chosen = block_starts(problem, s)
        starts[ids] = chosen
    not_started = job_starts == shiftable.NOT_STARTED
    commit = not_started & (starts != shiftable.NOT_STARTED) & (starts < t + commit_slots)
    if options.shiftable == "relaxed" and np.count_nonzero(commit):
        fixed = np.where(commit, starts, job_starts)
        s = schedule(replace(problem, job_start_slot=fixed), options)
    jobs = assets.jobs
    h = problem.n_slots
    relevant = (jobs.earliest_start < t + h) & (
        not_started | (job_starts + jobs.duration_slots > t)
    )
    return Plan(
        t0=t,
        n_rows=h,
        battery_soc_kwh=s.battery_soc_kwh,
        ev_soc_kwh=s.ev_soc_kwh,
        indoor_temp_c=s.indoor_temp_c,
        marginal_price=s.marginal_price,
        job_start=np.where(commit, starts, shiftable.NOT_STARTED),
        job_ids=np.flatnonzero(relevant).astype(np.int64),
        objective=s.objective,
        status=s.status,
        pv_curtailment_kwh=(
            np.zeros((h, assets.n_participants))
            if s.network is None
            else s.network.pv_curtailment_kwh
        ),
    )


class Coordinated:
    """The `coordinated` policy (module docstring)."""

    name: ClassVar[str] = "coordinated"
    description: ClassVar[str] = (
        "central LP schedule of the whole community (batteries, EVs, heat pumps, appliances), "
        "re-planned every replan_h; limit prices = the internal marginal price"
    )
    Params: ClassVar[type[EmsParams]] = CoordinatedParams
    observes_market: ClassVar[bool] = False
    reads_energy_forecast: ClassVar[bool] = True

    def __init__(
        self,
        params: CoordinatedParams,
        n_participants: int,
        rng: np.random.Generator,
        *,
        network: NetworkConstraints | None = None,
    ) -> None:
        # `rng` is unused: the schedule is deterministic (no bidding temperament to draw)
        del rng
        if network is not None and network.n_participants != n_participants:
            raise ValueError(
                f"the network places {network.n_participants} participants, the policy has "
                f"{n_participants}"
            )
        self.params = params
        self.horizon_h = params.horizon_h
        self.network = network
        self._n_participants = n_participants
        self._options = params.schedule_options()

    def with_network(self, network: NetworkConstraints | None) -> Coordinated:
        """A copy of this policy that plans within `network` (None: without a network).

        The engine builds the policy from the registry and then hands it the feeder's
        constraints, whose per-participant limits cover the whole run, (T, P)."""
        if network is not None and network.n_participants != self._n_participants:
            raise ValueError(
                f"the network places {network.n_participants} participants, the policy has "
                f"{self._n_participants}"
            )
        out = copy.copy(self)
        out.network = network
        return out

    def init_state(self, assets: AssetParams) -> CoordinatedState:
        f = np.float64
        n = assets.n_participants
        return CoordinatedState(
            battery_soc_kwh=np.asarray(assets.battery.soc_initial_kwh, dtype=f).copy(),
            ev_soc_kwh=np.asarray(assets.ev.soc_initial_kwh, dtype=f).copy(),
            indoor_temp_c=np.asarray(assets.thermal.t_initial_c, dtype=f).copy(),
            ev_departure_slot=np.full(n, -1, dtype=np.int64),
            job_starts=np.full(assets.jobs.n_jobs, shiftable.NOT_STARTED, dtype=np.int64),
            trip_estimate_kwh=np.zeros(n),
            plan=None,
            constants=None,
            n_plans=0,
        )

    def _replan_slots(self, dt_h: float) -> int:
        hours = self.params.replan_h if self.params.replan_h is not None else self.horizon_h
        return max(1, round(hours / dt_h))

    def step(
        self, state: CoordinatedState, inputs: SlotInputs, forecast: Forecast, assets: AssetParams
    ) -> tuple[CoordinatedState, Dispatch]:
        t, dt_h = inputs.t, inputs.dt_h
        c = state.constants
        if c is None or c.dt_h != dt_h or c.assets is not assets:
            c = build_constants(assets, dt_h, 0.0)

        soc_ev, unserved, departure, _ = ev_arrival(
            c, state.ev_soc_kwh, state.ev_departure_slot, inputs, forecast
        )
        tripped = inputs.ev_trip_kwh > 0.0
        trip_estimate = state.trip_estimate_kwh
        if np.count_nonzero(tripped):
            trip_estimate = np.where(tripped, inputs.ev_trip_kwh, trip_estimate)

        plan, n_plans = state.plan, state.n_plans
        commit = self._replan_slots(dt_h)
        if (
            plan is None
            or t - plan.t0 >= min(commit, plan.n_rows)
            or t < plan.t0
            or (self.params.replan_on_trip and bool(np.count_nonzero(tripped)))
        ):
            plan = make_plan(
                t,
                forecast,
                assets,
                dt_h,
                battery_soc_kwh=state.battery_soc_kwh,
                ev_soc_kwh=soc_ev,
                indoor_temp_c=state.indoor_temp_c,
                job_starts=state.job_starts,
                trip_estimate_kwh=trip_estimate,
                commit_slots=commit,
                options=self._options,
                network=self.network,
            )
            n_plans += 1
        r = t - plan.t0

        # shiftable runs: planned starts, and the runs at their latest start
        job_starts = state.job_starts
        e_job = c.zeros
        ids = plan.job_ids
        if ids.size:
            st = job_starts[ids]
            due = (st == shiftable.NOT_STARTED) & (c.job_earliest[ids] <= t)
            go = due & (
                ((plan.job_start[ids] != shiftable.NOT_STARTED) & (plan.job_start[ids] <= t))
                | shiftable.must_start(st, c.job_latest_start[ids], t)
            )
            if np.count_nonzero(go):
                job_starts = job_starts.copy()
                job_starts[ids[go]] = t
            e_job = shiftable.energy_kwh(
                job_starts[ids],
                c.job_duration[ids],
                c.job_participant[ids],
                c.job_p_kw[ids],
                t=t,
                dt_h=dt_h,
                n_participants=c.n,
            )

        # heat pump / AC: towards the planned temperature, inside what keeps the band
        free, effect = thermal_terms(c, state.indoor_temp_c, inputs.temp_out_c)
        if c.any_thermal:
            e_th = _thermal_energy(c, free, effect, plan.indoor_temp_c[r + 1])
            temp_next = thermal.next_temperature_c(free, e_th, effect)
        else:
            e_th, temp_next = c.zeros, free

        # battery: towards the planned state of charge
        delta = plan.battery_soc_kwh[r + 1] - state.battery_soc_kwh
        bat = home_battery_dispatch(
            c,
            state.battery_soc_kwh,
            _clean(np.maximum(delta, 0.0) / c.bat_eta_c),
            _clean(np.maximum(-delta, 0.0) * c.bat_eta_d),
        )

        # EV: towards the planned state, never below the deadline minimum or the v2h floor
        plugged = inputs.ev_plugged
        slots_left = departure - t
        delta = plan.ev_soc_kwh[r + 1] - soc_ev
        car = home_ev_dispatch(
            c,
            soc_ev,
            _clean(np.maximum(delta, 0.0) / c.ev_eta_c),
            _clean(np.maximum(-delta, 0.0) * c.ev_eta_d),
            plugged,
            slots_left,
        )

        lam = float(plan.marginal_price[r])
        lo = min(inputs.feed_in_price, inputs.retail_price)
        hi = max(inputs.feed_in_price, inputs.retail_price)
        price = min(max(lam, lo), hi) if np.isfinite(lam) else inputs.retail_price
        limit = np.full(c.n, price)

        new_state = CoordinatedState(
            battery_soc_kwh=bat.soc_kwh,
            ev_soc_kwh=car.soc_kwh,
            indoor_temp_c=temp_next,
            ev_departure_slot=departure,
            job_starts=job_starts,
            trip_estimate_kwh=trip_estimate,
            plan=plan,
            constants=c,
            n_plans=n_plans,
        )
        generation = inputs.pv_kwh
        if self.network is not None:
            generation = inputs.pv_kwh - np.minimum(plan.pv_curtailment_kwh[r], inputs.pv_kwh)
        dispatch = Dispatch(
            demand_kwh=inputs.base_demand_kwh + e_th + e_job,
            generation_kwh=generation,
            battery_charge_kwh=bat.charge_kwh,
            battery_discharge_kwh=bat.discharge_kwh,
            ev_charge_kwh=car.charge_kwh,
            ev_discharge_kwh=car.discharge_kwh,
            thermal_kwh=e_th,
            shiftable_kwh=e_job,
            ev_unserved_kwh=unserved,
            buy_limit_price=limit,
            sell_limit_price=limit,
        )
        return new_state, dispatch


def _clean(request_kwh: FloatArray) -> FloatArray:
    """Requests below `_TINY_KWH` are the solver's noise: 0."""
    out: FloatArray = np.where(request_kwh > _TINY_KWH, request_kwh, 0.0)
    return out


def _thermal_energy(
    c: Constants, free_c: FloatArray, effect: FloatArray, planned_c: FloatArray
) -> FloatArray:
    """Electric energy that ends the slot at the planned temperature, kept inside
    [what holds the near edge of the band, what reaches its far edge] ∩ [0, p_max·Δt] [kWh].

    The constants are built with a zero comfort margin, so `th_near_c` / `th_far_c` are the
    band's edges (the lower one for a heat pump, the upper one for an air conditioner).
    """
    e_max = c.th_e_max_kwh
    need = thermal.energy_for_setpoint_kwh(free_c, c.th_near_c, effect, e_max)
    reach = thermal.energy_for_setpoint_kwh(free_c, c.th_far_c, effect, np.full_like(e_max, np.inf))
    upper = np.maximum(np.minimum(reach, e_max), need)
    track = np.divide(planned_c - free_c, effect, out=np.zeros_like(free_c), where=effect != 0.0)
    out: FloatArray = np.minimum(np.maximum(track, need), upper)
    return out
