"""Thermal physics: a heat pump or air conditioner in a first-order (1R1C) building.

Pure functions over arrays across participants, shape (P,). The building follows
C·dT/dt = −UA·(T − T_out) + Q̇ with Q̇ = ±COP·p_el (+ heating, − cooling), solved exactly
for inputs held constant over a slot of length Δt (see `ThermalParams`):

    T⁺ = a·T + (1 − a)·T_out + g·Q,    a = exp(−UA·Δt/C),    g = (1 − a)/(UA·Δt)

with Q = ±COP·e_el the heat delivered in the slot [kWh] and e_el the electric energy [kWh].
`g` [K/kWh] is the end-of-slot temperature rise per kWh of heat spread evenly over the slot;
it tends to 1/C as UA → 0.

Coefficient of performance (`cop`): a constant Carnot fraction. The Carnot COP is
T_fixed/lift with a fixed temperature on the house side — the heating supply at
`HEATING_SUPPLY_C` for a heat pump, the evaporator at `COOLING_EVAPORATOR_C` for an air
conditioner — and the outdoor air on the other; the lift is at least `MIN_LIFT_K`. The
fraction is set so that COP equals the rated `cop` at the rating point (EN 14511: outdoor
`HEATING_RATING_C` = 7 °C for heating, `COOLING_RATING_C` = 35 °C for cooling), which makes

    COP(T_out) = cop_rated · lift_rating / lift(T_out),

clipped to [`COP_MIN`, `COP_MAX_FACTOR`·cop_rated]. A 3.5-rated heat pump thus has COP 2.2 at
−10 °C and 6.5 at 20 °C; a 3.0-rated air conditioner 2.0 at 45 °C.
"""

from __future__ import annotations

import numpy as np

from peergrid.assets.params import (
    THERMAL_AIR_CONDITIONER,
    THERMAL_HEAT_PUMP,
    BoolArray,
    FloatArray,
    IntArray,
)

HEATING_SUPPLY_C = 35.0  # heating-water supply temperature (low-temperature floor heating)
HEATING_RATING_C = 7.0  # outdoor temperature of the heating rating point (A7/W35)
COOLING_EVAPORATOR_C = 15.0  # indoor-coil temperature of an air conditioner
COOLING_RATING_C = 35.0  # outdoor temperature of the cooling rating point
MIN_LIFT_K = 10.0  # smallest temperature lift the Carnot term uses
COP_MIN = 1.0  # never worse than direct electric heating
COP_MAX_FACTOR = 2.0  # never better than twice the rated COP


def cop_factor_heating(temp_out_c: float) -> float:
    """COP of a heat pump relative to its rating point at outdoor temperature T_out [-]."""
    lift_rating_k = HEATING_SUPPLY_C - HEATING_RATING_C
    return lift_rating_k / max(HEATING_SUPPLY_C - temp_out_c, MIN_LIFT_K)


def cop_factor_cooling(temp_out_c: float) -> float:
    """COP of an air conditioner relative to its rating point at outdoor temperature T_out [-]."""
    lift_rating_k = COOLING_RATING_C - COOLING_EVAPORATOR_C
    return lift_rating_k / max(temp_out_c - COOLING_EVAPORATOR_C, MIN_LIFT_K)


def cop(cop_rated: FloatArray, kind: IntArray, temp_out_c: float) -> FloatArray:
    """Coefficient of performance at outdoor temperature T_out [-] (module docstring)."""
    factor = np.where(
        kind == THERMAL_AIR_CONDITIONER,
        cop_factor_cooling(temp_out_c),
        cop_factor_heating(temp_out_c),
    )
    return np.minimum(np.maximum(cop_rated * factor, COP_MIN), COP_MAX_FACTOR * cop_rated)


def cop_at(
    cop_rated: FloatArray, cop_max: FloatArray, cooling: BoolArray | None, temp_out_c: float
) -> FloatArray:
    """`cop` with the per-asset terms computed once per run: `cop_max` = COP_MAX_FACTOR·rated,
    `cooling` the mask of air conditioners (None where there are none) [-]. Equal to `cop`
    bit for bit."""
    heating = cop_factor_heating(temp_out_c)
    factor = (
        heating if cooling is None else np.where(cooling, cop_factor_cooling(temp_out_c), heating)
    )
    return np.minimum(np.maximum(cop_rated * factor, COP_MIN), cop_max)


def heat_sign(kind: IntArray) -> FloatArray:
    """+1 for a heat pump, −1 for an air conditioner, 0 without a thermal asset [-]."""
    return np.where(
        kind == THERMAL_HEAT_PUMP, 1.0, np.where(kind == THERMAL_AIR_CONDITIONER, -1.0, 0.0)
    )


def response(
    ua_kw_per_k: FloatArray, capacity_kwh_per_k: FloatArray, dt_h: float
) -> tuple[FloatArray, FloatArray]:
    """The building's response over one slot.

    Returns:
        (decay, gain_k_per_kwh): a = exp(−UA·Δt/C) [-] and g = (1 − a)/(UA·Δt) [K/kWh]. Without
        heat capacity (C = 0) the building follows T∞ at once (a = 0); without losses (UA = 0),
        a = 1 and g = 1/C; with neither, g = 0 (no building to heat).
    """
    has_c = capacity_kwh_per_k > 0.0
    has_ua = ua_kw_per_k > 0.0
    ratio = np.divide(
        ua_kw_per_k * dt_h,
        capacity_kwh_per_k,
        out=np.full_like(ua_kw_per_k, np.inf, dtype=np.float64),
        where=has_c,
    )
    decay = np.where(has_ua, np.exp(-np.where(has_ua, ratio, 0.0)), 1.0)
    gain_lossy = np.divide(1.0 - decay, ua_kw_per_k * dt_h, out=np.zeros_like(decay), where=has_ua)
    gain_lossless = np.divide(1.0, capacity_kwh_per_k, out=np.zeros_like(decay), where=has_c)
    return decay, np.where(has_ua, gain_lossy, gain_lossless)


def free_temperature_c(temp_c: FloatArray, temp_out_c: float, decay: FloatArray) -> FloatArray:
    """Indoor temperature at the end of the slot without heating or cooling [°C]."""
    return decay * temp_c + (1.0 - decay) * temp_out_c


def effect_k_per_kwh(
    sign: FloatArray, cop_now: FloatArray, gain_k_per_kwh: FloatArray
) -> FloatArray:
    """End-of-slot temperature change per kWh of electricity [K/kWh]: ±COP·g."""
    return sign * cop_now * gain_k_per_kwh


def next_temperature_c(
    free_c: FloatArray, electric_kwh: FloatArray, effect: FloatArray
) -> FloatArray:
    """Indoor temperature at the end of the slot [°C]: T_free + (±COP·g)·e_el."""
    return free_c + effect * electric_kwh


def energy_for_setpoint_kwh(
    free_c: FloatArray, setpoint_c: FloatArray, effect: FloatArray, e_max_kwh: FloatArray
) -> FloatArray:
    """Electric energy that ends the slot at the setpoint, clipped to [0, p_max·Δt] [kWh].

    A heat pump (effect > 0) runs only when the free-running temperature would end below the
    setpoint, an air conditioner (effect < 0) only when it would end above. Where the asset
    has no effect (none, or no building), the result is 0.
    """
    gap_k = setpoint_c - free_c
    if np.count_nonzero(effect) == effect.size:
        raw = gap_k / effect
    else:
        raw = np.divide(gap_k, effect, out=np.zeros_like(gap_k), where=effect != 0.0)
    return np.minimum(np.maximum(raw, 0.0), e_max_kwh)
