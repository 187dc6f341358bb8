"""Home-battery physics: feasible charge and discharge in one slot, and the state update.

Pure functions over arrays across participants, shape (P,). Energies are AC-side per slot
[kWh] and never negative; a charge e_ch raises the stored energy by η_c·e_ch, a discharge
e_dis lowers it by e_dis/η_d (see `BatteryParams`). The state of charge lives at slot
boundaries: the `soc_kwh` argument is the state at the start of the slot, the returned one the
state at its end.

Efficiencies must be in (0, 1]; a participant without a battery has capacity and power 0, so
every limit below is 0 for it without masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets.params import BatteryParams, FloatArray


@dataclass(frozen=True, eq=False, slots=True)
class StorageFlows:
    """What a storage does in one slot, all (P,).

    Attributes:
        charge_kwh: AC energy into the storage [kWh], >= 0.
        discharge_kwh: AC energy out of the storage [kWh], >= 0; never both > 0.
        soc_kwh: state of charge at the end of the slot [kWh].
    """

    charge_kwh: FloatArray
    discharge_kwh: FloatArray
    soc_kwh: FloatArray


def charge_limit_kwh(
    soc_kwh: FloatArray,
    soc_max_kwh: FloatArray,
    power_kw: FloatArray,
    efficiency_charge: FloatArray,
    dt_h: float,
) -> FloatArray:
    """Largest AC charge in the slot [kWh]: min(power·Δt, (soc_max − soc)/η_c), at least 0."""
    room_kwh = (soc_max_kwh - soc_kwh) / efficiency_charge
    return np.maximum(np.minimum(power_kw * dt_h, room_kwh), 0.0)


def discharge_limit_kwh(
    soc_kwh: FloatArray,
    soc_min_kwh: FloatArray,
    power_kw: FloatArray,
    efficiency_discharge: FloatArray,
    dt_h: float,
) -> FloatArray:
    """Largest AC discharge in the slot [kWh]: min(power·Δt, (soc − soc_min)·η_d), at least 0."""
    available_kwh = (soc_kwh - soc_min_kwh) * efficiency_discharge
    return np.maximum(np.minimum(power_kw * dt_h, available_kwh), 0.0)


def next_soc_kwh(
    soc_kwh: FloatArray,
    charge_kwh: FloatArray,
    discharge_kwh: FloatArray,
    efficiency_charge: FloatArray,
    efficiency_discharge: FloatArray,
) -> FloatArray:
    """State of charge at the end of the slot [kWh]: soc + η_c·e_ch − e_dis/η_d.

    This is the one place the update identity is written; callers and tests use it as is, so
    the identity holds exactly (bit for bit), not just to a tolerance.
    """
    return soc_kwh + efficiency_charge * charge_kwh - discharge_kwh / efficiency_discharge


def dispatch(
    soc_kwh: FloatArray,
    charge_request_kwh: FloatArray,
    discharge_request_kwh: FloatArray,
    *,
    soc_min_kwh: FloatArray,
    soc_max_kwh: FloatArray,
    power_kw: FloatArray,
    efficiency_charge: FloatArray,
    efficiency_discharge: FloatArray,
    dt_h: float,
) -> StorageFlows:
    """Carry out a charge/discharge request as far as the limits allow.

    The two requests (AC [kWh], >= 0) are netted first, so a storage never charges and
    discharges in the same slot; the net is then clipped to the power limit and the SoC bounds.
    A state already outside [soc_min, soc_max] is never pushed further out.
    """
    net_kwh = charge_request_kwh - discharge_request_kwh
    charge = np.minimum(
        np.maximum(net_kwh, 0.0),
        charge_limit_kwh(soc_kwh, soc_max_kwh, power_kw, efficiency_charge, dt_h),
    )
    discharge = np.minimum(
        np.maximum(-net_kwh, 0.0),
        discharge_limit_kwh(soc_kwh, soc_min_kwh, power_kw, efficiency_discharge, dt_h),
    )
    soc_next = next_soc_kwh(soc_kwh, charge, discharge, efficiency_charge, efficiency_discharge)
    return StorageFlows(charge_kwh=charge, discharge_kwh=discharge, soc_kwh=soc_next)


def dispatch_params(
    params: BatteryParams,
    soc_kwh: FloatArray,
    charge_request_kwh: FloatArray,
    discharge_request_kwh: FloatArray,
    dt_h: float,
) -> StorageFlows:
    """`dispatch` with the limits taken from a `BatteryParams`."""
    return dispatch(
        soc_kwh,
        charge_request_kwh,
        discharge_request_kwh,
        soc_min_kwh=params.soc_min_kwh,
        soc_max_kwh=params.soc_max_kwh,
        power_kw=params.power_kw,
        efficiency_charge=params.efficiency_charge,
        efficiency_discharge=params.efficiency_discharge,
        dt_h=dt_h,
    )
