"""Sharing the coordinated community's savings by pre-set rules.

The coordinator minimises the community's cost c(N) (`schedule.schedule`). Each participant i
alone would pay its baseline c({i}) (its own optimal schedule facing the retailer, or its bill
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
- **Shapley value**: φ_i = Σ_{S ⊆ N∖{i}} |S|!(n − |S| − 1)!/n!·[v(S ∪ {i}) − v(S)], from a
  characteristic function v given as a callable on frozensets of participant indices. Exact
  enumeration (2^n evaluations) up to `max_exact` = 15 players; beyond, the mean marginal
  contribution over random permutations, with its standard error (error ∝ 1/√samples; each
  permutation's contributions add up to v(N) − v(∅), so the estimate is exactly efficient).

Core. For a **profit (savings) game** v, an allocation x is in the core when Σ_{i∈N} x_i = v(N)
and Σ_{i∈S} x_i >= v(S) for every coalition S (no coalition gains by leaving). For a **cost
game** c the inequality turns round: Σ_{i∈S} x_i <= c(S) (no coalition pays less on its own).
`core_check` takes `kind="profit"` or `"cost"`; `least_core` finds the smallest ε by which all
coalition constraints must be relaxed, so the core is empty exactly when ε > 0.

`CommunityGame` computes v(S) by solving the schedule LP for coalition S alone (members' assets
and profiles, the same prices and limits), memoised: for small communities and short horizons
(2^n LPs for an exact Shapley value).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Literal, TypeVar

import numpy as np

from peergrid.assets.params import (
    AssetParams,
    BatteryParams,
    EvParams,
    FloatArray,
    IntArray,
    ShiftableJobs,
    ThermalParams,
)
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.schedule import schedule
from peergrid.optim.highs import LpModel, LpSolver

Game = Callable[[frozenset[int]], float]
GameKind = Literal["profit", "cost"]
_Params = TypeVar("_Params", BatteryParams, EvParams, ThermalParams)

MAX_EXACT_PLAYERS = 15
MAX_CORE_PLAYERS = 20


@dataclass(frozen=True, eq=False)
class Allocation:
    """An allocation of the community's cost.

    Attributes:
        cost: what each participant pays, (P,) [currency].
        savings: baseline − cost, (P,) [currency].
        residual: Σ cost − community cost [currency]; 0 when budget balanced.
    """

    cost: FloatArray
    savings: FloatArray
    residual: float


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

    value: FloatArray
    std_error: FloatArray
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


# --------------------------------------------------------------------------------------------
# Rules on schedules


def traded_volume_kwh(net_kwh: FloatArray) -> FloatArray:
    """Energy each participant exchanged with the pool or grid, Σ_t |net_t|, (P,) [kWh]."""
    out: FloatArray = np.abs(net_kwh).sum(axis=0)
    return out


def proportional_allocation(
    baseline_cost: FloatArray, community_cost: float, weights: FloatArray
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
    net_kwh: FloatArray,
    marginal_price: FloatArray,
    baseline_cost: FloatArray,
    community_cost: float,
    own_cost: FloatArray | None = None,
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


def shapley_allocation(value: ShapleyValue, baseline_cost: FloatArray) -> Allocation:
    """Shares from the Shapley value of the savings game: savings_i = φ_i."""
    savings = value.value
    cost = np.asarray(baseline_cost) - savings
    community_cost = float(np.sum(baseline_cost) - savings.sum())
    return Allocation(cost=cost, savings=savings, residual=float(cost.sum() - community_cost))


# --------------------------------------------------------------------------------------------
# Games


def _members(mask: int, n: int) -> frozenset[int]:
    return frozenset(i for i in range(n) if mask >> i & 1)


def coalition_values(v: Game, n: int) -> FloatArray:
    """v(S) for every coalition, indexed by bit mask (bit i = player i), (2^n,)."""
    return np.array([v(_members(mask, n)) for mask in range(1 << n)], dtype=np.float64)


def shapley_exact(v: Game, n: int) -> FloatArray:
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


def _coalition_sums(x: FloatArray, n: int) -> FloatArray:
    masks = np.arange(1 << n, dtype=np.int64)
    bits = (masks[:, None] >> np.arange(n)[None, :]) & 1
    out: FloatArray = bits.astype(np.float64) @ np.asarray(x, dtype=np.float64)
    return out


def core_check(
    x: FloatArray, v: Game, n: int, *, kind: GameKind = "profit", tol: float = 1e-9
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


def least_core(v: Game, n: int, *, kind: GameKind = "profit") -> tuple[float, FloatArray]:
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


# --------------------------------------------------------------------------------------------
# The community's game


def _subset(obj: _Params, members: IntArray) -> _Params:
    """A params dataclass with every per-participant array restricted to `members`."""
    return replace(obj, **{f.name: getattr(obj, f.name)[members] for f in fields(obj)})


def restrict(problem: ScheduleProblem, members: IntArray) -> ScheduleProblem:
    """The schedule problem of a coalition: its members' assets, profiles and states (members
    renumbered 0..|S|−1 in the given order), the same prices and time."""
    members = np.asarray(members, dtype=np.int64)
    a = problem.assets
    jobs = a.jobs
    keep = np.isin(jobs.participant, members)
    renumber = np.full(a.n_participants, -1, dtype=np.int64)
    renumber[members] = np.arange(members.size)
    sub_jobs = ShiftableJobs(
        participant=renumber[jobs.participant[keep]],
        earliest_start=jobs.earliest_start[keep],
        latest_end=jobs.latest_end[keep],
        duration_slots=jobs.duration_slots[keep],
        p_kw=jobs.p_kw[keep],
        appliance=jobs.appliance[keep],
    )
    assets = AssetParams(
        n_participants=int(members.size),
        battery=_subset(a.battery, members),
        ev=_subset(a.ev, members),
        thermal=_subset(a.thermal, members),
        jobs=sub_jobs,
    )

    def cols(x: np.ndarray) -> np.ndarray:
        return x[:, members]

    return replace(
        problem,
        assets=assets,
        base_demand_kwh=cols(problem.base_demand_kwh),
        pv_kwh=cols(problem.pv_kwh),
        ev_plugged=cols(problem.ev_plugged),
        ev_trip_kwh=cols(problem.ev_trip_kwh),
        battery_soc_kwh=problem.battery_soc_kwh[members],
        ev_soc_kwh=problem.ev_soc_kwh[members],
        indoor_temp_c=problem.indoor_temp_c[members],
        job_start_slot=None if problem.job_start_slot is None else problem.job_start_slot[keep],
        job_done_kwh=None if problem.job_done_kwh is None else problem.job_done_kwh[keep],
    )


class CommunityGame:
    """The community's cooperative game, v(S) from the schedule LP of coalition S (memoised).

    `kind="cost"`: v(S) = c(S), the LP's optimal cost of S alone (c(∅) = 0).
    `kind="savings"`: v(S) = Σ_{i∈S} c({i}) − c(S), what S saves by coordinating (a profit
    game with v({i}) = 0).
    """

    def __init__(
        self,
        problem: ScheduleProblem,
        options: ScheduleOptions | None = None,
        kind: Literal["savings", "cost"] = "savings",
    ) -> None:
        self.problem = problem
        self.options = options or ScheduleOptions()
        self.kind = kind
        self.n_players = problem.n_participants
        self._cost: dict[frozenset[int], float] = {frozenset(): 0.0}

    @property
    def n_solves(self) -> int:
        """LPs solved so far."""
        return len(self._cost) - 1

    def cost(self, coalition: frozenset[int]) -> float:
        """c(S) [currency]."""
        if coalition not in self._cost:
            members = np.array(sorted(coalition), dtype=np.int64)
            s = schedule(restrict(self.problem, members), self.options)
            self._cost[coalition] = s.objective
        return self._cost[coalition]

    def baseline_cost(self) -> FloatArray:
        """c({i}) for every participant, (P,) [currency]."""
        return np.array([self.cost(frozenset([i])) for i in range(self.n_players)])

    def __call__(self, coalition: frozenset[int]) -> float:
        if self.kind == "cost":
            return self.cost(coalition)
        alone = sum(self.cost(frozenset([i])) for i in coalition)
        return alone - self.cost(coalition)


def community_value(
    problem: ScheduleProblem,
    coalition: frozenset[int],
    *,
    kind: Literal["savings", "cost"] = "savings",
    options: ScheduleOptions | None = None,
) -> float:
    """v(S) of one coalition (`CommunityGame`; use the class to reuse LP solutions)."""
    return CommunityGame(problem, options, kind)(coalition)
