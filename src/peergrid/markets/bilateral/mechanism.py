"""Decentralized bilateral P2P market for one slot (family "decentralized").

Every order is a *peer* that keeps its costs private and negotiates trades P_nm [kWh] and prices
λ_nm [currency/kWh] only with its trading partners; nobody sees another peer's costs. The market
is the multi-bilateral economic dispatch of Sorin, Bobo & Pinson (IEEE TPWRS 34(2), 2019), solved
by consensus ADMM on the reciprocity constraint (Baroche, Pinson, Le Goff Latimier & Ben Ahmed,
IEEE TPWRS 34(4), 2019) or by relaxed consensus + innovation (Sorin et al.).

Model (the project's sign convention: injection is positive, so P_n > 0 is *selling*):

    min  Σ_n C_n(P_n) + Σ_n Σ_m c_nm·|P_nm|
    s.t. P_n = Σ_m P_nm,   P_nm + P_mn = 0  (reciprocity; its dual λ_nm is the pair's price),
         seller: P_nm ≥ 0, 0 ≤ P_n ≤ q_n;    buyer: P_nm ≤ 0, −q_n ≤ P_n ≤ 0,
    C_n(P_n) = ½·a·P_n² + b_n·P_n  [currency],  a = `curvature` [currency/kWh²] > 0.

A seller with ask s has b_n = s: selling y costs s·y + ½·a·y². A buyer with bid b has b_n = b and
P_n = −x: buying x is worth b·x − ½·a·x². The curvature makes each peer's total unique (strictly
convex) and shades its marginal value by a·(volume traded); keep a·q well below the price steps
of the book (default 1e-4 currency/kWh², i.e. 0.0001 per kWh traded) and the orders behave like
limit orders.

Outside options: a buyer can always import at the retail price and a seller export at the
feed-in price, so a community kWh is worth min(bid, retail) to a buyer and costs max(ask, feed-in)
to a seller. The model uses these *effective* limit prices instead of adding the retailer as a
peer, so a trade happens only when both sides gain against the retailer and every price lies in
[feed-in, retail]. Peers whose effective price leaves no room (a bid below the feed-in price, an
ask above the retail price) stay out. Whatever an order does not trade settles with the retailer,
outside the mechanism.

Product differentiation (`bilateral.differentiation`): c_nm ≥ 0 is peer n's cost per kWh
traded with m, charged on |P_nm|, from distance, green preference, named partners, the
network's pair fees and a pluggable `PairCost`.

Trading graph (`bilateral.graph`): every buy order with every sell order of another
participant, or with `partners_k` a sparse graph of k partners per peer; graphs are edge lists
of (seller, buyer) pairs.

Algorithms, in the volume variables of `bilateral.admm` (P_sb = t_s ≥ 0, P_bs = −t_b ≤ 0 for a
pair of a seller s and a buyer b, reciprocity t_s = t_b, consensus value z_sb = −z_bs = m =
(t_s + t_b)/2):

- "admm" (Baroche et al.): each peer n solves its local problem
      P_n^{k+1} = argmin C_n(P_n)
                  + Σ_m [c_nm·|P_nm| + (ρ/2)·((P_nm^k − P_mn^k)/2 − P_nm + λ_nm^k/ρ)²]
  over its box and sign constraints, i.e. targets u_s = m + (λ − c_s)/ρ, u_b = m − (λ + c_b)/ρ,
  then λ_nm^{k+1} = λ_nm^k − (ρ/2)·(P_nm^{k+1} + P_mn^{k+1}), i.e. λ ← λ − (ρ/2)·(t_s − t_b).
  This is consensus ADMM (Boyd et al. 2011, ch. 7) with dual variable −λ, so λ_nm = λ_mn
  throughout, and it converges for every ρ > 0. Dual residual ρ·‖m^{k+1} − m^k‖₂.
- "consensus-innovation" (Sorin et al.): each side keeps its own price of the pair, starting from
  its effective limit price; λ_nm ← λ_nm − β·(λ_nm − λ_mn) − α·(P_nm^k + P_mn^k), then the local
  problem above with λ_nm^{k+1} (proximal around the previous consensus value). α = ρ/2 with equal
  prices is the ADMM iteration; β > 0 pulls the two sides' prices together. Dual residual
  √((ρ·‖m^{k+1} − m^k‖₂)² + ‖λ_nm − λ_mn‖₂²).

Primal residual ‖P_nm + P_mn‖₂ = ‖t_s − t_b‖₂ over the pairs [kWh]; dual residuals in
[currency/kWh]. The iterations start from P = 0 (ADMM: λ = (retail + feed-in)/2) and stop when
both residuals are at most `primal_tol_kwh` and `dual_tol_per_kwh`, or after `max_iterations`.
Each iteration solves all peers' local problems exactly and at once (`admm.solve_local`,
water-filling over a segmented sort): no loop over peers.

Result: a pair trades v = min(t_s, t_b), the smaller of its two proposals, so the trades are
reciprocal and within every peer's bounds even without convergence; its price is λ clipped to
[effective ask, effective bid] (a no-op at convergence; pairs whose ask exceeds the bid are
dropped). Fills per order are the peer's traded total, per-order prices the volume-weighted price
of its trades; each pair trades at one price, so money balances exactly. `info`: `iterations`,
`primal_residual` [kWh], `dual_residual` [currency/kWh], `converged` (0/1), `rho`, `n_pairs`,
`welfare` (model objective of the returned trades: gains over the retailer net of curvature and
differentiation costs [currency]), `unmatched_kwh` (Σ|t_s − t_b| of the final iterate, dropped by
the minimum) and `mean_price` (volume-weighted [currency/kWh], NaN without trades).

Relation to the uniform auction: without differentiation on the complete graph, any split of the
peers' totals over the pairs is feasible, so the problem reduces to max Σ (b·x − ½·a·x²) −
Σ (s·y + ½·a·y²) s.t. Σ x = Σ y, and every traded pair clears at one price π with b − a·x = π =
s + a·y for the partially filled orders. As a → 0 this is the LP of the uniform-price auction and
the volume is its efficient volume Q*; it equals Q* as soon as a·max(q) is smaller than the
distance between π and every limit price other than the marginal one.

`bilateral.reference.solve_centralised` is the coordinated optimum of the same problem
(reciprocity as hard constraints, solved by HiGHS with a certified error bound): the reference
for the tests and the benchmark's welfare gap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    IntArray,
    MarketContext,
    MechanismParams,
    OrderBook,
)
from peergrid.markets.bilateral.admm import (
    IterationResult,
    LocalProblems,
    run_admm,
    run_consensus,
)
from peergrid.markets.bilateral.differentiation import Differentiation, PairCost
from peergrid.markets.bilateral.graph import trading_graph
from peergrid.markets.bilateral.params import BilateralParams

#: Trades smaller than this fraction of the participating volume are dropped as residue [-].
REL_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class BilateralProblem:
    """One slot's bilateral market: the peers' private data and the trading graph.

    Attributes:
        n_orders: size of the book the problem was built from.
        peer_order: position in the book of each peer, (n_peers,).
        participant: participant index of each peer, (n_peers,).
        is_seller: True for sell orders, (n_peers,).
        limit_price: effective limit price [currency/kWh]: min(bid, retail) for buyers,
            max(ask, feed-in) for sellers, (n_peers,).
        curvature: a [currency/kWh²], (n_peers,).
        quantity_kwh: q [kWh], (n_peers,).
        pair_seller, pair_buyer: peer index of each pair's seller and buyer, (n_pairs,).
        cost_seller, cost_buyer: c_nm of each side of each pair [currency/kWh], (n_pairs,).
        initial_price: λ⁰ = (retail + feed-in)/2 [currency/kWh].
    """

    n_orders: int
    peer_order: IntArray
    participant: IntArray
    is_seller: np.ndarray[tuple[int], np.dtype[np.bool_]]
    limit_price: FloatArray
    curvature: FloatArray
    quantity_kwh: FloatArray
    pair_seller: IntArray
    pair_buyer: IntArray
    cost_seller: FloatArray
    cost_buyer: FloatArray
    initial_price: float

    @property
    def n_pairs(self) -> int:
        return int(self.pair_seller.size)

    def local_problems(self) -> LocalProblems:
        """The per-peer data in the layout of `admm` (sellers' edges first)."""
        signed = np.where(self.is_seller, self.limit_price, -self.limit_price)
        return LocalProblems(
            owner=np.concatenate((self.pair_seller, self.pair_buyer)),
            signed_price=signed,
            curvature=self.curvature,
            quantity_kwh=self.quantity_kwh,
        )

    def welfare(self, trade_kwh: FloatArray) -> float:
        """Model welfare of reciprocal pair volumes `trade_kwh` [kWh]: Σ buyers' (b·x − ½·a·x²)
        − Σ sellers' (s·y + ½·a·y²) − Σ (c_s + c_b)·v [currency], with effective limit prices,
        i.e. the gain from trade over the retailer."""
        n_peers = self.limit_price.size
        total = _sum_by(self.pair_seller, trade_kwh, n_peers) + _sum_by(
            self.pair_buyer, trade_kwh, n_peers
        )
        value = np.where(self.is_seller, -self.limit_price, self.limit_price) * total
        value -= 0.5 * self.curvature * total * total
        pair_cost = float(np.dot(self.cost_seller + self.cost_buyer, trade_kwh))
        return float(value.sum()) - pair_cost


def build_problem(
    book: OrderBook,
    ctx: MarketContext,
    params: BilateralParams,
    diff: Differentiation | None = None,
) -> BilateralProblem:
    """The bilateral market of one slot: peers, effective limit prices and the trading graph.

    Args:
        diff: the differentiation costs; None builds them from `params` (no `PairCost`).
            The network's pair fees (`ctx.network`) are added when `network_charges_as_cost`.

    Raises:
        InputError: the distance cost has no distances or they do not cover the book's
            participant indices; the network's pair fees do not cover them or are negative;
            a `PairCost` returned a negative or NaN cost.
    """
    if diff is None:
        diff = Differentiation.from_params(params)
    if params.network_charges_as_cost and ctx.network is not None:
        diff = replace(diff, pair_fee_per_kwh=ctx.network.pair_fee_per_kwh)
    retail, feed_in = ctx.retail_price, ctx.feed_in_price
    is_sell = book.is_sell
    limit = np.where(is_sell, np.maximum(book.price, feed_in), np.minimum(book.price, retail))
    # A peer takes part when it has energy and its effective limit leaves room for a trade.
    room = np.where(is_sell, limit <= retail, limit >= feed_in)
    active = np.flatnonzero((book.quantity_kwh > 0.0) & room & (feed_in <= retail))
    participant = book.participant[active]
    diff.check(int(book.participant.max(initial=-1)) + 1)
    peer_is_seller = is_sell[active]
    sellers = np.flatnonzero(peer_is_seller)
    buyers = np.flatnonzero(~peer_is_seller)
    pair_s, pair_b = trading_graph(params, diff, sellers, buyers, participant)
    cost_s, cost_b = diff.edge_costs(participant[pair_s], participant[pair_b])
    return BilateralProblem(
        n_orders=book.n_orders,
        peer_order=active,
        participant=participant,
        is_seller=peer_is_seller,
        limit_price=limit[active],
        curvature=np.full(active.size, params.curvature),
        quantity_kwh=book.quantity_kwh[active].astype(np.float64),
        pair_seller=pair_s,
        pair_buyer=pair_b,
        cost_seller=cost_s,
        cost_buyer=cost_b,
        initial_price=0.5 * (retail + feed_in),
    )


def _sum_by(index: IntArray, weights: FloatArray, n: int) -> FloatArray:
    """Σ of `weights` per value of `index` in [0, n)."""
    return np.bincount(index, weights, n).astype(np.float64, copy=False)


def clearing_result(
    problem: BilateralProblem, it: IterationResult, ctx: MarketContext, rho: float
) -> ClearingResult:
    """Reciprocal trades, fills and prices from the final iterate (module docstring)."""
    n = problem.n_orders
    quantity_kwh = np.zeros(n)
    quantity_kwh[problem.peer_order] = problem.quantity_kwh
    ask = problem.limit_price[problem.pair_seller]
    bid = problem.limit_price[problem.pair_buyer]
    volume = np.minimum(it.seller_kwh, it.buyer_kwh)
    tol_kwh = REL_TOL * float(problem.quantity_kwh.sum())
    trades = np.flatnonzero((volume > tol_kwh) & (ask <= bid))
    trade_kwh = volume[trades]
    trade_price = np.clip(it.price[trades], ask[trades], bid[trades])
    sell_pos = problem.peer_order[problem.pair_seller[trades]]
    buy_pos = problem.peer_order[problem.pair_buyer[trades]]

    filled = _sum_by(sell_pos, trade_kwh, n) + _sum_by(buy_pos, trade_kwh, n)
    # A capped peer's proposals sum to q up to rounding; never report a fill above q.
    np.minimum(filled, quantity_kwh, out=filled)
    paid = _sum_by(sell_pos, trade_kwh * trade_price, n) + _sum_by(
        buy_pos, trade_kwh * trade_price, n
    )
    price = np.full(n, np.nan)
    traded = filled > 0.0
    price[traded] = paid[traded] / filled[traded]
    # A weighted mean of prices in [ask, bid] ∩ [feed-in, retail] stays there up to rounding;
    # the clip removes the rounding.
    limit = np.full(n, np.nan)
    limit[problem.peer_order] = problem.limit_price
    sells = np.zeros(n, np.bool_)
    sells[problem.peer_order] = problem.is_seller
    lo = np.where(sells, limit, ctx.feed_in_price)
    hi = np.where(sells, ctx.retail_price, limit)
    price[traded] = np.clip(price[traded], lo[traded], hi[traded])

    reciprocal = np.zeros(problem.n_pairs)
    reciprocal[trades] = trade_kwh
    total_kwh = float(trade_kwh.sum())
    return ClearingResult(
        filled_kwh=filled,
        price=price,
        operator_surplus=0.0,
        trade_buy=buy_pos,
        trade_sell=sell_pos,
        trade_kwh=trade_kwh,
        trade_price=trade_price,
        info={
            "iterations": float(it.iterations),
            "primal_residual": it.primal_residual,
            "dual_residual": it.dual_residual,
            "converged": 1.0 if it.converged else 0.0,
            "rho": rho,
            "n_pairs": float(problem.n_pairs),
            "welfare": problem.welfare(reciprocal),
            "unmatched_kwh": float(np.abs(it.seller_kwh - it.buyer_kwh).sum()),
            "mean_price": float(np.dot(trade_kwh, trade_price)) / total_kwh
            if total_kwh > 0.0
            else float("nan"),
        },
    )


def solve_bilateral(problem: BilateralProblem, params: BilateralParams) -> IterationResult:
    """Run the decentralized algorithm chosen by `params` on `problem`."""
    local = problem.local_problems()
    if params.algorithm == "admm":
        return run_admm(
            local,
            problem.cost_seller,
            problem.cost_buyer,
            rho=params.rho,
            initial_price=problem.initial_price,
            max_iterations=params.max_iterations,
            primal_tol_kwh=params.primal_tol_kwh,
            dual_tol_per_kwh=params.dual_tol_per_kwh,
        )
    return run_consensus(
        local,
        problem.cost_seller,
        problem.cost_buyer,
        rho=params.rho,
        alpha=params.alpha,
        beta=params.beta,
        max_iterations=params.max_iterations,
        primal_tol_kwh=params.primal_tol_kwh,
        dual_tol_per_kwh=params.dual_tol_per_kwh,
    )


def clear_bilateral(
    book: OrderBook,
    ctx: MarketContext,
    params: BilateralParams | None = None,
    pair_cost: PairCost | None = None,
) -> ClearingResult:
    """Clear one slot's book as a decentralized bilateral market; see the module docstring.

    Args:
        book: a validated order book; each order is one peer.
        ctx: retail and feed-in prices (the peers' outside options).
        params: the mechanism's parameters (defaults if None).
        pair_cost: optional extra per-edge cost c_nm (see `PairCost`).
    """
    params = params if params is not None else BilateralParams()
    return _clear(book, ctx, params, Differentiation.from_params(params, pair_cost))


def _clear(
    book: OrderBook, ctx: MarketContext, params: BilateralParams, diff: Differentiation
) -> ClearingResult:
    problem = build_problem(book, ctx, params, diff)
    if problem.n_pairs == 0:
        empty = ClearingResult.nothing(book.n_orders)
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
            }
        )
        return empty
    return clearing_result(problem, solve_bilateral(problem, params), ctx, params.rho)


class BilateralMarket:
    """Decentralized bilateral P2P market (consensus ADMM / consensus + innovation)."""

    name: ClassVar[str] = "bilateral"
    family: ClassVar[Family] = "decentralized"
    description: ClassVar[str] = (
        "Bilateral P2P trading: peers keep their costs private and negotiate pairwise trades "
        "and prices by consensus ADMM (or consensus + innovation) on a complete or k-partner "
        "graph, with product differentiation."
    )
    Params: ClassVar[type[MechanismParams]] = BilateralParams
    uses_net_positions: ClassVar[bool] = False

    params: MechanismParams

    def __init__(
        self, params: BilateralParams | None = None, pair_cost: PairCost | None = None
    ) -> None:
        """Args:
        params: validated parameters (defaults if None).
        pair_cost: optional extra per-edge cost c_nm, e.g. network charges (see `PairCost`).
        """
        self.params = params if params is not None else BilateralParams()
        self._diff = Differentiation.from_params(self.params, pair_cost)

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Clear one slot's book; unfilled energy settles with the retailer outside."""
        params = self.params
        if not isinstance(params, BilateralParams):
            raise TypeError(f"bilateral needs BilateralParams, got {type(params).__name__}")
        return _clear(book, ctx, params, self._diff)
