"""Home-battery physics against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid.assets import battery
from peergrid.assets.params import BatteryParams


def _a(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def test_charge_limit_power_and_room() -> None:
    # 3 kW for half an hour = 1.5 kWh; 9.5 of 10 kWh stored leaves room for 0.5/0.9 kWh AC
    limit = battery.charge_limit_kwh(
        _a(5.0, 9.5, 10.0, 10.2),
        _a(10.0, 10.0, 10.0, 10.0),
        _a(3.0, 3.0, 3.0, 3.0),
        _a(0.9, 0.9, 0.9, 0.9),
        0.5,
    )
    np.testing.assert_allclose(limit, [1.5, 0.5 / 0.9, 0.0, 0.0])


def test_discharge_limit_power_and_soc_min() -> None:
    # (1.5 − 1.0)·0.95 = 0.475 kWh AC above soc_min; a state below soc_min gives nothing
    limit = battery.discharge_limit_kwh(
        _a(5.0, 1.5, 0.5), _a(1.0, 1.0, 1.0), _a(3.0, 3.0, 3.0), _a(0.95, 0.95, 0.95), 0.5
    )
    np.testing.assert_allclose(limit, [1.5, 0.475, 0.0])


def test_dispatch_clips_nets_and_updates() -> None:
    kw = dict(
        soc_min_kwh=_a(1.0, 1.0, 1.0),
        soc_max_kwh=_a(10.0, 10.0, 10.0),
        power_kw=_a(3.0, 3.0, 3.0),
        efficiency_charge=_a(0.9, 0.9, 0.9),
        efficiency_discharge=_a(0.95, 0.95, 0.95),
        dt_h=0.5,
    )
    flows = battery.dispatch(_a(5.0, 5.0, 1.5), _a(2.0, 1.0, 0.0), _a(0.0, 0.4, 1.0), **kw)
    # 2 kWh requested → 1.5 (power); 1 − 0.4 netted to 0.6 charge; 1 kWh asked → 0.475
    np.testing.assert_allclose(flows.charge_kwh, [1.5, 0.6, 0.0])
    np.testing.assert_allclose(flows.discharge_kwh, [0.0, 0.0, 0.475])
    np.testing.assert_allclose(flows.soc_kwh, [5.0 + 0.9 * 1.5, 5.0 + 0.9 * 0.6, 1.0])


def test_next_soc_identity() -> None:
    soc = battery.next_soc_kwh(_a(4.0), _a(2.0), _a(0.0), _a(0.9), _a(0.9))
    assert soc[0] == pytest.approx(5.8)
    soc = battery.next_soc_kwh(_a(4.0), _a(0.0), _a(0.9), _a(0.9), _a(0.9))
    assert soc[0] == pytest.approx(3.0)


def test_absent_battery_does_nothing() -> None:
    params = BatteryParams(
        capacity_kwh=_a(0.0),
        power_kw=_a(0.0),
        efficiency_charge=_a(1.0),
        efficiency_discharge=_a(1.0),
        soc_min_kwh=_a(0.0),
        soc_max_kwh=_a(0.0),
        soc_initial_kwh=_a(0.0),
    )
    flows = battery.dispatch_params(params, _a(0.0), _a(5.0), _a(0.0), 0.25)
    assert flows.charge_kwh[0] == 0.0
    assert flows.discharge_kwh[0] == 0.0
    assert flows.soc_kwh[0] == 0.0
