"""The differentially private bilateral market ("bilateral-dp") and its welfare-versus-ε analysis.

The market of `bilateral.mechanism` (Sorin et al. 2019, consensus ADMM of Baroche et al. 2019)
with every message of the negotiation perturbed by Laplace noise, `bilateral.private` (whose
docstring has the neighbouring relation, the sensitivity, the composition and what the guarantee
does not cover). Per slot and peer the negotiation is ε-DP with respect to the peer's limit price
and quantity: exactly K = `iterations` rounds, budgets ε_k with Σ ε_k ≤ ε, Laplace scale
q̄/ε_k on each peer's released total, q̄ = `clip_kwh`.

Differences from "bilateral", all forced by privacy:
- every order is a peer of the trading graph, including those that cannot trade (they take part
  with quantity 0), so the graph depends on public data only;
- a peer trades at most q̄ = `clip_kwh`; the part of an order above q̄ settles with the retailer
  (`info["curtailed_kwh"]`);
- exactly `iterations` rounds, whatever the residuals (`max_iterations` does not apply; the
  tolerances only set the reported `converged` flag);
- ADMM only (the consensus + innovation variant exchanges prices seeded with private limit
  prices);
- trades are committed from the public final state (`private.commit_trades`): the consensus
  volume at the pair's price λ^K clipped to [feed-in, retail], where both sides accept that
  price, scaled into each peer's box, so trades are reciprocal, within every box and price band,
  and individually rational.

`info` has the keys of "bilateral" (`iterations` = K, `primal_residual` and `dual_residual` of the
released messages of round K, `converged`, `rho`, `n_pairs`, `welfare`, `unmatched_kwh`,
`mean_price`) and `epsilon` (the budget), `epsilon_spent` (Σ ε_k ≤ ε), `releases` (rounds of
messages each peer released, = K), `noise_scale_max_kwh` (the largest Laplace scale, round 1 or
all rounds), `clip_kwh`, `curtailed_kwh`, `welfare_optimum` (the coordinated optimum of the
non-private market for the same book, `reference.solve_centralised`) and `welfare_gap`
((optimum − welfare)/optimum, NaN when the optimum is not positive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from peergrid.markets.base import (
    ClearingResult,
    MarketContext,
    MechanismParams,
    OrderBook,
)
from peergrid.markets.bilateral.admm import IterationResult
from peergrid.markets.bilateral.differentiation import Differentiation, PairCost
from peergrid.markets.bilateral.mechanism import (
    BilateralMarket,
    BilateralProblem,
    build_problem,
    clear_bilateral,
    clearing_result,
)
from peergrid.markets.bilateral.params import BilateralParams
from peergrid.markets.bilateral.private import (
    BudgetSplit,
    PrivateIterationResult,
    commit_trades,
    iteration_epsilons,
    noise_rng,
    run_private_admm,
)
from peergrid.markets.bilateral.reference import solve_centralised

#: Segments of the reference LP's chords: its certified error a·(q/M)²/8 is below 1e-6 currency
#: for q ≤ 2 kWh at the default curvature, far below any DP welfare loss, at 10 ms per 36 peers.
REFERENCE_SEGMENTS = 32

#: Inherited parameters that have no meaning for the private market (module docstring); they
#: must keep their defaults.
_NOT_APPLICABLE = ("max_iterations", "alpha", "beta")


class PrivateBilateralParams(BilateralParams):
    """Parameters of the private bilateral market: those of "bilateral" (ADMM only; see the
    module docstring for what does not apply) and the privacy parameters."""

    epsilon: float = Field(
        default=1.0,
        gt=0.0,
        allow_inf_nan=False,
        description="total privacy budget ε per slot and peer [-]: the slot's messages are ε-DP "
        "with respect to one peer's limit price and quantity.",
    )
    iterations: int = Field(
        default=5,
        ge=1,
        le=100_000,
        description="K, the ADMM rounds, fixed in advance: every peer releases exactly K rounds "
        "of messages per slot [-].",
    )
    noise: Literal["laplace"] = Field(
        default="laplace", description="noise distribution: 'laplace' (pure ε-DP)."
    )
    clip_kwh: float = Field(
        default=2.0,
        gt=0.0,
        allow_inf_nan=False,
        description="q̄: public bound on the energy a peer trades per slot, and the sensitivity "
        "of its round of messages [kWh]; the rest of a larger order settles with the retailer.",
    )
    budget_split: BudgetSplit = Field(
        default="increasing",
        description="split of ε over the rounds: 'uniform' (ε/K each) or 'increasing' "
        "(ε_k ∝ k, less noise in the rounds that decide the trades).",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="seed of the sparse graph's random choices and, mixed with the slot index, "
        "of the simulated noise (independent streams) [-].",
    )

    @model_validator(mode="after")
    def _admm_with_fixed_rounds(self) -> PrivateBilateralParams:
        if self.algorithm != "admm":
            raise ValueError(
                "bilateral-dp runs consensus ADMM only: consensus-innovation exchanges prices "
                "seeded with private limit prices"
            )
        # Compared with the defaults, not with the fields set, so that a dump of the parameters
        # (which lists every field) validates again.
        fields = BilateralParams.model_fields
        changed = [f for f in _NOT_APPLICABLE if getattr(self, f) != fields[f].default]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} do(es) not apply to bilateral-dp: it runs exactly "
                "`iterations` ADMM rounds"
            )
        return self


def build_private_problem(
    book: OrderBook,
    ctx: MarketContext,
    params: PrivateBilateralParams,
    diff: Differentiation | None = None,
) -> BilateralProblem:
    """The slot's market with every order as a peer and boxes min(q, q̄) (module docstring).

    The graph is built by `build_problem` from a public version of the book (every order with a
    placeholder quantity and a limit price inside [feed-in, retail]); then the private boxes go
    in: min(q, `clip_kwh`) for orders that can trade, 0 for those that cannot (zero quantity, or
    a limit price outside [feed-in, retail]). Effective limit prices are those of
    `build_problem` for every order that can trade.
    """
    retail, feed_in = ctx.retail_price, ctx.feed_in_price
    public = replace(
        book,
        quantity_kwh=np.ones(book.n_orders),
        price=np.clip(book.price, feed_in, max(retail, feed_in)),
    )
    problem = build_problem(public, ctx, params, diff)
    room = np.where(book.is_sell, book.price <= retail, book.price >= feed_in)
    box = np.where(room, np.minimum(book.quantity_kwh, params.clip_kwh), 0.0)
    return replace(problem, quantity_kwh=box[problem.peer_order].astype(np.float64))


def _curtailed_kwh(book: OrderBook, ctx: MarketContext, clip_kwh: float) -> float:
    """Σ over orders that could trade of the quantity above the bound q̄ [kWh]."""
    room = np.where(book.is_sell, book.price <= ctx.retail_price, book.price >= ctx.feed_in_price)
    excess = np.where(room, np.maximum(book.quantity_kwh - clip_kwh, 0.0), 0.0)
    return float(excess.sum())


def private_iterations(
    problem: BilateralProblem,
    params: PrivateBilateralParams,
    rng: np.random.Generator,
    epsilon: float | None = None,
) -> PrivateIterationResult:
    """The K noisy rounds on `problem` (`private.run_private_admm`); `epsilon` overrides
    `params.epsilon` (∞ for a noise-free run of the same K rounds)."""
    eps = params.epsilon if epsilon is None else epsilon
    return run_private_admm(
        problem.local_problems(),
        problem.cost_seller,
        problem.cost_buyer,
        rho=params.rho,
        initial_price=problem.initial_price,
        epsilon_per_iteration=iteration_epsilons(eps, params.iterations, params.budget_split),
        clip_kwh=params.clip_kwh,
        rng=rng,
    )


def private_result(
    problem: BilateralProblem,
    it: PrivateIterationResult,
    ctx: MarketContext,
    params: PrivateBilateralParams,
) -> ClearingResult:
    """Trades committed from the final public state (`private.commit_trades`), as a
    ClearingResult with the diagnostics of "bilateral" and the privacy accounting."""
    price = np.clip(it.price, ctx.feed_in_price, ctx.retail_price)
    seller, buyer = commit_trades(
        it.consensus_kwh,
        price,
        problem.pair_seller,
        problem.pair_buyer,
        problem.limit_price,
        problem.quantity_kwh,
    )
    converged = (
        it.primal_residual <= params.primal_tol_kwh and it.dual_residual <= params.dual_tol_per_kwh
    )
    # The commitment of both sides is what the common settlement code turns into trades: it takes
    # min(seller, buyer) per pair, and every accepted price already lies in [ask, bid].
    committed = IterationResult(
        seller_kwh=seller,
        buyer_kwh=buyer,
        price=price,
        iterations=it.iterations,
        primal_residual=it.primal_residual,
        dual_residual=it.dual_residual,
        converged=converged,
    )
    result = clearing_result(problem, committed, ctx, params.rho)
    result.info.update(
        {
            "epsilon_spent": it.epsilon_spent,
            "releases": float(it.released_total_kwh.shape[0]),
            "noise_scale_max_kwh": float(it.noise_scale_kwh.max(initial=0.0)),
            "clip_kwh": params.clip_kwh,
        }
    )
    return result


def _empty(n_orders: int, params: PrivateBilateralParams) -> ClearingResult:
    """No pair can trade: nothing is released, no budget is spent."""
    empty = ClearingResult.nothing(n_orders)
    empty.info.update(
        {
            "iterations": 0.0,
            "primal_residual": 0.0,
            "dual_residual": 0.0,
            "converged": 1.0,
            "rho": params.rho,
            "n_pairs": 0.0,
            "welfare": 0.0,
            "unmatched_kwh": 0.0,
            "mean_price": float("nan"),
            "epsilon_spent": 0.0,
            "releases": 0.0,
            "noise_scale_max_kwh": 0.0,
            "clip_kwh": params.clip_kwh,
        }
    )
    return empty


def _welfare_gap(welfare: float, optimum: float) -> float:
    return (optimum - welfare) / optimum if optimum > 0.0 else float("nan")


def clear_private_bilateral(
    book: OrderBook,
    ctx: MarketContext,
    params: PrivateBilateralParams | None = None,
    pair_cost: PairCost | None = None,
) -> ClearingResult:
    """Clear one slot's book as a differentially private bilateral market (module docstring).

    The noise comes from `private.noise_rng(params.seed, ctx.slot)`, so a run is reproducible and
    every slot draws fresh noise.
    """
    params = params if params is not None else PrivateBilateralParams()
    return _clear(book, ctx, params, Differentiation.from_params(params, pair_cost))


def _clear(
    book: OrderBook, ctx: MarketContext, params: PrivateBilateralParams, diff: Differentiation
) -> ClearingResult:
    problem = build_private_problem(book, ctx, params, diff)
    if problem.n_pairs == 0:
        result = _empty(book.n_orders, params)
    else:
        rng = noise_rng(params.seed, ctx.slot)
        result = private_result(problem, private_iterations(problem, params, rng), ctx, params)
    optimum = solve_centralised(build_problem(book, ctx, params, diff), REFERENCE_SEGMENTS)
    result.info.update(
        {
            "epsilon": params.epsilon,
            "curtailed_kwh": _curtailed_kwh(book, ctx, params.clip_kwh),
            "welfare_optimum": optimum.welfare,
            "welfare_gap": _welfare_gap(result.info["welfare"], optimum.welfare),
        }
    )
    return result


class PrivateBilateralMarket(BilateralMarket):
    """Differentially private decentralized bilateral market (Laplace-perturbed consensus ADMM):
    the bilateral market's wiring (product differentiation, a public `PairCost`) with the
    private negotiation."""

    name: ClassVar[str] = "bilateral-dp"
    description: ClassVar[str] = (
        "Bilateral P2P trading by consensus ADMM in which every peer perturbs the trade "
        "proposals it sends with calibrated Laplace noise: each slot's negotiation is ε-DP for "
        "every peer's limit price and quantity over a fixed number of rounds."
    )
    Params: ClassVar[type[MechanismParams]] = PrivateBilateralParams

    def __init__(
        self, params: PrivateBilateralParams | None = None, pair_cost: PairCost | None = None
    ) -> None:
        """Args:
        params: validated parameters (defaults if None).
        pair_cost: optional extra per-edge cost c_nm, public (see `PairCost`).
        """
        super().__init__(params if params is not None else PrivateBilateralParams(), pair_cost)

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Clear one slot's book; unfilled energy settles with the retailer outside."""
        params = self.params
        if not isinstance(params, PrivateBilateralParams):
            raise TypeError(
                f"bilateral-dp needs PrivateBilateralParams, got {type(params).__name__}"
            )
        return _clear(book, ctx, params, self._diff)


# --- welfare versus ε ----------------------------------------------------------------------------

RowKind = Literal["private", "noise-free", "non-private"]

DEFAULT_EPSILONS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class EpsilonRow:
    """Mean outcome of the private market at one ε over repeated noise draws.

    Attributes:
        epsilon: total budget per slot and peer [-]; ∞ for the rows without noise.
        kind: "private" (ε-DP), "noise-free" (the same K rounds without noise: the loss from
            stopping after K rounds alone) or "non-private" (the "bilateral" market, ADMM run
            to convergence: the ε = ∞ reference).
        welfare_loss_pct: mean (optimum − welfare)/optimum [%] against the coordinated optimum
            of the non-private market; NaN when the optimum is not positive.
        traded_kwh: mean energy traded [kWh].
        primal_residual_kwh: mean final primal residual ‖P_nm + P_mn‖₂ of the last round's
            messages [kWh].
        iterations: rounds run (mean for the non-private market) [-].
        repeats: noise draws averaged [-].
    """

    epsilon: float
    kind: RowKind
    welfare_loss_pct: float
    traded_kwh: float
    primal_residual_kwh: float
    iterations: float
    repeats: int


def welfare_vs_epsilon(
    book: OrderBook,
    ctx: MarketContext,
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS,
    repeats: int = 20,
    params: PrivateBilateralParams | None = None,
) -> list[EpsilonRow]:
    """Welfare loss, traded volume and final primal residual of the private market against ε.

    For each ε, `repeats` independent noise draws (`noise_rng(seed, ctx.slot, r)`) of the
    market with `params` (defaults if None) at that ε, averaged; then two rows at ε = ∞: the same
    K rounds without noise, and the non-private market ("bilateral" with the same base
    parameters, run to convergence). Losses are against the coordinated optimum of the
    non-private market for `book`.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    params = params if params is not None else PrivateBilateralParams()
    diff = Differentiation.from_params(params)
    problem = build_private_problem(book, ctx, params, diff)
    optimum = solve_centralised(build_problem(book, ctx, params, diff), REFERENCE_SEGMENTS).welfare

    def loss_pct(welfare: float) -> float:
        return 100.0 * _welfare_gap(welfare, optimum)

    def draws(epsilon: float, n: int, kind: RowKind) -> EpsilonRow:
        loss = traded = residual = 0.0
        for r in range(n):
            if problem.n_pairs == 0:
                result = _empty(book.n_orders, params)
            else:
                it = private_iterations(
                    problem, params, noise_rng(params.seed, ctx.slot, r), epsilon
                )
                result = private_result(problem, it, ctx, params)
            loss += loss_pct(result.info["welfare"])
            traded += result.traded_kwh
            residual += result.info["primal_residual"]
        return EpsilonRow(
            epsilon=epsilon,
            kind=kind,
            welfare_loss_pct=loss / n,
            traded_kwh=traded / n,
            primal_residual_kwh=residual / n,
            iterations=float(params.iterations),
            repeats=n,
        )

    rows = [draws(float(eps), repeats, "private") for eps in epsilons]
    rows.append(draws(math.inf, 1, "noise-free"))
    base = BilateralParams.model_validate(
        params.model_dump(include=set(BilateralParams.model_fields))
    )
    plain = clear_bilateral(book, ctx, base)
    rows.append(
        EpsilonRow(
            epsilon=math.inf,
            kind="non-private",
            welfare_loss_pct=loss_pct(plain.info["welfare"]),
            traded_kwh=plain.traded_kwh,
            primal_residual_kwh=plain.info["primal_residual"],
            iterations=plain.info["iterations"],
            repeats=1,
        )
    )
    return rows
