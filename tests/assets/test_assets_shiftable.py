"""Shiftable-appliance physics against hand-computed numbers."""

from __future__ import annotations

import numpy as np

from peergrid.assets import shiftable


def test_latest_start() -> None:
    latest = shiftable.latest_start_slot(np.array([2, 5]), np.array([10, 6]), np.array([3, 3]))
    # 10 − 3 = 7; a window shorter than the run starts at its earliest
    np.testing.assert_array_equal(latest, [7, 5])


def test_running_and_energy() -> None:
    start = np.array([0, 2, shiftable.NOT_STARTED, 3])
    dur = np.array([2, 3, 1, 1])
    part = np.array([0, 1, 1, 1])
    p_kw = np.array([2.0, 1.0, 5.0, 0.5])
    np.testing.assert_array_equal(shiftable.running(start, dur, 1), [True, False, False, False])
    np.testing.assert_array_equal(shiftable.running(start, dur, 3), [False, True, False, True])
    e = shiftable.energy_kwh(start, dur, part, p_kw, t=3, dt_h=0.25, n_participants=3)
    np.testing.assert_allclose(e, [0.0, 0.25 + 0.125, 0.0])


def test_must_start() -> None:
    start = np.array([shiftable.NOT_STARTED, shiftable.NOT_STARTED, 4])
    np.testing.assert_array_equal(
        shiftable.must_start(start, np.array([5, 6, 4]), 5), [True, False, False]
    )
