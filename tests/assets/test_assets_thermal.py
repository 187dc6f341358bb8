"""Thermal physics: hand-computed numbers and a cross-check against a fine-step integration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peergrid.assets import thermal
from peergrid.assets.params import THERMAL_AIR_CONDITIONER, THERMAL_HEAT_PUMP


def _a(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def test_cop_carnot_fraction() -> None:
    kind = np.array([THERMAL_HEAT_PUMP] * 4 + [THERMAL_AIR_CONDITIONER] * 3)
    rated = _a(3.5, 3.5, 3.5, 3.5, 3.0, 3.0, 3.0)
    temps = [7.0, -10.0, 20.0, 30.0, 35.0, 45.0, 20.0]
    got = [float(thermal.cop(rated[i : i + 1], kind[i : i + 1], t)[0]) for i, t in enumerate(temps)]
    # heating: 3.5·28/(35 − T), lift at least 10 K, clipped at 2·3.5
    # cooling: 3.0·20/(T − 15), lift at least 10 K, clipped at 2·3.0
    expected = [3.5, 3.5 * 28 / 45, 3.5 * 28 / 15, 7.0, 3.0, 3.0 * 20 / 30, 6.0]
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize("with_ac", [True, False])
def test_cop_at_equals_cop_bit_for_bit(with_ac: bool) -> None:
    kind = np.array([THERMAL_HEAT_PUMP, THERMAL_AIR_CONDITIONER, 0, THERMAL_HEAT_PUMP])
    if not with_ac:
        kind[1] = THERMAL_HEAT_PUMP
    rated = _a(3.5, 3.0, 1.0, 4.2)
    cooling = kind == THERMAL_AIR_CONDITIONER
    for t in np.linspace(-25.0, 45.0, 141):
        want = thermal.cop(rated, kind, float(t))
        got = thermal.cop_at(
            rated, thermal.COP_MAX_FACTOR * rated, cooling if cooling.any() else None, float(t)
        )
        assert np.array_equal(got, want)


def test_cop_never_below_one() -> None:
    assert thermal.cop(_a(1.5), np.array([THERMAL_HEAT_PUMP]), -60.0)[0] == 1.0


def test_response_numbers() -> None:
    decay, gain = thermal.response(_a(0.2, 0.0, 0.2), _a(10.0, 10.0, 0.0), 1.0)
    assert decay[0] == pytest.approx(math.exp(-0.02))
    assert gain[0] == pytest.approx((1 - math.exp(-0.02)) / 0.2)
    # no losses: T rises by 1/C per kWh of heat; no heat capacity: T follows T∞ at once
    assert (decay[1], gain[1]) == (1.0, pytest.approx(0.1))
    assert (decay[2], gain[2]) == (0.0, pytest.approx(5.0))


def test_setpoint_energy_hand_computed() -> None:
    decay, gain = thermal.response(_a(0.2), _a(10.0), 1.0)
    free = thermal.free_temperature_c(_a(20.0), 0.0, decay)
    assert free[0] == pytest.approx(20 * math.exp(-0.02))
    effect = thermal.effect_k_per_kwh(_a(1.0), _a(3.5), gain)
    e = thermal.energy_for_setpoint_kwh(free, _a(20.0), effect, _a(3.0))
    assert e[0] == pytest.approx((20.0 - free[0]) / (3.5 * gain[0]))
    assert e[0] == pytest.approx(1.14286, rel=1e-4)
    assert thermal.next_temperature_c(free, e, effect)[0] == pytest.approx(20.0)
    # too little power: clipped; warm enough already: nothing
    assert thermal.energy_for_setpoint_kwh(free, _a(25.0), effect, _a(3.0))[0] == 3.0
    assert thermal.energy_for_setpoint_kwh(free, _a(15.0), effect, _a(3.0))[0] == 0.0


def test_air_conditioner_cools() -> None:
    decay, gain = thermal.response(_a(0.2), _a(10.0), 0.5)
    free = thermal.free_temperature_c(_a(26.0), 35.0, decay)
    effect = thermal.effect_k_per_kwh(_a(-1.0), _a(3.0), gain)
    e = thermal.energy_for_setpoint_kwh(free, _a(25.0), effect, _a(5.0))
    assert e[0] > 0.0
    assert thermal.next_temperature_c(free, e, effect)[0] == pytest.approx(25.0)
    assert thermal.energy_for_setpoint_kwh(free, _a(27.0), effect, _a(5.0))[0] == 0.0


def test_no_thermal_asset_draws_nothing() -> None:
    e = thermal.energy_for_setpoint_kwh(_a(15.0), _a(20.0), _a(0.0), _a(0.0))
    assert e[0] == 0.0


def test_exact_discretisation_matches_fine_integration() -> None:
    """1R1C over one slot with constant heating, against 200,000 explicit Euler sub-steps."""
    ua, cap, dt_h, t_out, t0, p_kw, cop = 0.25, 8.0, 1.0, -5.0, 19.0, 2.0, 2.7
    decay, gain = thermal.response(_a(ua), _a(cap), dt_h)
    free = thermal.free_temperature_c(_a(t0), t_out, decay)
    effect = thermal.effect_k_per_kwh(_a(1.0), _a(cop), gain)
    exact = thermal.next_temperature_c(free, _a(p_kw * dt_h), effect)[0]
    n = 200_000
    h = dt_h / n
    temp = t0
    for _ in range(n):
        temp += h * (-ua * (temp - t_out) + cop * p_kw) / cap
    assert exact == pytest.approx(temp, abs=1e-5)


def test_heat_sign() -> None:
    np.testing.assert_array_equal(
        thermal.heat_sign(np.array([0, THERMAL_HEAT_PUMP, THERMAL_AIR_CONDITIONER])),
        [0.0, 1.0, -1.0],
    )
