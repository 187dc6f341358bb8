"""The shared HiGHS adapter (`peergrid.optim.highs`)."""

from __future__ import annotations

import numpy as np

from peergrid.optim.highs import LpModel


def test_model_sums_duplicate_entries_and_skips_absent_columns() -> None:
    m = LpModel()
    x = m.cols(np.array([True, False, True]), 0.0, 1.0, 1.0)
    assert list(x) == [0, -1, 1]
    r = m.rows(np.ones(1, dtype=bool), 1.0, 1.0)
    m.coef(r, x, 1.0)
    m.coef(r, x[:1], 2.0)  # duplicate (row 0, col 0): summed to 3
    lp, integer_cols, nnz = m.lp()
    assert integer_cols.size == 0 and nnz == 2
    assert list(lp.a_matrix_.start_) == [0, 1, 2]
    assert list(lp.a_matrix_.value_) == [3.0, 1.0]
