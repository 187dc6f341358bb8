"""Electric-vehicle physics: trips, the charger, the departure deadline and vehicle-to-home.

Pure functions over arrays across participants, shape (P,). The EV battery follows the same
update as the home battery (`battery.next_soc_kwh`), with bounds [0, capacity] for charging
and [floor, capacity] for v2h discharge, where the floor keeps the departure target reachable.
It charges and discharges only while plugged in at home.

A slot of the plug-in session is counted in `slots_to_departure`: with the EV plugged in for
slots t, t+1, …, d−1 and gone in slot d, at slot t there are n = d − t slots left, this one
included.
"""

from __future__ import annotations

import numpy as np

from peergrid.assets import battery
from peergrid.assets.battery import StorageFlows
from peergrid.assets.params import BoolArray, FloatArray, IntArray


def apply_trip(soc_kwh: FloatArray, trip_kwh: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Book a trip's energy at the EV's return.

    Returns:
        (soc_kwh, unserved_kwh): the state after the trip, clamped at 0 [kWh], and the part of
        the trip the battery could not supply (the driver charged it elsewhere) [kWh].
    """
    return np.maximum(soc_kwh - trip_kwh, 0.0), np.maximum(trip_kwh - soc_kwh, 0.0)


def reachable_target_kwh(target_kwh: FloatArray, capacity_kwh: FloatArray) -> FloatArray:
    """The departure target the policy aims at: the wanted target, at most the capacity [kWh]."""
    return np.minimum(target_kwh, capacity_kwh)


def charge_bounds_kwh(
    soc_kwh: FloatArray,
    target_kwh: FloatArray,
    *,
    power_kw: FloatArray,
    efficiency_charge: FloatArray,
    slots_to_departure: IntArray,
    dt_h: float,
) -> tuple[FloatArray, FloatArray]:
    """The least and the most useful AC charge in this slot [kWh].

    Charging at the charger limit in the n − 1 later slots adds at most (n − 1)·P·Δt of AC
    energy, so this slot must take at least e_min = (target − soc)/η_c − (n − 1)·P·Δt; beyond
    e_full = (target − soc)/η_c the target is passed. Both are clipped to [0, P·Δt]; when the
    target is out of reach anyway, e_min is the full P·Δt (charge as much as possible). Pass
    `power_kw` = 0 where the EV is not plugged in.

    Returns:
        (e_min_kwh, e_full_kwh).
    """
    e_max_kwh = power_kw * dt_h
    gap_kwh = (target_kwh - soc_kwh) / efficiency_charge
    later_kwh = np.maximum(slots_to_departure - 1, 0) * e_max_kwh
    e_min = np.minimum(np.maximum(gap_kwh - later_kwh, 0.0), e_max_kwh)
    e_full = np.minimum(np.maximum(gap_kwh, 0.0), e_max_kwh)
    return e_min, e_full


def min_charge_kwh(
    soc_kwh: FloatArray,
    target_kwh: FloatArray,
    *,
    power_kw: FloatArray,
    efficiency_charge: FloatArray,
    slots_to_departure: IntArray,
    dt_h: float,
) -> FloatArray:
    """Least AC charge in this slot that keeps the target reachable by departure [kWh]
    (`charge_bounds_kwh`)."""
    return charge_bounds_kwh(
        soc_kwh,
        target_kwh,
        power_kw=power_kw,
        efficiency_charge=efficiency_charge,
        slots_to_departure=slots_to_departure,
        dt_h=dt_h,
    )[0]


def v2h_floor_kwh(
    target_kwh: FloatArray,
    soc_min_kwh: FloatArray,
    *,
    power_kw: FloatArray,
    efficiency_charge: FloatArray,
    slots_to_departure: IntArray,
    dt_h: float,
) -> FloatArray:
    """Lowest state at the end of this slot from which the target is still reachable [kWh].

    From a state s the n − 1 later slots can add η_c·(n − 1)·P·Δt, so v2h may discharge this
    slot down to max(soc_min, target − η_c·(n − 1)·P·Δt) and never below soc_min.
    """
    later_kwh = np.maximum(slots_to_departure - 1, 0) * (power_kw * dt_h)
    return np.maximum(soc_min_kwh, target_kwh - efficiency_charge * later_kwh)


def dispatch(
    soc_kwh: FloatArray,
    charge_request_kwh: FloatArray,
    discharge_request_kwh: FloatArray,
    *,
    plugged: BoolArray,
    v2h: BoolArray,
    capacity_kwh: FloatArray,
    floor_kwh: FloatArray,
    power_kw: FloatArray,
    efficiency_charge: FloatArray,
    efficiency_discharge: FloatArray,
    dt_h: float,
) -> StorageFlows:
    """Carry out a charge/discharge request at the home charger as far as the limits allow.

    `soc_kwh` is the state after any trip booked in this slot (`apply_trip`). Charging is
    limited to the charger and the capacity, v2h discharge to the charger and `floor_kwh`
    (`v2h_floor_kwh`); nothing flows while the EV is away, and only v2h EVs discharge.
    """
    charge_power_kw = power_kw * plugged
    discharge_power_kw = power_kw * (plugged & v2h)
    net_kwh = charge_request_kwh - discharge_request_kwh
    charge = np.minimum(
        np.maximum(net_kwh, 0.0),
        battery.charge_limit_kwh(soc_kwh, capacity_kwh, charge_power_kw, efficiency_charge, dt_h),
    )
    discharge = np.minimum(
        np.maximum(-net_kwh, 0.0),
        battery.discharge_limit_kwh(
            soc_kwh, floor_kwh, discharge_power_kw, efficiency_discharge, dt_h
        ),
    )
    soc_next = battery.next_soc_kwh(
        soc_kwh, charge, discharge, efficiency_charge, efficiency_discharge
    )
    return StorageFlows(charge_kwh=charge, discharge_kwh=discharge, soc_kwh=soc_next)


def session_slots(plugged_ahead: BoolArray) -> IntArray:
    """Length of the plug-in session that is running at row 0 of a look-ahead window [slots].

    `plugged_ahead` is (H, k) with row 0 = this slot. The session ends at the first slot in
    which the EV is not plugged in; if the window shows no departure, the session is assumed
    to end with the window (H). A column that is not plugged in at row 0 gets 0.
    """
    n_rows = plugged_ahead.shape[0]
    gone = ~plugged_ahead
    slots: IntArray = np.where(gone.any(axis=0), gone.argmax(axis=0), n_rows).astype(np.int64)
    return slots
