"""Delivery: the home runs its assets in real time to follow what it committed at gate closure.

At gate closure the EMS planned the slot on forecasts (`PlannedSlot`); now the slot's actual
base demand, PV, outdoor temperature and EV trip are revealed. `follow_plan` decides, for every
participant at once:

1. **Appliance runs** start and draw as planned (a started washing machine runs).
2. **Heat pump / AC** runs its planned electric energy, moved only as far as needed to keep the
   indoor temperature inside the comfort band [t_min, t_max] under the actual weather and the
   measured starting temperature.
3. **EV** charges (and discharges, with v2h) as planned, cut to what its actual state of charge
   after the actual trip allows, and never less than what its next departure needs.
4. **Home battery** absorbs the forecast error first: with the net position the plan would now
   give (actual PV and demand, the flows of 1–3, the planned battery flows), the error against
   the commitment e = net − committed is taken up by charging more (e > 0) or discharging
   more (e < 0) than planned, within the battery's power and state of charge.
5. **Network limits** (envelopes, static caps) are enforced again on the actual flows
   (`enforce_envelope`: less discharge, more charge, then PV curtailment).

What the battery cannot absorb is the deviation, metered − committed, settled by the market's
deviation rule. Where a participant's actual inputs and measured state equal what the plan
assumed, its planned flows and end state are returned bit for bit (so perfect forecasts
reproduce the plan exactly, with no rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets import ev, thermal
from peergrid.assets.battery import StorageFlows
from peergrid.assets.params import AssetParams, BoolArray, FloatArray, IntArray
from peergrid.ems.base import Dispatch, PhysicalState, SlotInputs
from peergrid.ems.common import (
    Constants,
    home_battery_dispatch,
    home_ev_dispatch,
    thermal_terms,
)
from peergrid.ems.envelope import enforce_envelope


@dataclass(frozen=True, eq=False)
class PlannedSlot:
    """What the EMS planned for one slot at its gate closure, (P,) arrays.

    Attributes:
        dispatch: the planned dispatch (after the gate's network limits).
        start: the physical state the plan assumed at the start of the slot.
        end: the planned physical state at its end.
        base_demand_kwh: the forecast base demand the plan used [kWh].
        pv_kwh: the forecast PV the plan used (before any curtailment) [kWh].
        temp_out_c: the forecast outdoor temperature [°C].
        ev_trip_kwh: the trip energy the plan expected to be booked in the slot [kWh].
    """

    dispatch: Dispatch
    start: PhysicalState
    end: PhysicalState
    base_demand_kwh: FloatArray
    pv_kwh: FloatArray
    temp_out_c: float
    ev_trip_kwh: FloatArray

    @property
    def buy_limit_price(self) -> FloatArray:
        """The limit price at which the EMS bids a deficit [currency/kWh]."""
        return self.dispatch.buy_limit_price

    @property
    def sell_limit_price(self) -> FloatArray:
        """The limit price at which the EMS offers a surplus [currency/kWh]."""
        return self.dispatch.sell_limit_price


@dataclass(frozen=True, eq=False)
class Delivered:
    """The metered outcome of one slot.

    Attributes:
        dispatch: what every participant's assets did (its `net_kwh` is the metered net;
            PV curtailed by the network limits is `actual.pv_kwh − dispatch.generation_kwh`).
        end: the physical state at the end of the slot.
    """

    dispatch: Dispatch
    end: PhysicalState


def as_planned(
    plan: PlannedSlot, physical: PhysicalState, actual: SlotInputs, c: Constants
) -> BoolArray:
    """Participants whose actual inputs and measured start state equal the plan's, exactly
    (the outdoor temperature matters only to those with a heat pump or air conditioner)."""
    same: BoolArray = actual.base_demand_kwh == plan.base_demand_kwh
    if not np.count_nonzero(same):
        return same  # nobody's demand came true (the common case with real forecasts)
    same &= actual.pv_kwh == plan.pv_kwh
    same &= actual.ev_trip_kwh == plan.ev_trip_kwh
    start = plan.start
    if physical is not start:  # the very state the plan started from: equal by identity
        for name in ("battery_soc_kwh", "ev_soc_kwh", "indoor_temp_c"):
            a, b = getattr(physical, name), getattr(start, name)
            if a is not b:
                same &= a == b
    if actual.temp_out_c != plan.temp_out_c:
        same = same & (c.th_e_max_kwh <= 0.0)
    return same


def follow_plan(
    plan: PlannedSlot,
    physical: PhysicalState,
    actual: SlotInputs,
    committed_net_kwh: FloatArray,
    *,
    c: Constants,
    ev_slots_to_departure: IntArray,
    export_limit_kwh: FloatArray | None = None,
    import_limit_kwh: FloatArray | None = None,
) -> Delivered:
    """Deliver one slot (module docstring).

    Args:
        plan: the slot's plan made at gate closure.
        physical: measured state at the start of the slot.
        actual: the slot's actual inputs (`SlotInputs`, with the realised demand, PV,
            temperature and trip).
        committed_net_kwh: each participant's commitment (export positive) [kWh].
        c: per-run constants built with a zero comfort margin (the band's edges).
        ev_slots_to_departure: slots until each plugged-in EV leaves (>= 1) [slots], int.
        export_limit_kwh, import_limit_kwh: the slot's network limits, (P,) [kWh], or None.
    """
    assets: AssetParams = c.assets
    dt_h = actual.dt_h
    p = plan.dispatch
    exact = as_planned(plan, physical, actual, c)
    if np.count_nonzero(exact) == exact.size:
        return Delivered(p, plan.end)

    # 1. appliance runs as planned
    e_job = p.shiftable_kwh

    # 2. heat pump / AC: the planned energy inside what keeps the comfort band
    free, effect = thermal_terms(c, physical.indoor_temp_c, actual.temp_out_c)
    if c.any_thermal:
        need = thermal.energy_for_setpoint_kwh(free, c.th_near_c, effect, c.th_e_max_kwh)
        reach = thermal.energy_for_setpoint_kwh(free, c.th_far_c, effect, c.th_e_max_kwh)
        upper = np.maximum(reach, need)
        e_th = np.minimum(np.maximum(p.thermal_kwh, need), upper)
        temp_next = thermal.next_temperature_c(free, e_th, effect)
    else:
        e_th, temp_next = c.zeros, free

    # 3. EV: planned flows within what the actual state allows, the deadline first
    car, soc_ev, unserved = _follow_ev(plan, physical, actual, c, ev_slots_to_departure)

    # 4. battery: absorb the error against the commitment
    demand = actual.base_demand_kwh + e_th + e_job
    before = (
        actual.pv_kwh
        + p.battery_discharge_kwh
        + car.discharge_kwh
        - demand
        - p.battery_charge_kwh
        - car.charge_kwh
    )
    error = before - committed_net_kwh
    want = p.battery_charge_kwh - p.battery_discharge_kwh + error
    bat = home_battery_dispatch(
        c,
        physical.battery_soc_kwh,
        np.maximum(want, 0.0),
        np.maximum(-want, 0.0),
    )

    d = Dispatch(
        demand_kwh=demand,
        generation_kwh=actual.pv_kwh,
        battery_charge_kwh=bat.charge_kwh,
        battery_discharge_kwh=bat.discharge_kwh,
        ev_charge_kwh=car.charge_kwh,
        ev_discharge_kwh=car.discharge_kwh,
        thermal_kwh=e_th,
        shiftable_kwh=e_job,
        ev_unserved_kwh=unserved,
        buy_limit_price=p.buy_limit_price,
        sell_limit_price=p.sell_limit_price,
    )
    soc_b, soc_e = bat.soc_kwh, car.soc_kwh

    # 5. the network limits, on the actual flows
    if export_limit_kwh is not None and import_limit_kwh is not None:
        r = enforce_envelope(
            d,
            export_limit_kwh=export_limit_kwh,
            import_limit_kwh=import_limit_kwh,
            battery_soc_start_kwh=physical.battery_soc_kwh,
            battery_soc_end_kwh=soc_b,
            ev_soc_start_kwh=soc_ev,
            ev_soc_end_kwh=soc_e,
            assets=assets,
            dt_h=dt_h,
        )
        d, soc_b, soc_e = r.dispatch, r.battery_soc_kwh, r.ev_soc_kwh

    if np.count_nonzero(exact):
        d = _pick(exact, p, d)
        soc_b = np.where(exact, plan.end.battery_soc_kwh, soc_b)
        soc_e = np.where(exact, plan.end.ev_soc_kwh, soc_e)
        temp_next = np.where(exact, plan.end.indoor_temp_c, temp_next)
    end = PhysicalState(battery_soc_kwh=soc_b, ev_soc_kwh=soc_e, indoor_temp_c=temp_next)
    return Delivered(d, end)


def _follow_ev(
    plan: PlannedSlot,
    physical: PhysicalState,
    actual: SlotInputs,
    c: Constants,
    ev_slots_to_departure: IntArray,
) -> tuple[StorageFlows, FloatArray, FloatArray]:
    """The EVs' flows in delivery, their state after any trip and the unserved trip energy.

    Where every EV starts from the state its plan assumed and the trip came as expected, the
    planned flows are what the charger does (the plan kept the deadline from that very state);
    otherwise the planned flows are cut to what the actual state allows, the deadline first."""
    p = plan.dispatch
    soc_ev, unserved = ev.apply_trip(physical.ev_soc_kwh, actual.ev_trip_kwh)
    if np.array_equal(physical.ev_soc_kwh, plan.start.ev_soc_kwh) and np.array_equal(
        actual.ev_trip_kwh, plan.ev_trip_kwh
    ):
        planned = StorageFlows(p.ev_charge_kwh, p.ev_discharge_kwh, plan.end.ev_soc_kwh)
        return planned, soc_ev, unserved
    car = home_ev_dispatch(
        c, soc_ev, p.ev_charge_kwh, p.ev_discharge_kwh, actual.ev_plugged, ev_slots_to_departure
    )
    return car, soc_ev, unserved


def _pick(where: BoolArray, a: Dispatch, b: Dispatch) -> Dispatch:
    """Per participant, `a`'s flows where `where`, else `b`'s."""
    return Dispatch(
        demand_kwh=np.where(where, a.demand_kwh, b.demand_kwh),
        generation_kwh=np.where(where, a.generation_kwh, b.generation_kwh),
        battery_charge_kwh=np.where(where, a.battery_charge_kwh, b.battery_charge_kwh),
        battery_discharge_kwh=np.where(where, a.battery_discharge_kwh, b.battery_discharge_kwh),
        ev_charge_kwh=np.where(where, a.ev_charge_kwh, b.ev_charge_kwh),
        ev_discharge_kwh=np.where(where, a.ev_discharge_kwh, b.ev_discharge_kwh),
        thermal_kwh=np.where(where, a.thermal_kwh, b.thermal_kwh),
        shiftable_kwh=np.where(where, a.shiftable_kwh, b.shiftable_kwh),
        ev_unserved_kwh=np.where(where, a.ev_unserved_kwh, b.ev_unserved_kwh),
        buy_limit_price=a.buy_limit_price,
        sell_limit_price=a.sell_limit_price,
    )
