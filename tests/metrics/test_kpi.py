"""Community KPIs: worked examples of each definition in `peergrid.metrics.kpi`."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid.metrics import kpi


def test_jain_index_of_equal_uneven_and_empty_savings() -> None:
    assert kpi.jain_index(np.array([2.0, 2.0, 2.0])) == pytest.approx(1.0)
    assert kpi.jain_index(np.array([3.0, 0.0, 0.0])) == pytest.approx(1 / 3)
    assert kpi.jain_index(np.array([3.0, -5.0, 0.0])) == pytest.approx(1 / 3)  # clipped to 0
    assert kpi.jain_index(np.zeros(4)) == 1.0


def test_shares_peak_and_savings() -> None:
    assert kpi.self_sufficiency(100.0, 25.0) == pytest.approx(0.75)
    assert kpi.self_consumption(40.0, 10.0) == pytest.approx(0.75)
    assert np.isnan(kpi.self_consumption(0.0, 0.0))
    peak, par = kpi.peak_and_par(np.array([1.0, 3.0, 2.0]), dt_h=0.5)
    assert (peak, par) == pytest.approx((6.0, 1.5))
    np.testing.assert_allclose(
        kpi.saving_pct(np.array([10.0, -10.0, 0.0]), np.array([8.0, -12.0, 1.0])),
        [20.0, 20.0, 0.0],
    )


def test_worse_off_ignores_rounding_noise() -> None:
    saving = np.array([-1e-12, -0.01, 0.0, 5.0, np.nan])
    assert kpi.participants_worse_off(saving) == 1
