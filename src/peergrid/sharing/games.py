"""Cooperative games: the Shapley value, the core and the least core.

A game is a characteristic function v given as a callable on frozensets of player indices
0..n−1 (`Game`), a profit (savings) game or a cost game.

Shapley value: φ_i = Σ_{S ⊆ N∖{i}} |S|!(n − |S| − 1)!/n!·[v(S ∪ {i}) − v(S)], from a
characteristic function v given as a callable on frozensets of participant indices. Exact
enumeration (2^n evaluations) up to `max_exact` = 15 players; beyond, the mean marginal
contribution over random permutations, with its standard error (error ∝ 1/√samples; each
permutation's contributions add up to v(N) − v(∅), so the estimate is exactly efficient).

Core. For a **profit (savings) game** v, an allocation x is in the core when Σ_{i∈N} x_i = v(N)
and Σ_{i∈S} x_i >= v(S) for every coalition S (no coalition gains by leaving). For a **cost
game** c the inequality turns round: Σ_{i∈S} x_i <= c(S) (no coalition pays less on its own).
`core_check` takes `kind="profit"` or `"cost"`; `least_core` finds the smallest ε by which all
coalition constraints must be relaxed, so the core is empty exactly when ε > 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from peergrid.optim.highs import LpModel, LpSolver

Game = Callable[[frozenset[int]], float]
GameKind = Literal["profit", "cost"]

MAX_EXACT_PLAYERS = 15
MAX_CORE_PLAYERS = 20


@dataclass(frozen=True, eq=False)
class ShapleyValue:
    """A Shapley value, exact or sampled.

    Attributes:
        value: φ, (n,).
        std_error: standard error of each φ_i, (n,); 0 when exact.
        exact: True for full enumeration.
        n_samples: permutations drawn (0 when exact).
        n_evaluations: distinct coalitions evaluated.
    """

    value: NDArray[np.float64]
    std_error: NDArray[np.float64]
    exact: bool
    n_samples: int
    n_evaluations: int


@dataclass(frozen=True)
class CoreCheck:
    """Whether an allocation is in the core.

    Attributes:
        in_core: efficient and no coalition constraint violated (within `tol`).
        efficient: Σ x = v(N) within `tol`.
        max_violation: the largest violation of a coalition constraint (<= 0 when none).
        worst_coalition: the coalition with that violation (empty when n < 2).
    """

    in_core: bool
    efficient: bool
    max_violation: float
    worst_coalition: frozenset[int]


def _members(mask: int, n: int) -> frozenset[int]:
    return frozenset(i for i in range(n) if mask >> i & 1)


def coalition_values(v: Game, n: int) -> NDArray[np.float64]:
    """v(S) for every coalition, indexed by bit mask (bit i = player i), (2^n,)."""
    return np.array([v(_members(mask, n)) for mask in range(1 << n)], dtype=np.float64)


def shapley_exact(v: Game, n: int) -> NDArray[np.float64]:
    """The Shapley value by enumeration of all 2^n coalitions."""
    values = coalition_values(v, n)
    masks = np.arange(1 << n, dtype=np.int64)
    size = np.bitwise_count(masks).astype(np.int64)
    weight = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    )
    phi = np.empty(n)
    for i in range(n):  # n passes over the 2^n coalitions, each vectorised
        bit = np.int64(1) << i
        without = masks[(masks & bit) == 0]
        phi[i] = weight[size[without]] @ (values[without | bit] - values[without])
    return phi


def shapley_sampled(v: Game, n: int, n_samples: int, rng: np.random.Generator) -> ShapleyValue:
    """Shapley value estimated from `n_samples` random permutations (memoised v)."""
    cache: dict[int, float] = {}

    def value(mask: int) -> float:
        if mask not in cache:
            cache[mask] = float(v(_members(mask, n)))
        return cache[mask]

    contrib = np.empty((n_samples, n))
    for k in range(n_samples):
        mask = 0
        previous = value(0)
        for i in rng.permutation(n):
            mask |= 1 << int(i)
            current = value(mask)
            contrib[k, i] = current - previous
            previous = current
    std = contrib.std(axis=0, ddof=1) / math.sqrt(n_samples) if n_samples > 1 else np.zeros(n)
    return ShapleyValue(
        value=contrib.mean(axis=0),
        std_error=std,
        exact=False,
        n_samples=n_samples,
        n_evaluations=len(cache),
    )


def shapley_value(
    v: Game,
    n: int,
    *,
    max_exact: int = MAX_EXACT_PLAYERS,
    n_samples: int = 2000,
    rng: np.random.Generator | None = None,
) -> ShapleyValue:
    """The Shapley value of game v with players 0..n−1: exact for n <= `max_exact`, else
    sampled (`shapley_sampled`, seeded by `rng`; default seed 0)."""
    if n < 1:
        raise ValueError("a game needs at least one player")
    if n <= max_exact:
        return ShapleyValue(
            value=shapley_exact(v, n),
            std_error=np.zeros(n),
            exact=True,
            n_samples=0,
            n_evaluations=1 << n,
        )
    return shapley_sampled(v, n, n_samples, rng if rng is not None else np.random.default_rng(0))


def _coalition_sums(x: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    masks = np.arange(1 << n, dtype=np.int64)
    bits = (masks[:, None] >> np.arange(n)[None, :]) & 1
    out: NDArray[np.float64] = bits.astype(np.float64) @ np.asarray(x, dtype=np.float64)
    return out


def core_check(
    x: NDArray[np.float64], v: Game, n: int, *, kind: GameKind = "profit", tol: float = 1e-9
) -> CoreCheck:
    """Is x in the core of v? Profit game: Σ_S x >= v(S); cost game: Σ_S x <= v(S); both with
    Σ_N x = v(N). Checks all 2^n coalitions (n <= 20)."""
    if n > MAX_CORE_PLAYERS:
        raise ValueError(f"core check enumerates 2^n coalitions: n <= {MAX_CORE_PLAYERS}")
    values = coalition_values(v, n)
    sums = _coalition_sums(x, n)
    full = (1 << n) - 1
    efficient = abs(sums[full] - values[full]) <= tol * max(1.0, abs(values[full]))
    violation = values - sums if kind == "profit" else sums - values
    proper = violation[1:full]
    if proper.size == 0:
        return CoreCheck(efficient, efficient, 0.0, frozenset())
    worst = int(np.argmax(proper)) + 1
    max_violation = float(proper[worst - 1])
    return CoreCheck(
        in_core=efficient and max_violation <= tol,
        efficient=efficient,
        max_violation=max_violation,
        worst_coalition=_members(worst, n),
    )


def least_core(v: Game, n: int, *, kind: GameKind = "profit") -> tuple[float, NDArray[np.float64]]:
    """The least core: min ε such that an efficient x meets every coalition constraint relaxed
    by ε (profit: Σ_S x >= v(S) − ε; cost: Σ_S x <= c(S) + ε). The core is empty iff ε > 0.

    Returns:
        (ε, x): the least-core value and one allocation in the least core.
    """
    if n > MAX_CORE_PLAYERS:
        raise ValueError(f"the least core enumerates 2^n coalitions: n <= {MAX_CORE_PLAYERS}")
    values = coalition_values(v, n)
    full = (1 << n) - 1
    masks = np.arange(1, full, dtype=np.int64)  # proper, non-empty coalitions
    bits = (masks[:, None] >> np.arange(n)[None, :]) & 1
    sign = 1.0 if kind == "profit" else -1.0
    # columns x_0..x_{n−1}, ε; rows: sign·Σ_S x + ε >= sign·v(S), and Σ_N x = v(N)
    rows, cols = np.nonzero(bits)
    m = LpModel()
    x_col = m.cols(np.ones(n, dtype=bool), -np.inf, np.inf, 0.0)
    eps_col = m.cols(np.ones(1, dtype=bool), -np.inf, np.inf, 1.0)
    coalition = m.rows(np.ones(masks.size, dtype=bool), sign * values[masks], np.inf)
    efficiency = m.rows(np.ones(1, dtype=bool), values[full], values[full])
    m.coef(coalition[rows], x_col[cols], sign)
    m.coef(coalition, eps_col, 1.0)
    m.coef(efficiency, x_col, 1.0)
    lp, _, _ = m.lp()
    solver = LpSolver(lp)
    solver.run()
    x = solver.solution().col_value
    return float(x[n]), x[:n]
