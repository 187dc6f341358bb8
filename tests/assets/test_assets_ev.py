"""EV physics against hand-computed numbers."""

from __future__ import annotations

import numpy as np

from peergrid.assets import ev


def _a(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def test_trip_clamps_at_zero_and_reports_unserved() -> None:
    soc, unserved = ev.apply_trip(_a(10.0, 10.0, 3.0), _a(4.0, 12.0, 0.0))
    np.testing.assert_allclose(soc, [6.0, 0.0, 3.0])
    np.testing.assert_allclose(unserved, [0.0, 2.0, 0.0])


def test_min_charge_keeps_target_reachable() -> None:
    # 10 → 40 kWh at η_c = 0.9 needs 33.33 kWh AC; at 10 kW for 1 h slots the later n − 1
    # slots give 10 kWh each
    n = np.array([1, 3, 4, 5, 0], dtype=np.int64)
    e = ev.min_charge_kwh(
        _a(10.0, 10.0, 10.0, 10.0, 10.0),
        _a(40.0, 40.0, 40.0, 40.0, 40.0),
        power_kw=_a(10.0, 10.0, 10.0, 10.0, 10.0),
        efficiency_charge=_a(0.9, 0.9, 0.9, 0.9, 0.9),
        slots_to_departure=n,
        dt_h=1.0,
    )
    np.testing.assert_allclose(e, [10.0, 10.0, 30 / 0.9 - 30.0, 0.0, 10.0])


def test_charge_bounds_full_and_minimum() -> None:
    e_min, e_full = ev.charge_bounds_kwh(
        _a(38.0, 45.0),
        _a(40.0, 40.0),
        power_kw=_a(11.0, 11.0),
        efficiency_charge=_a(0.8, 0.8),
        slots_to_departure=np.array([2, 2]),
        dt_h=0.25,
    )
    # 2 kWh to store takes 2.5 kWh AC; the one later slot can take 11·0.25 = 2.75 kWh, so
    # nothing is needed now; 45 kWh is past the target already
    np.testing.assert_allclose(e_full, [2.5, 0.0])
    np.testing.assert_allclose(e_min, [0.0, 0.0])


def test_v2h_floor() -> None:
    floor = ev.v2h_floor_kwh(
        _a(40.0, 40.0, 40.0),
        _a(5.0, 5.0, 5.0),
        power_kw=_a(10.0, 10.0, 0.0),
        efficiency_charge=_a(0.9, 0.9, 0.9),
        slots_to_departure=np.array([3, 10, 3]),
        dt_h=1.0,
    )
    # 40 − 0.9·2·10 = 22; far from departure the floor is soc_min; without a charger it is
    # the target itself
    np.testing.assert_allclose(floor, [22.0, 5.0, 40.0])


def test_dispatch_only_while_plugged_and_v2h() -> None:
    kw = dict(
        capacity_kwh=_a(50.0, 50.0, 50.0),
        floor_kwh=_a(20.0, 20.0, 20.0),
        power_kw=_a(8.0, 8.0, 8.0),
        efficiency_charge=_a(0.9, 0.9, 0.9),
        efficiency_discharge=_a(0.9, 0.9, 0.9),
        dt_h=0.5,
    )
    flows = ev.dispatch(
        _a(30.0, 30.0, 30.0),
        _a(0.0, 5.0, 0.0),
        _a(3.0, 0.0, 3.0),
        plugged=np.array([True, False, True]),
        v2h=np.array([True, True, False]),
        **kw,
    )
    np.testing.assert_allclose(flows.discharge_kwh, [3.0, 0.0, 0.0])
    np.testing.assert_allclose(flows.charge_kwh, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(flows.soc_kwh, [30.0 - 3.0 / 0.9, 30.0, 30.0])
    # the floor limits v2h: 21 − 20 = 1 kWh stored → 0.9 kWh AC
    flows = ev.dispatch(
        _a(21.0),
        _a(0.0),
        _a(3.0),
        plugged=np.array([True]),
        v2h=np.array([True]),
        capacity_kwh=_a(50.0),
        floor_kwh=_a(20.0),
        power_kw=_a(8.0),
        efficiency_charge=_a(0.9),
        efficiency_discharge=_a(0.9),
        dt_h=0.5,
    )
    np.testing.assert_allclose(flows.discharge_kwh, [0.9])


def test_session_slots() -> None:
    plugged = np.array(
        [[True, True, True, False], [True, False, True, False], [False, False, True, False]]
    )
    np.testing.assert_array_equal(ev.session_slots(plugged), [2, 1, 3, 0])


def test_reachable_target() -> None:
    np.testing.assert_allclose(
        ev.reachable_target_kwh(_a(60.0, 30.0), _a(50.0, 50.0)), [50.0, 30.0]
    )
