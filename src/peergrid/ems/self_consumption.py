"""`self-consumption`: use your own PV first, store what is left, look no further than needed.

The rule-based home EMS most households run today, decided per slot and participant:

- **Own load from PV first, then the battery.** The household load (base + heat pump/AC +
  shiftable + EV charging) is served from PV; the battery covers what is missing and charges
  only from what PV has left over, never from the grid.
- **EV.** Without v2h it charges as soon as it is plugged in, at full charger power, until the
  departure target. With v2h the EV is a second battery with a deadline: it charges from PV
  surplus (up to its capacity) and at least the minimum that keeps the target reachable by
  departure at the charger limit (`ev.min_charge_kwh`), and covers the home deficit the
  battery leaves, down to the level from which the target is still reachable
  (`ev.v2h_floor_kwh`) and never below its soc_min. Charging from the grid at full power at
  once would only be discharged again into the house, losing the round trip.
- **Heat pump / air conditioner.** A thermostat that keeps the indoor temperature inside the
  comfort band, heating to the lower edge + `comfort_margin_k` (cooling to the upper edge −
  margin) only when the building would otherwise drift past that setpoint.
- **Shiftable jobs** start at the first slot of their window in which the PV surplus left
  after base load, thermal load and running jobs covers the appliance's power, else at their
  latest feasible start.

The forecast is used only to find when a plugged-in EV leaves (`horizon_h` of look-ahead).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from peergrid.assets import battery, ev
from peergrid.assets.params import AssetParams, BoolArray, FloatArray
from peergrid.ems.base import Dispatch, EmsParams, Forecast, SlotInputs
from peergrid.ems.bidding import draw_factors
from peergrid.ems.common import (
    Constants,
    JobQueue,
    PolicyParams,
    PolicyState,
    constants_for,
    ev_arrival,
    ev_v2h_floor_kwh,
    home_battery_dispatch,
    initial_state,
    limit_prices_for,
    make_dispatch,
    retire_and_open,
    settle,
    start_jobs,
    thermostat,
)

_TOL_KWH = 1e-12


class SelfConsumptionParams(PolicyParams):
    """Parameters of `self-consumption`: the common ones (`PolicyParams`) with their defaults
    horizon_h = 24 h, comfort_margin_k = 0.5 K, bid_buy 0.5–1.0, bid_sell 0.0–0.5."""


def pv_job_starts(q: JobQueue, c: Constants, t: int, surplus_kwh: FloatArray) -> BoolArray:
    """Which pending jobs start in slot t: forced ones, and those the PV surplus covers.

    Several jobs of one participant start together only while their summed energy fits in its
    surplus (in queue order).
    """
    starting = q.pending_due <= t if q.next_due <= t else np.zeros(q.pending.size, dtype=bool)
    if surplus_kwh.max() <= 0.0:
        return starting
    part = c.job_participant[q.pending]
    e_kwh = c.job_e_kwh[q.pending]
    fits = e_kwh <= surplus_kwh[part] + _TOL_KWH
    if not np.count_nonzero(fits):
        return starting
    cand = np.flatnonzero(fits)
    by_part = np.argsort(part[cand], kind="stable")
    cand = cand[by_part]
    p_c = part[cand]
    e_c = e_kwh[cand]
    cum = np.cumsum(e_c)
    first = np.ones(cand.size, dtype=bool)
    first[1:] = p_c[1:] != p_c[:-1]
    before_group = (cum - e_c)[first]
    within = cum - before_group[np.cumsum(first) - 1]
    starting = starting.copy()
    starting[cand[within <= surplus_kwh[p_c] + _TOL_KWH]] = True
    return starting


class SelfConsumption:
    """The `self-consumption` policy (module docstring)."""

    name: ClassVar[str] = "self-consumption"
    description: ClassVar[str] = (
        "PV first, then battery charged only from PV surplus; EV charges on arrival; "
        "thermostat at the comfort band's edge; appliances start on PV surplus"
    )
    Params: ClassVar[type[EmsParams]] = SelfConsumptionParams
    observes_market: ClassVar[bool] = False
    reads_energy_forecast: ClassVar[bool] = False

    def __init__(
        self, params: SelfConsumptionParams, n_participants: int, rng: np.random.Generator
    ) -> None:
        self.params = params
        self.horizon_h = params.horizon_h
        self.factors = draw_factors(params, n_participants, rng)

    def init_state(self, assets: AssetParams) -> PolicyState:
        return initial_state(assets)

    def step(
        self, state: PolicyState, inputs: SlotInputs, forecast: Forecast, assets: AssetParams
    ) -> tuple[PolicyState, Dispatch]:
        c = constants_for(state, assets, inputs.dt_h, self.params.comfort_margin_k)
        t = inputs.t
        dt_h = inputs.dt_h
        pv = inputs.pv_kwh
        base = inputs.base_demand_kwh
        plugged = inputs.ev_plugged

        soc_ev, unserved, departure, _ = ev_arrival(
            c, state.ev_soc_kwh, state.ev_departure_slot, inputs, forecast
        )
        e_th, temp_next = thermostat(c, state.indoor_temp_c, inputs.temp_out_c, c.th_near_c)

        q, _ = retire_and_open(state.jobs, c, t)
        if q.pending.size:
            q, running_kwh = settle(q, c, t)
            starting = pv_job_starts(q, c, t, pv - base - e_th - running_kwh)
            if np.count_nonzero(starting):
                q = start_jobs(q, c, t, starting)
        q, e_job = settle(q, c, t)
        demand = base + e_th + e_job

        # EV: full power to the target; v2h EVs only the deadline minimum (+ PV surplus below)
        ev_power = c.ev_power_kw * plugged
        slots_left = departure - t
        min_charge, to_target = ev.charge_bounds_kwh(
            soc_ev,
            c.ev_target_kwh,
            power_kw=ev_power,
            efficiency_charge=c.ev_eta_c,
            slots_to_departure=slots_left,
            dt_h=dt_h,
        )
        v2h_on = c.ev_v2h & plugged
        any_v2h = c.any_v2h and bool(np.count_nonzero(v2h_on))
        ev_request = np.where(c.ev_v2h, min_charge, to_target) if any_v2h else to_target

        net = pv - demand - ev_request
        bat = home_battery_dispatch(
            c,
            state.battery_soc_kwh,
            np.maximum(net, 0.0),
            np.maximum(-net, 0.0),
        )

        # the request is feasible by construction (<= P·Δt, <= the target <= capacity)
        ev_charge, ev_discharge = ev_request, c.zeros
        if any_v2h:
            residual = net - bat.charge_kwh + bat.discharge_kwh
            extra = np.maximum(residual, 0.0) * v2h_on
            if np.count_nonzero(extra):  # PV surplus left: into the v2h EV, up to capacity
                room = battery.charge_limit_kwh(
                    soc_ev, c.ev_capacity_kwh, ev_power, c.ev_eta_c, dt_h
                )
                ev_charge = ev_request + np.minimum(extra, np.maximum(room - ev_request, 0.0))
            cover = np.maximum(-residual, 0.0) * (v2h_on & (ev_request <= 0.0))
            if np.count_nonzero(cover):  # deficit left: from the v2h EV, down to its floor
                floor = ev_v2h_floor_kwh(c, ev_power, slots_left)
                limit = battery.discharge_limit_kwh(
                    soc_ev, floor, ev_power * v2h_on, c.ev_eta_d, dt_h
                )
                ev_discharge = np.minimum(cover, limit)
        if ev_discharge is c.zeros:  # next_soc_kwh without its (zero) discharge term
            ev_soc_next = soc_ev + c.ev_eta_c * ev_charge
        else:
            ev_soc_next = battery.next_soc_kwh(
                soc_ev, ev_charge, ev_discharge, c.ev_eta_c, c.ev_eta_d
            )

        limits = limit_prices_for(
            state.limits, self.factors, inputs.retail_price, inputs.feed_in_price
        )
        new_state = PolicyState(
            battery_soc_kwh=bat.soc_kwh,
            ev_soc_kwh=ev_soc_next,
            indoor_temp_c=temp_next,
            ev_departure_slot=departure,
            jobs=q,
            constants=c,
            limits=limits,
        )
        dispatch = make_dispatch(
            limits=limits,
            demand_kwh=demand,
            generation_kwh=pv,
            battery_charge_kwh=bat.charge_kwh,
            battery_discharge_kwh=bat.discharge_kwh,
            ev_charge_kwh=ev_charge,
            ev_discharge_kwh=ev_discharge,
            thermal_kwh=e_th,
            shiftable_kwh=e_job,
            ev_unserved_kwh=unserved,
        )
        return new_state, dispatch
