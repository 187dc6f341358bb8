"""The privacy budget of a run: every differentially private release spends from it.

Composition is *basic sequential composition*: releases that are (ε_i, δ_i)-DP about the same
households are together (Σ ε_i, Σ δ_i)-DP. A run sets a total (ε, δ); `PrivacyBudget.spend`
returns the budget with one more release recorded, or raises `BudgetExceeded` when the release
would take the spent ε or δ above the total. Advanced composition or zCDP accounting would
give a tighter total for many releases; basic composition is the simple, always-valid bound,
and a run publishes few DP releases (a handful of profiles), where the difference is small.

The budget is a value: `spend` never mutates, so a refused release leaves the caller's budget
exactly as it was. `to_json` / `from_json` store it with the run.

Exact accounting: each ε and δ is accounted as the decimal number its float prints as (the
shortest repr, which round-trips), summed exactly with `fractions.Fraction`. So ten releases of
ε = 0.1 spend exactly 1 and fit a budget of 1.0, with no tolerance that repeated small spends
could exploit. (The binary float 0.1 exceeds 1/10 by 5.6e-18; the mechanisms are calibrated to
the float, so the true loss can exceed the accounted one by that relative 1e-16, far below any
meaningful difference in ε.)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Final, Literal, get_args

from peergrid.errors import PeergridError

Mechanism = Literal["laplace", "gaussian"]
MECHANISMS: Final[tuple[str, ...]] = get_args(Mechanism)

#: Identifies the JSON document (bump the number when its fields change).
BUDGET_SCHEMA: Final = "peergrid.privacy_budget/1"


class BudgetExceeded(PeergridError, ValueError):
    """A release would take the spent privacy budget above the run's total; it was refused."""


def _exact(x: float) -> Fraction:
    """The decimal number `x` prints as, exactly (see module docstring)."""
    return Fraction(repr(float(x)))


def _check_epsilon(epsilon: float, name: str, *, allow_zero: bool) -> None:
    ok = isinstance(epsilon, float | int) and not isinstance(epsilon, bool)
    if not ok or not math.isfinite(epsilon) or epsilon < 0.0 or (epsilon == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {epsilon!r}")


def _check_delta(delta: float, name: str) -> None:
    ok = isinstance(delta, float | int) and not isinstance(delta, bool)
    if not ok or not 0.0 <= delta < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {delta!r}")


@dataclass(frozen=True)
class BudgetEntry:
    """One release recorded in a budget.

    Attributes:
        label: what was released, e.g. "community_load_profile".
        epsilon: its ε [-], > 0.
        delta: its δ [-], in [0, 1); 0 for the Laplace mechanism.
        mechanism: "laplace" or "gaussian".
    """

    label: str
    epsilon: float
    delta: float
    mechanism: Mechanism

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"label must be a non-empty string, got {self.label!r}")
        _check_epsilon(self.epsilon, "epsilon", allow_zero=False)
        _check_delta(self.delta, "delta")
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")


@dataclass(frozen=True)
class PrivacyBudget:
    """A run's total (ε, δ) and the releases spent from it (basic sequential composition).

    Attributes:
        epsilon_total: the most ε all releases of the run may spend together [-], >= 0.
        delta_total: the most δ all releases may spend together [-], in [0, 1); 0 allows only
            pure ε-DP (Laplace) releases.
        releases: the releases spent so far, in order.
    """

    epsilon_total: float
    delta_total: float = 0.0
    releases: tuple[BudgetEntry, ...] = ()

    def __post_init__(self) -> None:
        _check_epsilon(self.epsilon_total, "epsilon_total", allow_zero=True)
        _check_delta(self.delta_total, "delta_total")
        if not isinstance(self.releases, tuple) or not all(
            isinstance(r, BudgetEntry) for r in self.releases
        ):
            raise ValueError("releases must be a tuple of BudgetEntry")
        eps_spent, delta_spent = self._spent_exact()
        if eps_spent > _exact(self.epsilon_total) or delta_spent > _exact(self.delta_total):
            raise BudgetExceeded(
                f"the recorded releases spend ε = {float(eps_spent)!r}, δ = {float(delta_spent)!r},"
                f" more than the total ε = {self.epsilon_total!r}, δ = {self.delta_total!r}"
            )

    def _spent_exact(self) -> tuple[Fraction, Fraction]:
        eps = sum((_exact(r.epsilon) for r in self.releases), Fraction(0))
        delta = sum((_exact(r.delta) for r in self.releases), Fraction(0))
        return eps, delta

    @property
    def epsilon_spent(self) -> float:
        """Σ ε of the recorded releases [-]."""
        return float(self._spent_exact()[0])

    @property
    def delta_spent(self) -> float:
        """Σ δ of the recorded releases [-]."""
        return float(self._spent_exact()[1])

    @property
    def epsilon_remaining(self) -> float:
        """ε still available [-]."""
        return float(_exact(self.epsilon_total) - self._spent_exact()[0])

    @property
    def delta_remaining(self) -> float:
        """δ still available [-]."""
        return float(_exact(self.delta_total) - self._spent_exact()[1])

    def can_spend(self, epsilon: float, delta: float = 0.0) -> bool:
        """Whether a release of (ε, δ) fits in what remains."""
        _check_epsilon(epsilon, "epsilon", allow_zero=False)
        _check_delta(delta, "delta")
        eps_spent, delta_spent = self._spent_exact()
        return eps_spent + _exact(epsilon) <= _exact(self.epsilon_total) and (
            delta_spent + _exact(delta) <= _exact(self.delta_total)
        )

    def spend(
        self, epsilon: float, delta: float = 0.0, *, label: str, mechanism: Mechanism
    ) -> PrivacyBudget:
        """The budget with one more release recorded.

        Raises:
            BudgetExceeded: the release would take the spent ε or δ above the total; `self` is
                unchanged (it is immutable), so the caller's budget stays as it was.
            ValueError: invalid ε, δ, label or mechanism.
        """
        entry = BudgetEntry(label=label, epsilon=epsilon, delta=delta, mechanism=mechanism)
        if not self.can_spend(epsilon, delta):
            raise BudgetExceeded(
                f"release {label!r} (ε = {epsilon!r}, δ = {delta!r}) refused: it would exceed the "
                f"run's privacy budget (ε {self.epsilon_spent!r} of {self.epsilon_total!r} "
                f"spent, {self.epsilon_remaining!r} left; δ {self.delta_spent!r} of "
                f"{self.delta_total!r} spent, {self.delta_remaining!r} left)"
            )
        return replace(self, releases=(*self.releases, entry))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document (spent and remaining are derived, stored for readers)."""
        return {
            "schema": BUDGET_SCHEMA,
            "composition": "basic sequential",
            "epsilon_total": self.epsilon_total,
            "delta_total": self.delta_total,
            "epsilon_spent": self.epsilon_spent,
            "delta_spent": self.delta_spent,
            "epsilon_remaining": self.epsilon_remaining,
            "delta_remaining": self.delta_remaining,
            "releases": [
                {"label": r.label, "epsilon": r.epsilon, "delta": r.delta, "mechanism": r.mechanism}
                for r in self.releases
            ],
        }

    def to_json(self) -> str:
        """A small JSON document listing every release and the remaining budget."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PrivacyBudget:
        """Read a budget written by `to_json`.

        Raises:
            ValueError: not a budget document, or its stored spent/remaining figures disagree
                with its releases (a hand-edited file).
            BudgetExceeded: its releases exceed its total.
        """
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("schema") != BUDGET_SCHEMA:
            raise ValueError(f"not a privacy budget document (expected schema {BUDGET_SCHEMA!r})")
        try:
            releases = tuple(
                BudgetEntry(
                    label=r["label"],
                    epsilon=r["epsilon"],
                    delta=r["delta"],
                    mechanism=r["mechanism"],
                )
                for r in doc["releases"]
            )
            budget = cls(
                epsilon_total=doc["epsilon_total"],
                delta_total=doc["delta_total"],
                releases=releases,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed privacy budget document: {exc!r}") from exc
        derived = budget.to_dict()
        for key in ("epsilon_spent", "delta_spent", "epsilon_remaining", "delta_remaining"):
            if key in doc and doc[key] != derived[key]:
                raise ValueError(
                    f"privacy budget document: {key} = {doc[key]!r} disagrees with its releases "
                    f"({derived[key]!r})"
                )
        return budget


__all__ = [
    "BUDGET_SCHEMA",
    "MECHANISMS",
    "BudgetEntry",
    "BudgetExceeded",
    "Mechanism",
    "PrivacyBudget",
]
