"""Rules that share a community's savings: who pays what of the community's cost.

The coordinator minimises the community's cost c(N) (`coordination.schedule`). Each participant
i alone would pay its baseline c({i}) (its own optimal schedule facing the retailer, or its bill
under a baseline policy); the community saves Σ_i c({i}) − c(N) >= 0. A rule decides who gets
how much of it. All rules here return an `Allocation`: what each participant pays [currency],
its savings (baseline − cost) and the residual Σ cost − c(N) (0 for a budget-balanced rule).

Rules:

- **proportional**: savings shared in proportion to a non-negative weight. We use each
  participant's **traded volume** Σ_t |net_t| [kWh] (what it brings to and takes from the
  pool), not its baseline bill: a net producer's bill is negative, and a share proportional to
  a negative number is meaningless. `proportional_allocation` takes any weights.
- **marginal**: each participant's net position valued at the internal price λ_t (dual of the
  community balance): cost_i = Σ_t λ_t·(import_t − export_t), plus optionally its own wear and
  penalty costs. Without binding import/export limits this is budget balanced (λ_t = retail
  where the community imports, feed-in where it exports) and lies in the core of the cost game
  (Lagrangian duality: every coalition S can do no better than Σ_{i∈S} of its members' costs at
  the prices λ; the tests check it on a small community).
- **Shapley value**: each participant's savings are its Shapley value φ of the savings game
  (`sharing.games.shapley_value`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.sharing.games import ShapleyValue


@dataclass(frozen=True, eq=False)
class Allocation:
    """An allocation of the community's cost.

    Attributes:
        cost: what each participant pays, (P,) [currency].
        savings: baseline − cost, (P,) [currency].
        residual: Σ cost − community cost [currency]; 0 when budget balanced.
    """

    cost: NDArray[np.float64]
    savings: NDArray[np.float64]
    residual: float


def traded_volume_kwh(net_kwh: NDArray[np.float64]) -> NDArray[np.float64]:
    """Energy each participant exchanged with the pool or grid, Σ_t |net_t|, (P,) [kWh]."""
    out: NDArray[np.float64] = np.abs(net_kwh).sum(axis=0)
    return out


def proportional_allocation(
    baseline_cost: NDArray[np.float64], community_cost: float, weights: NDArray[np.float64]
) -> Allocation:
    """Savings Σ baseline − community cost shared in proportion to `weights` (>= 0; equal
    shares when they are all 0)."""
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0.0).any():
        raise ValueError("proportional allocation needs non-negative weights")
    total = float(w.sum())
    share = w / total if total > 0.0 else np.full(w.size, 1.0 / w.size)
    saved = float(np.sum(baseline_cost)) - community_cost
    savings = saved * share
    cost = baseline_cost - savings
    return Allocation(cost=cost, savings=savings, residual=float(cost.sum() - community_cost))


def marginal_allocation(
    net_kwh: NDArray[np.float64],
    marginal_price: NDArray[np.float64],
    baseline_cost: NDArray[np.float64],
    community_cost: float,
    own_cost: NDArray[np.float64] | None = None,
) -> Allocation:
    """Each participant pays its net import valued at λ_t: cost_i = −Σ_t λ_t·net_t,i (+ its
    `own_cost`, e.g. wear and penalties, (P,)).

    Args:
        net_kwh: (T, P) net export (export positive) [kWh].
        marginal_price: λ_t, (T,) [currency/kWh].
        baseline_cost: (P,) [currency].
        community_cost: c(N) [currency].
        own_cost: (P,) costs that are the participant's own [currency]; None: 0.
    """
    cost = -(np.asarray(marginal_price) @ np.asarray(net_kwh))
    if own_cost is not None:
        cost = cost + own_cost
    return Allocation(
        cost=cost,
        savings=np.asarray(baseline_cost) - cost,
        residual=float(cost.sum() - community_cost),
    )


def shapley_allocation(value: ShapleyValue, baseline_cost: NDArray[np.float64]) -> Allocation:
    """Shares from the Shapley value of the savings game: savings_i = φ_i."""
    savings = value.value
    cost = np.asarray(baseline_cost) - savings
    community_cost = float(np.sum(baseline_cost) - savings.sum())
    return Allocation(cost=cost, savings=savings, residual=float(cost.sum() - community_cost))
