"""Network KPIs: one definition and one tolerance for summary.json and the report."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid.network.kpi import NetworkKpis, network_kpis, worst_buses

V_MIN, V_MAX, MAX_LOADING = 0.94, 1.10, 100.0
LIMITS = {"dt_h": 0.25, "v_min_pu": V_MIN, "v_max_pu": V_MAX, "max_loading_pct": MAX_LOADING}


def test_values_held_at_a_limit_are_not_violations() -> None:
    # float32 storage moves 1.10 to 1.1000000238; an envelope holding a bus at the limit, or a
    # flow at its rating, must not count, while a real excursion of 1e-5 does.
    v = np.array(
        [[V_MAX + 5e-7, V_MIN - 5e-7], [V_MAX, V_MIN], [V_MAX + 1e-5, V_MIN - 1e-5]],
        dtype=np.float32,
    )
    load = np.array([[MAX_LOADING + 1e-6], [MAX_LOADING], [MAX_LOADING + 1e-3]], dtype=np.float32)
    for dtype in (np.float32, np.float64):
        kpis = network_kpis(v.astype(dtype), load.astype(dtype), np.zeros(3), **LIMITS)
        assert (kpis.overvoltage_slots, kpis.undervoltage_slots, kpis.overload_slots) == (1, 1, 1)
        assert kpis.voltage_violation_slots == 1


def test_no_branches_and_non_converged_slots() -> None:
    v = np.array([[np.nan, np.nan], [1.0, 0.93], [1.2, np.nan]])
    kpis = network_kpis(v, np.zeros((3, 0)), np.array([1.0, np.nan, 2.0]), **LIMITS)
    assert (kpis.min_voltage_pu, kpis.max_voltage_pu) == (0.93, 1.2)
    assert (kpis.undervoltage_slots, kpis.overvoltage_slots, kpis.voltage_violation_slots) == (
        1,
        1,
        2,
    )
    assert kpis.overload_slots == 0 and np.isnan(kpis.max_loading_pct)
    assert kpis.losses_kwh == pytest.approx(0.75)
    assert kpis.curtailed_kwh == 0.0


def test_summary_figures_round_trip() -> None:
    v = np.array([[1.0123456, 0.95], [1.11, 0.9]])
    load = np.array([[50.0], [101.23456]])
    kpis = network_kpis(v, load, np.ones(2), curtailed_kwh=np.array([0.25, 0.5]), **LIMITS)
    block = kpis.summary()
    assert block == {
        "min_voltage_pu": 0.9,
        "max_voltage_pu": 1.11,
        "voltage_violation_slots": 1,
        "undervoltage_slots": 1,
        "overvoltage_slots": 1,
        "overload_slots": 1,
        "max_loading_pct": 101.235,
        "losses_kwh": 0.5,
    }
    again = NetworkKpis.from_summary({**block, "curtailed_kwh": 0.75, "max_loading_pct": None}, 2)
    assert again.n_slots == 2 and again.curtailed_kwh == 0.75 and np.isnan(again.max_loading_pct)
    assert again.overload_slots == kpis.overload_slots


def test_worst_buses_are_ranked_with_ties_in_feeder_order() -> None:
    v = np.array(
        [
            [1.00, 1.05, 1.02, 1.05, 0.97],
            [1.01, 1.00, 1.08, 0.95, 0.97],
        ]
    )
    np.testing.assert_array_equal(worst_buses(v, 3, high=True), [2, 1, 3])
    np.testing.assert_array_equal(worst_buses(v, 10, high=False), [3, 4, 0, 1, 2])
    with_nan = v.copy()
    with_nan[:, 2] = np.nan  # a bus with no value ranks last, and no warning is raised
    np.testing.assert_array_equal(worst_buses(with_nan, 5, high=True), [1, 3, 0, 4, 2])
