"""Disclosure control of published aggregates: minimum group size and dominance.

Every number the community publishes is a *cell*: the sum of the contributions of the households
that take part in it (a slot's community load, a group's traded volume, ...). A cell is released
only when

- at least `min_households` households contribute to it (a household contributes iff its
  contribution is nonzero), and
- no household dominates it: the largest absolute contribution is at most `dominance_share` of
  the sum of absolute contributions (the (1, p) dominance rule with p = `dominance_share`).

Otherwise the cell is suppressed: its value is NaN, `suppressed` is True and `reason` says why
(`Reason.TOO_FEW_HOUSEHOLDS` takes precedence over `Reason.DOMINATED`). Suppressed cells are
marked, never dropped, so a table keeps its shape and a reader sees what was withheld and why.
Absolute values make the dominance rule meaningful for signed series (`net_kwh`): an exporter
and an importer that cancel out still each count for their full size.

Defaults (k = 10 households, dominance > 50 %) follow the issue; docs/privacy.md gives the
reasoning. This module is pure numpy: no loop over cells or households.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


class Reason(IntEnum):
    """Why a cell was suppressed; stored as int8 codes in `Disclosed.reason`."""

    RELEASED = 0
    TOO_FEW_HOUSEHOLDS = 1
    DOMINATED = 2


#: Human-readable label of each `Reason`, indexed by its code.
REASON_LABELS: Final[tuple[str, ...]] = ("released", "too few households", "dominated")

#: What a table shows in place of a suppressed cell, indexed by its `Reason` code.
SUPPRESSION_MARKERS: Final[tuple[str, ...]] = (
    "",
    "suppressed (n<k)",
    "suppressed (dominance)",
)


@dataclass(frozen=True)
class DisclosureRule:
    """Thresholds of disclosure control.

    Attributes:
        min_households: a cell needs at least this many contributing households [-], >= 1.
        dominance_share: a cell is suppressed when one household's absolute contribution exceeds
            this share of the cell's sum of absolute contributions [-], in (0, 1]; 1 disables
            the dominance rule.
    """

    min_households: int = 10
    dominance_share: float = 0.5

    def __post_init__(self) -> None:
        k = self.min_households
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"min_households must be an integer >= 1, got {k!r}")
        share = self.dominance_share
        if (
            isinstance(share, bool)
            or not isinstance(share, float | int | np.floating | np.integer)
            or not 0.0 < float(share) <= 1.0
        ):
            raise ValueError(f"dominance_share must be a number in (0, 1], got {share!r}")


@dataclass(frozen=True, eq=False)
class Disclosed:
    """Published cells after disclosure control; every array has the cells' shape.

    Attributes:
        value: the cell's sum of contributions where released, NaN where suppressed [unit of
            the input, e.g. kWh].
        suppressed: True where the cell is withheld.
        reason: `Reason` codes as int8 (0 released, 1 too few households, 2 dominated).
        n_households: number of contributing (nonzero) households per cell [-].
        rule: the rule that was applied.
    """

    reason_labels: ClassVar[tuple[str, ...]] = REASON_LABELS

    value: FloatArray
    suppressed: BoolArray
    reason: NDArray[np.int8]
    n_households: IntArray
    rule: DisclosureRule

    @property
    def n_suppressed(self) -> int:
        """Number of suppressed cells."""
        return int(np.count_nonzero(self.suppressed))


def _finite_float_array(values: ArrayLike, name: str, ndim: int) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _apply_rule(
    total: FloatArray,
    n_households: IntArray,
    max_abs: FloatArray,
    sum_abs: FloatArray,
    rule: DisclosureRule,
) -> Disclosed:
    """Disclosure control from per-cell statistics (any common shape)."""
    too_few = n_households < rule.min_households
    dominated = max_abs > float(rule.dominance_share) * sum_abs
    reason = np.where(
        too_few, Reason.TOO_FEW_HOUSEHOLDS, np.where(dominated, Reason.DOMINATED, Reason.RELEASED)
    ).astype(np.int8)
    suppressed = reason != Reason.RELEASED
    return Disclosed(
        value=np.where(suppressed, np.nan, total),
        suppressed=suppressed,
        reason=reason,
        n_households=n_households.astype(np.int64),
        rule=rule,
    )


def disclose(contributions: ArrayLike, rule: DisclosureRule | None = None) -> Disclosed:
    """Apply disclosure control to cells given every household's contribution to every cell.

    Args:
        contributions: (H, C) contribution of household h to cell c [any unit, e.g. kWh]; zero
            means "does not contribute". Must be finite.
        rule: thresholds; `DisclosureRule()` (k = 10, dominance > 50 %) when None.

    Returns:
        `Disclosed` with (C,) arrays; a released value is `contributions.sum(axis=0)` exactly.
    """
    rule = DisclosureRule() if rule is None else rule
    x = _finite_float_array(contributions, "contributions", ndim=2)
    magnitude = np.abs(x)
    return _apply_rule(
        total=x.sum(axis=0),
        n_households=np.count_nonzero(x, axis=0).astype(np.int64),
        max_abs=magnitude.max(axis=0, initial=0.0),
        sum_abs=magnitude.sum(axis=0),
        rule=rule,
    )


def disclose_profile(
    values_tp: ArrayLike,
    rule: DisclosureRule | None = None,
    groups: ArrayLike | None = None,
) -> Disclosed:
    """Publish per-slot community totals of a (T, P) household series under disclosure control.

    Used for the community load and generation profiles and the traded volume per slot.

    Args:
        values_tp: (T, P) per-household series, e.g. `demand_kwh` [kWh]. Must be finite.
        rule: thresholds; `DisclosureRule()` when None.
        groups: optional (P,) integer group label of each household. Without it the cells are
            the T slots; with it they are slots × groups, shape (T, G), whose columns are the
            distinct labels in ascending order (`np.unique(groups)`).

    Returns:
        `Disclosed` with (T,) or (T, G) arrays.
    """
    rule = DisclosureRule() if rule is None else rule
    x = _finite_float_array(values_tp, "values_tp", ndim=2)
    if groups is None:
        return disclose(x.T, rule)
    labels = np.asarray(groups)
    if labels.shape != (x.shape[1],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"groups must be a ({x.shape[1]},) integer array (one label per household), "
            f"got shape {labels.shape} and dtype {labels.dtype}"
        )
    if x.shape[1] == 0:
        empty = np.zeros((x.shape[0], 0))
        return _apply_rule(empty, empty.astype(np.int64), empty, empty, rule)
    # households sorted by group so every group is one contiguous block of columns; reduceat then
    # reduces each block (np.unique guarantees no empty group, where reduceat would misbehave)
    _, group_index = np.unique(labels, return_inverse=True)
    order = np.argsort(group_index, kind="stable")
    starts = np.flatnonzero(np.diff(group_index[order], prepend=-1))
    xs = x[:, order]
    magnitude = np.abs(xs)
    return _apply_rule(
        total=np.add.reduceat(xs, starts, axis=1),
        n_households=np.add.reduceat((xs != 0.0).astype(np.int64), starts, axis=1),
        max_abs=np.maximum.reduceat(magnitude, starts, axis=1),
        sum_abs=np.add.reduceat(magnitude, starts, axis=1),
        rule=rule,
    )


def render_cells(disclosed: Disclosed, *, decimals: int = 3) -> NDArray[np.str_]:
    """Text for a table: released cells formatted with `decimals` decimals, suppressed cells as
    their marker ("suppressed (n<k)" or "suppressed (dominance)"). Same shape as the cells."""
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    shown = np.where(disclosed.suppressed, 0.0, disclosed.value)
    text = np.char.mod(f"%.{decimals}f", shown)
    markers = np.asarray(SUPPRESSION_MARKERS)[disclosed.reason]
    return np.where(disclosed.suppressed, markers, text)


def suppression_marker(reason: int) -> str:
    """The marker a table shows for a cell with this `Reason` code ("" when released)."""
    return SUPPRESSION_MARKERS[Reason(reason)]


__all__ = [
    "REASON_LABELS",
    "SUPPRESSION_MARKERS",
    "Disclosed",
    "DisclosureRule",
    "Reason",
    "disclose",
    "disclose_profile",
    "render_cells",
    "suppression_marker",
]
