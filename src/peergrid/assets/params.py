"""Asset parameters as arrays across participants (the physical layer, declared once).

Every field is an array of length P (participants) unless stated otherwise. A participant without
an asset has zeros for it (capacity 0 kWh, power 0 kW), so the physics functions need no masks
beyond what zeros already give. Built from the validated scenario by `peergrid.scenario.build`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

THERMAL_NONE = 0
THERMAL_HEAT_PUMP = 1
THERMAL_AIR_CONDITIONER = 2


@dataclass(frozen=True, eq=False)
class BatteryParams:
    """Home battery. Charge e_ch [kWh, AC] raises the state by η_c·e_ch; discharge e_dis [kWh, AC]
    lowers it by e_dis/η_d; round-trip efficiency = η_c·η_d."""

    capacity_kwh: FloatArray
    power_kw: FloatArray  # charge and discharge limit, AC side
    efficiency_charge: FloatArray  # η_c in (0, 1]
    efficiency_discharge: FloatArray  # η_d in (0, 1]
    soc_min_kwh: FloatArray
    soc_max_kwh: FloatArray
    soc_initial_kwh: FloatArray


@dataclass(frozen=True, eq=False)
class EvParams:
    """Electric vehicle battery, charged (and with v2h discharged) only while plugged in at home."""

    capacity_kwh: FloatArray
    power_kw: FloatArray  # charger limit, AC side
    efficiency_charge: FloatArray
    efficiency_discharge: FloatArray
    v2h: BoolArray  # may discharge to the home / grid while plugged in
    soc_min_kwh: FloatArray  # never discharged (by v2h) below this
    target_kwh: FloatArray  # state of charge wanted at each departure
    soc_initial_kwh: FloatArray


@dataclass(frozen=True, eq=False)
class ThermalParams:
    """Heat pump (heating) or air conditioner (cooling) with a first-order (1R1C) building.

    Indoor temperature T [°C] follows C·dT/dt = −UA·(T − T_out) ± COP·p_el over a slot, solved
    exactly for constant inputs: T⁺ = T∞ + (T − T∞)·exp(−UA·Δt/C), T∞ = T_out ± COP·p_el/UA
    (+ for heating, − for cooling).
    """

    kind: IntArray  # THERMAL_NONE / THERMAL_HEAT_PUMP / THERMAL_AIR_CONDITIONER
    p_max_kw: FloatArray  # electric power limit
    cop: FloatArray  # coefficient of performance at the rating point [-]
    ua_kw_per_k: FloatArray  # building heat-loss coefficient
    capacity_kwh_per_k: FloatArray  # building heat capacity
    t_min_c: FloatArray  # comfort band
    t_max_c: FloatArray
    t_initial_c: FloatArray


@dataclass(frozen=True, eq=False)
class ShiftableJobs:
    """Runs of shiftable appliances (washing machine, dishwasher, ...), one entry per run.

    A run draws `p_kw` for `duration_slots` consecutive slots, starting no earlier than
    `earliest_start` and ending no later than `latest_end` (exclusive slot index). Arrays have
    length J (jobs), sorted by `earliest_start`.
    """

    participant: IntArray
    earliest_start: IntArray
    latest_end: IntArray
    duration_slots: IntArray
    p_kw: FloatArray
    appliance: NDArray[np.str_]  # appliance name (for reports)

    @property
    def n_jobs(self) -> int:
        return int(self.participant.shape[0])


@dataclass(frozen=True, eq=False)
class AssetParams:
    """All controllable assets of a community."""

    n_participants: int
    battery: BatteryParams
    ev: EvParams
    thermal: ThermalParams
    jobs: ShiftableJobs


@dataclass(frozen=True, eq=False)
class Profiles:
    """Exogenous time series on the slot grid, shape (T, P) unless stated otherwise.

    Attributes:
        base_demand_kwh: inflexible household consumption per slot (everything except heat pump,
            shiftable appliances and EV charging).
        pv_kwh: PV generation per slot (AC).
        temp_out_c: outdoor air temperature, (T,).
        ev_plugged: EV at home and plugged in during the slot.
        ev_trip_kwh: energy a trip took out of the EV battery, booked at the first slot of the
            EV's return (the slot in which `ev_plugged` becomes true).
    """

    base_demand_kwh: FloatArray
    pv_kwh: FloatArray
    temp_out_c: FloatArray
    ev_plugged: BoolArray
    ev_trip_kwh: FloatArray
