"""The one place that talks to HiGHS: sparse LP building, a silent solver, the solution.

Every linear programme of peergrid (the coordinator's schedule, the least core of its cost game,
the bilateral market's centralised reference) is built here and solved here:

- `LpModel` collects columns, rows and coefficients as numpy blocks over masks (no Python loop
  over variables) and turns them into one column-wise sparse `highspy.HighsLp`. A column or
  row index of −1 means "absent", so blocks over whole (slot, participant) arrays can leave
  holes; `column_values` reads a solution back in the same convention.
- `LpSolver` owns one `highspy.Highs` instance: it passes the model, marks integer columns,
  sets options, runs, and returns the `Solution` as numpy arrays.
- `new_highs` makes an instance that prints nothing, not even the banner of the first one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import highspy
import numpy as np
from numpy.typing import NDArray

#: A HiGHS option's value.
OptionValue = bool | int | float | str
#: The model `LpModel.lp` builds and `LpSolver` solves.
HighsLp = highspy.HighsLp


class LpModel:
    """Columns, rows and coefficients collected as numpy blocks, then one CSC matrix."""

    def __init__(self) -> None:
        self.n_cols = 0
        self.n_rows = 0
        self._lb: list[NDArray[np.float64]] = []
        self._ub: list[NDArray[np.float64]] = []
        self._cost: list[NDArray[np.float64]] = []
        self._int: list[NDArray[np.int64]] = []
        self._lo: list[NDArray[np.float64]] = []
        self._hi: list[NDArray[np.float64]] = []
        self._r: list[NDArray[np.int64]] = []
        self._c: list[NDArray[np.int64]] = []
        self._v: list[NDArray[np.float64]] = []

    def cols(
        self,
        mask: NDArray[np.bool_],
        lb: float | NDArray[np.float64],
        ub: float | NDArray[np.float64],
        cost: float | NDArray[np.float64],
        *,
        integer: bool = False,
    ) -> NDArray[np.int64]:
        """New columns where `mask` is true; returns their indices in mask's shape, −1 elsewhere.
        Bounds and costs broadcast to the mask's shape."""
        n = int(np.count_nonzero(mask))
        idx = np.full(mask.shape, -1, dtype=np.int64)
        idx[mask] = self.n_cols + np.arange(n, dtype=np.int64)
        self.n_cols += n
        f = np.float64
        self._lb.append(np.broadcast_to(np.asarray(lb, dtype=f), mask.shape)[mask])
        self._ub.append(np.broadcast_to(np.asarray(ub, dtype=f), mask.shape)[mask])
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=f), mask.shape)[mask])
        self._int.append(np.full(n, 1 if integer else 0, dtype=np.int64))
        return idx

    def rows(
        self,
        mask: NDArray[np.bool_],
        lo: float | NDArray[np.float64],
        hi: float | NDArray[np.float64],
    ) -> NDArray[np.int64]:
        """New rows lo <= a·x <= hi where `mask` is true (indices, −1 elsewhere)."""
        n = int(np.count_nonzero(mask))
        idx = np.full(mask.shape, -1, dtype=np.int64)
        idx[mask] = self.n_rows + np.arange(n, dtype=np.int64)
        self.n_rows += n
        f = np.float64
        self._lo.append(np.broadcast_to(np.asarray(lo, dtype=f), mask.shape)[mask])
        self._hi.append(np.broadcast_to(np.asarray(hi, dtype=f), mask.shape)[mask])
        return idx

    def coef(
        self, row: NDArray[np.int64], col: NDArray[np.int64], value: float | NDArray[np.float64]
    ) -> None:
        """Coefficients a[row, col] = value, broadcast; pairs with a −1 index are skipped."""
        r, c, v = np.broadcast_arrays(row, col, np.asarray(value, dtype=np.float64))
        keep = (r >= 0) & (c >= 0)
        self._r.append(r[keep].astype(np.int64))
        self._c.append(c[keep].astype(np.int64))
        self._v.append(v[keep].astype(np.float64))

    def lp(self) -> tuple[HighsLp, NDArray[np.int64], int]:
        """The HiGHS model (duplicates summed, zeros dropped), its integer columns, nnz."""
        cat = np.concatenate
        r, c, v = cat(self._r), cat(self._c), cat(self._v)
        key = c * max(self.n_rows, 1) + r
        uniq, inverse = np.unique(key, return_inverse=True)
        if uniq.size < key.size:  # HiGHS rejects duplicate entries: sum them
            v = np.bincount(inverse, weights=v, minlength=uniq.size).astype(np.float64)
        else:
            v = v[np.argsort(key, kind="stable")]
        nz = v != 0.0
        uniq, v = uniq[nz], v[nz]
        col = uniq // max(self.n_rows, 1)
        row = uniq - col * max(self.n_rows, 1)
        start = np.zeros(self.n_cols + 1, dtype=np.int32)
        np.cumsum(np.bincount(col, minlength=self.n_cols), out=start[1:])
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_cols
        lp.num_row_ = self.n_rows
        lp.col_cost_ = cat(self._cost)
        lp.col_lower_ = cat(self._lb)
        lp.col_upper_ = cat(self._ub)
        lp.row_lower_ = cat(self._lo) if self._lo else np.zeros(0)
        lp.row_upper_ = cat(self._hi) if self._hi else np.zeros(0)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = self.n_cols
        lp.a_matrix_.num_row_ = self.n_rows
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = row.astype(np.int32)
        lp.a_matrix_.value_ = v
        integer_cols: NDArray[np.int64] = np.flatnonzero(cat(self._int)).astype(np.int64)
        return lp, integer_cols, int(v.size)


def column_values(x: NDArray[np.float64], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    """Solution values `x` of the columns `idx`, 0 where idx is −1 (absent)."""
    out: NDArray[np.float64] = np.where(idx >= 0, x[np.maximum(idx, 0)], 0.0)
    return out


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance.

    The first `Highs()` of a process prints a copyright banner on the C-level stdout before any
    option can be set, which would end up in the middle of the CLI's output (or its JSON). The
    construction therefore runs with file descriptor 1 pointed at the null device; where fd 1
    cannot be duplicated the banner is let through.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        h = highspy.Highs()  # type: ignore[no-untyped-call]
    else:
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()  # type: ignore[no-untyped-call]
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


@dataclass(frozen=True, eq=False)
class Solution:
    """What HiGHS returned, as numpy arrays.

    Attributes:
        status: the model status as HiGHS spells it ("Optimal", "Time limit reached", ...).
        value_valid, dual_valid: whether HiGHS has primal values / duals.
        col_value: primal value of every column.
        row_dual, col_dual: dual of every row, reduced cost of every column.
        objective: the objective's value.
    """

    status: str
    value_valid: bool
    dual_valid: bool
    col_value: NDArray[np.float64]
    row_dual: NDArray[np.float64]
    col_dual: NDArray[np.float64]
    objective: float


class LpSolver:
    """One HiGHS instance holding one model (`LpModel.lp`), silent (`new_highs`)."""

    def __init__(
        self,
        lp: HighsLp,
        options: Mapping[str, OptionValue] | None = None,
        integer_cols: NDArray[np.int64] | None = None,
    ) -> None:
        """Pass `lp`, mark `integer_cols` integer and set the HiGHS `options`."""
        self._highs = new_highs()
        self._highs.passModel(lp)
        if integer_cols is not None and integer_cols.size:
            self._highs.changeColsIntegrality(
                integer_cols.size,
                integer_cols.astype(np.int32),
                np.ones(integer_cols.size, dtype=np.uint8),
            )
        self.set_options(options or {})

    def set_options(self, options: Mapping[str, OptionValue]) -> None:
        for name, value in options.items():
            self._highs.setOptionValue(name, value)

    def run(self) -> str:
        """Solve; returns the model status as HiGHS spells it."""
        self._highs.run()
        return str(self._highs.modelStatusToString(self._highs.getModelStatus()))

    def solution(self) -> Solution:
        """The last run's solution."""
        h = self._highs
        sol = h.getSolution()
        return Solution(
            status=str(h.modelStatusToString(h.getModelStatus())),
            value_valid=bool(sol.value_valid),
            dual_valid=bool(sol.dual_valid),
            col_value=np.asarray(sol.col_value, dtype=np.float64),
            row_dual=np.asarray(sol.row_dual, dtype=np.float64),
            col_dual=np.asarray(sol.col_dual, dtype=np.float64),
            objective=float(h.getInfo().objective_function_value),
        )


def solve_optimal(lp: HighsLp, options: Mapping[str, OptionValue] | None = None) -> Solution:
    """Solve `lp` with `options`; raise RuntimeError unless HiGHS finds it optimal."""
    solver = LpSolver(lp, options)
    status = solver.run()
    if status != "Optimal":
        raise RuntimeError(f"HiGHS: {status}")
    return solver.solution()
