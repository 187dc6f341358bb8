"""`ml`'s features are per (base issue, target row, participant) triple: a triple's row is the
same bit for bit however many triples, of whichever base issues, are built with it."""

from __future__ import annotations

import numpy as np

from peergrid.forecast.base import ForecastData
from peergrid.forecast.ml_features import (
    Targets,
    _nanmean0,
    demand_features,
    feature_arrays,
    pv_features,
)
from peergrid.forecast.persistence import smart_persistence_index

DAY = 96


def test_a_triple_s_features_do_not_depend_on_the_others(small: ForecastData) -> None:
    k_last = smart_persistence_index(
        small.pv_kwh, small.pv_clearsky_kwh, window=4, daylight_frac=0.1
    )
    prep = feature_arrays(small, daylight_frac=0.05, k_last=k_last)
    # two base issues (12:00 on two days), target rows up to a day and a half ahead
    bases = [small.n_history - 12 * 4, small.n_history + DAY + 48]
    base_row = np.concatenate([np.full(150, b, dtype=np.int64) for b in bases])
    row = np.concatenate([np.arange(b, b + 150, dtype=np.int64) for b in bases])
    everyone = Targets.every(base_row, row, np.arange(small.n_participants, dtype=np.int64))
    with_pv = Targets.every(base_row, row, np.array([0, 1], dtype=np.int64))
    x_all, level_all = demand_features(small, prep, everyone)
    pv_all = pv_features(small, prep, with_pv)
    for m in range(0, everyone.n_triples, 7):
        one = everyone.select(np.array([m]))
        x, level = demand_features(small, prep, one)
        np.testing.assert_array_equal(x[0], x_all[m])
        assert level[0] == level_all[m]
    for m in range(0, with_pv.n_triples, 5):
        np.testing.assert_array_equal(
            pv_features(small, prep, with_pv.select(np.array([m])))[0], pv_all[m]
        )


def test_nanmean_sums_one_row_after_another_in_any_layout() -> None:
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((21, 500)) * rng.uniform(0.0, 10.0, (21, 500))
    stack[rng.random(stack.shape) < 0.2] = np.nan
    expected = np.empty(500)
    for j in range(500):
        values = [float(v) for v in stack[:, j] if not np.isnan(v)]
        total = values[0]
        for v in values[1:]:
            total += v
        expected[j] = total / len(values)
    np.testing.assert_array_equal(_nanmean0(np.ascontiguousarray(stack)), expected)
    np.testing.assert_array_equal(_nanmean0(np.asfortranarray(stack)), expected)
    np.testing.assert_array_equal(_nanmean0(stack[:, :1]), expected[:1])
