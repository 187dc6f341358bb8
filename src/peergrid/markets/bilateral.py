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

Product differentiation: c_nm ≥ 0 is peer n's cost per kWh traded with m, charged on |P_nm|, so it
never rewards a trade and individual rationality holds against the limit prices. Sources, summed:
`distance_cost_per_kwh_km` × the participants' distance (`coordinates_km` or `distance_km`),
charged to the buyer; `green_premium_per_kwh`, charged to a buyer on energy from a seller not in
`green_sellers`; `preference_premium_per_kwh`, charged to a participant that names partners in
`preferred` on trades with anyone else; and a `PairCost` callable given to `BilateralMarket` (an
edge-list hook for costs from the network). A preference is thus a premium on the *other*
partners, which keeps c_nm ≥ 0. When the slot's context shows the network (`ctx.network`) and
`network_charges_as_cost` is set, the operator's network charge of the pair,
`ctx.network.pair_fee_per_kwh[seller, buyer]` (`peergrid.network.charges`), is added as well,
half to each side, so peers prefer electrically close partners (Baroche et al. 2019). Only the
sum c_s + c_b moves the volumes; the half-half split sets where the pair's price lies.

Trading graph: orders on the same side cannot trade with each other (their proposals have the
same sign) and a participant never trades with itself, so the complete graph joins every buy order
with every sell order of another participant. With `partners_k` each peer picks k partners on the
other side (its k cheapest by differentiation cost with a seeded random tie-break, or a seeded
random circulant choice) and a pair exists when either side picked it, so every peer has at least
min(k, size of the other side) partners, less any own orders. Graphs are edge lists of (seller,
buyer) pairs; nothing P×P is stored.

Algorithms, in the volume variables of `_admm` (P_sb = t_s ≥ 0, P_bs = −t_b ≤ 0 for a pair of a
seller s and a buyer b, reciprocity t_s = t_b, consensus value z_sb = −z_bs = m = (t_s + t_b)/2):

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
Each iteration solves all peers' local problems exactly and at once (`_admm.solve_local`,
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

`solve_centralised` is the coordinated optimum of the same problem (reciprocity as hard
constraints, solved by HiGHS with a certified error bound): the reference for the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from peergrid.errors import InputError
from peergrid.markets._admm import IterationResult, LocalProblems, run_admm, run_consensus
from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    IntArray,
    MarketContext,
    MechanismParams,
    OrderBook,
)
from peergrid.optim.highs import LpModel, solve_optimal
from peergrid.rng import child_rng

Algorithm = Literal["admm", "consensus-innovation"]
PartnerRule = Literal["nearest", "random"]

#: A pluggable per-edge cost: (owner participant, partner participant) arrays → the owner's cost
#: per kWh traded with that partner [currency/kWh], >= 0, vectorised over edges.
PairCost = Callable[[IntArray, IntArray], FloatArray]

#: Trades smaller than this fraction of the participating volume are dropped as residue [-].
REL_TOL = 1e-9

#: Pairs whose costs are evaluated at once when choosing the k cheapest partners.
_CHUNK_PAIRS = 1 << 18


class BilateralParams(MechanismParams):
    """Parameters of the bilateral market; see the module docstring for the model."""

    algorithm: Algorithm = Field(
        default="admm",
        description="'admm' (Baroche et al. 2019) or 'consensus-innovation' (Sorin et al. 2019).",
    )
    curvature: float = Field(
        default=1e-4,
        gt=0.0,
        description="a in C_n = ½·a·P_n² + b_n·P_n [currency/kWh²]: how far a peer's marginal "
        "value moves from its limit price per kWh traded.",
    )
    rho: float = Field(
        default=0.1,
        gt=0.0,
        description="ADMM penalty / proximal weight ρ [currency/kWh²].",
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        description="consensus-innovation: price step on the imbalance P_nm + P_mn "
        "[currency/kWh²]; rho/2 or less recommended.",
    )
    beta: float = Field(
        default=0.1,
        gt=0.0,
        le=0.5,
        description="consensus-innovation: weight of the partner's price in the price update [-].",
    )
    max_iterations: int = Field(default=20_000, ge=1, description="iteration limit [-].")
    primal_tol_kwh: float = Field(
        default=1e-5, gt=0.0, description="stop when ‖P_nm + P_mn‖₂ ≤ this [kWh]."
    )
    dual_tol_per_kwh: float = Field(
        default=1e-5, gt=0.0, description="stop when the dual residual ≤ this [currency/kWh]."
    )
    partners_k: int | None = Field(
        default=None,
        ge=1,
        description="partners each peer picks on the other side; None for the complete graph.",
    )
    partner_rule: PartnerRule = Field(
        default="nearest",
        description="sparse graph: 'nearest' (k cheapest by differentiation cost, seeded random "
        "tie-break) or 'random' (seeded circulant choice).",
    )
    seed: int = Field(default=0, description="seed of the sparse graph's random choices.")
    coordinates_km: tuple[tuple[float, float], ...] | None = Field(
        default=None, description="(x, y) of each participant index [km]."
    )
    distance_km: tuple[tuple[float, ...], ...] | None = Field(
        default=None, description="distance matrix between participant indices [km]."
    )
    distance_cost_per_kwh_km: float = Field(
        default=0.0, ge=0.0, description="γ: buyer's cost per kWh and km of distance."
    )
    green_sellers: tuple[int, ...] = Field(
        default=(), description="participant indices whose energy buyers count as green."
    )
    green_premium_per_kwh: float = Field(
        default=0.0,
        ge=0.0,
        description="buyers' cost per kWh bought from a seller not in green_sellers "
        "[currency/kWh].",
    )
    preferred: tuple[tuple[int, int], ...] = Field(
        default=(), description="(participant, preferred partner) pairs."
    )
    preference_premium_per_kwh: float = Field(
        default=0.0,
        ge=0.0,
        description="a participant naming preferred partners pays this per kWh traded with "
        "anyone else [currency/kWh].",
    )
    network_charges_as_cost: bool = Field(
        default=True,
        description="add the network's pair fee (ctx.network.pair_fee_per_kwh) to c_nm, half "
        "to each side, when the context has a network.",
    )

    @model_validator(mode="after")
    def _one_distance_source(self) -> BilateralParams:
        if self.coordinates_km is not None and self.distance_km is not None:
            raise ValueError("give coordinates_km or distance_km, not both")
        if self.distance_km is not None:
            n = len(self.distance_km)
            if any(len(row) != n for row in self.distance_km):
                raise ValueError("distance_km must be a square matrix")
        return self


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
        """The per-peer data in the layout of `_admm` (sellers' edges first)."""
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


class CentralisedSolution(NamedTuple):
    """The coordinated optimum of a `BilateralProblem`.

    Attributes:
        trade_kwh: volume of each pair [kWh], (n_pairs,).
        price: dual of each pair's reciprocity constraint [currency/kWh], (n_pairs,).
        welfare: `BilateralProblem.welfare(trade_kwh)` [currency].
        welfare_bound: the optimum's welfare is within [welfare, welfare + welfare_bound]
            [currency].
    """

    trade_kwh: FloatArray
    price: FloatArray
    welfare: float
    welfare_bound: float


# --- building the problem -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Differentiation:
    """Per-edge costs c_nm ≥ 0 [currency/kWh] from the parameters and an optional `PairCost`,
    as arrays (built once per mechanism instance, not per slot).

    Attributes:
        distance_km: participant × participant distances (from `distance_km`) or None.
        coordinates_km: (x, y) per participant (from `coordinates_km`) or None.
        distance_cost_per_kwh_km: γ, charged to the buyer.
        green_sellers: participant indices of green sellers.
        green_premium_per_kwh: charged to buyers on energy from other sellers.
        preferred_key: sorted keys chooser·K + partner of the `preferred` pairs (K = `key_base`).
        choosers: sorted participants that named preferred partners.
        preference_premium_per_kwh: charged to a chooser on trades with unnamed partners.
        pair_cost: extra pluggable cost, or None.
        pair_fee_per_kwh: network charge of a kWh sold by participant i to j (P, P), split
            half to each side, or None (set per slot from `ctx.network`).
    """

    distance_km: FloatArray | None = None
    coordinates_km: FloatArray | None = None
    distance_cost_per_kwh_km: float = 0.0
    green_sellers: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    green_premium_per_kwh: float = 0.0
    preferred_key: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    choosers: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    preference_premium_per_kwh: float = 0.0
    pair_cost: PairCost | None = None
    pair_fee_per_kwh: FloatArray | None = None

    #: Base of the (chooser, partner) keys; participant indices must be smaller.
    key_base: ClassVar[int] = 1 << 31

    @staticmethod
    def from_params(params: BilateralParams, pair_cost: PairCost | None = None) -> Differentiation:
        pref = np.asarray(params.preferred, dtype=np.int64).reshape(-1, 2)
        return Differentiation(
            distance_km=None
            if params.distance_km is None
            else np.asarray(params.distance_km, dtype=np.float64),
            coordinates_km=None
            if params.coordinates_km is None
            else np.asarray(params.coordinates_km, dtype=np.float64),
            distance_cost_per_kwh_km=params.distance_cost_per_kwh_km,
            green_sellers=np.unique(np.asarray(params.green_sellers, dtype=np.int64)),
            green_premium_per_kwh=params.green_premium_per_kwh,
            preferred_key=np.unique(pref[:, 0] * Differentiation.key_base + pref[:, 1]),
            choosers=np.unique(pref[:, 0]),
            preference_premium_per_kwh=params.preference_premium_per_kwh,
            pair_cost=pair_cost,
        )

    def check(self, n_participants: int) -> None:
        """Raise InputError when the distances or the network fees do not cover participant
        indices < n, or a network fee is negative."""
        fee = self.pair_fee_per_kwh
        if fee is not None:
            if fee.ndim != 2 or min(fee.shape) < n_participants:
                raise InputError(
                    f"network pair fees {fee.shape} do not cover participant index "
                    f"{n_participants - 1}"
                )
            if not bool(((fee >= 0.0) & np.isfinite(fee)).all()):
                raise InputError("network pair fees must be finite and >= 0 [currency/kWh]")
        if self.distance_cost_per_kwh_km == 0.0:
            return
        table = self.coordinates_km if self.coordinates_km is not None else self.distance_km
        if table is None:
            raise InputError("distance_cost_per_kwh_km needs coordinates_km or distance_km")
        if table.shape[0] < n_participants:
            raise InputError(
                f"distances cover {table.shape[0]} participants but the book has participant "
                f"index {n_participants - 1}"
            )

    def edge_costs(self, seller: IntArray, buyer: IntArray) -> tuple[FloatArray, FloatArray]:
        """c_nm of the seller's and of the buyer's side of pairs given by their participant
        indices [currency/kWh], each (n_pairs,)."""
        cost_s = np.zeros(seller.size)
        cost_b = np.zeros(seller.size)
        gamma = self.distance_cost_per_kwh_km
        if gamma > 0.0:
            if self.coordinates_km is not None:
                delta = self.coordinates_km[buyer] - self.coordinates_km[seller]
                cost_b += gamma * np.hypot(delta[:, 0], delta[:, 1])
            elif self.distance_km is not None:
                cost_b += gamma * self.distance_km[buyer, seller]
        if self.green_premium_per_kwh > 0.0:
            green = np.isin(seller, self.green_sellers)
            cost_b += np.where(green, 0.0, self.green_premium_per_kwh)
        if self.preference_premium_per_kwh > 0.0 and self.choosers.size:
            cost_s += self._preference(seller, buyer)
            cost_b += self._preference(buyer, seller)
        if self.pair_cost is not None:
            extra_s = np.asarray(self.pair_cost(seller, buyer), dtype=np.float64)
            extra_b = np.asarray(self.pair_cost(buyer, seller), dtype=np.float64)
            valid = (
                (extra_s >= 0.0) & np.isfinite(extra_s) & (extra_b >= 0.0) & np.isfinite(extra_b)
            )
            if not bool(valid.all()):
                raise InputError("pair_cost must return finite costs >= 0 [currency/kWh]")
            cost_s += extra_s
            cost_b += extra_b
        if self.pair_fee_per_kwh is not None:
            half = 0.5 * self.pair_fee_per_kwh[seller, buyer]
            cost_s += half
            cost_b += half
        return cost_s, cost_b

    def _preference(self, own: IntArray, other: IntArray) -> FloatArray:
        """The premium a chooser pays on trades with partners it did not name."""
        named = np.isin(own * self.key_base + other, self.preferred_key)
        unnamed = np.isin(own, self.choosers) & ~named
        return np.where(unnamed, self.preference_premium_per_kwh, 0.0)


def pair_cost_from_matrix(cost_per_kwh: FloatArray) -> PairCost:
    """A `PairCost` from a participant × participant matrix: row = the owner, column = the
    partner [currency/kWh] (for small communities)."""
    matrix = np.asarray(cost_per_kwh, dtype=np.float64)

    def cost(owner: IntArray, partner: IntArray) -> FloatArray:
        return matrix[owner, partner]

    return cost


def pair_cost_from_edges(owner: IntArray, partner: IntArray, cost_per_kwh: FloatArray) -> PairCost:
    """A `PairCost` from an edge list (owner participant, partner participant, cost
    [currency/kWh]); pairs not listed cost 0. Scales to large sparse communities."""
    base = Differentiation.key_base
    key = np.asarray(owner, dtype=np.int64) * base + np.asarray(partner, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    sorted_cost = np.asarray(cost_per_kwh, dtype=np.float64)[order]

    def cost(own: IntArray, other: IntArray) -> FloatArray:
        query = own * base + other
        pos = np.minimum(sorted_key.searchsorted(query), max(sorted_key.size - 1, 0))
        if sorted_key.size == 0:
            return np.zeros(query.size)
        return np.where(sorted_key[pos] == query, sorted_cost[pos], 0.0)

    return cost


def _circulant_choice(
    n_from: int, n_to: int, k: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Each of n_from nodes picks min(k, n_to) distinct nodes of the other side: node
    perm_from[i] takes k consecutive entries of a random permutation of the other side, starting
    at i·n_to/n_from, so every node of the other side is picked about equally often."""
    k = min(k, n_to)
    perm_from = rng.permutation(n_from)
    perm_to = rng.permutation(n_to)
    begin = (np.arange(n_from, dtype=np.int64) * n_to) // n_from
    picks = (begin[:, None] + np.arange(k, dtype=np.int64)[None, :]) % n_to
    return np.repeat(perm_from, k), perm_to[picks].ravel()


def _cheapest_choice(
    n_from: int,
    n_to: int,
    k: int,
    cost_of: Callable[[IntArray, IntArray], FloatArray],
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """Each of n_from nodes picks its min(k, n_to) cheapest nodes of the other side (ties by a
    seeded random key), evaluating the costs in chunks of rows (never n_from × n_to at once)."""
    k = min(k, n_to)
    rows = max(1, _CHUNK_PAIRS // max(n_to, 1))
    out_from: list[IntArray] = []
    out_to: list[IntArray] = []
    to_idx = np.arange(n_to, dtype=np.int64)
    for lo in range(0, n_from, rows):
        hi = min(lo + rows, n_from)
        frm = np.repeat(np.arange(lo, hi, dtype=np.int64), n_to)
        cost = cost_of(frm, np.tile(to_idx, hi - lo)).reshape(hi - lo, n_to)
        # Each node breaks its own ties (equal costs, e.g. no differentiation) at random.
        tie = rng.random(cost.shape)
        order = np.lexsort((tie, cost), axis=-1)[:, :k]
        out_from.append(frm.reshape(hi - lo, n_to)[:, :k].ravel())
        out_to.append(order.ravel())
    return np.concatenate(out_from), np.concatenate(out_to)


def _trading_graph(
    params: BilateralParams,
    diff: Differentiation,
    sellers: IntArray,
    buyers: IntArray,
    participant: IntArray,
) -> tuple[IntArray, IntArray]:
    """(seller peer, buyer peer) of every pair, sorted by buyer then seller."""
    n_s, n_b = sellers.size, buyers.size
    k = params.partners_k
    if n_s == 0 or n_b == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if k is None:
        s = np.tile(sellers, n_b)
        b = np.repeat(buyers, n_s)
    else:
        rng = child_rng(params.seed, "bilateral-graph")
        if params.partner_rule == "random":
            b1, s1 = _circulant_choice(n_b, n_s, k, rng)
            s2, b2 = _circulant_choice(n_s, n_b, k, rng)
        else:

            def by_buyer(bi: IntArray, si: IntArray) -> FloatArray:
                seller, buyer = participant[sellers[si]], participant[buyers[bi]]
                cost_s, cost_b = diff.edge_costs(seller, buyer)
                # Own orders can never be partners: rank them last.
                return np.where(seller == buyer, np.inf, cost_s + cost_b)

            b1, s1 = _cheapest_choice(n_b, n_s, k, by_buyer, rng)
            s2, b2 = _cheapest_choice(n_s, n_b, k, lambda si, bi: by_buyer(bi, si), rng)
        key = np.unique(np.concatenate((b1, b2)) * n_s + np.concatenate((s1, s2)))
        b = buyers[key // n_s]
        s = sellers[key % n_s]
    keep = participant[s] != participant[b]
    return s[keep], b[keep]


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
    pair_s, pair_b = _trading_graph(params, diff, sellers, buyers, participant)
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


# --- the coordinated reference ----------------------------------------------------------------


def solve_centralised(problem: BilateralProblem, segments: int = 256) -> CentralisedSolution:
    """The coordinated optimum of `problem`: one LP over all proposals, solved by HiGHS (simplex).

    Columns: the seller's and the buyer's volume of every pair (t_s, t_b ≥ 0) and, per peer,
    `segments` equal pieces w_nj ∈ [0, q_n/M] of its total T_n. Rows: reciprocity t_s − t_b = 0
    (P_sb + P_bs = 0, whose dual is the pair's price) and Σ_j w_nj − Σ_edges t = 0. Objective:
    Σ_n Σ_j (σ_n·b_n + a·h_n·(j + ½))·w_nj + Σ c·t, i.e. ½·a·T² replaced by its chords on the grid
    h_n = q_n/M. The cost is convex, so the pieces fill in order, and the chords overestimate
    ½·a·T² by at most a·h_n²/8: the LP optimum is feasible for the true problem and its welfare
    (evaluated exactly) is within `welfare_bound` = Σ_n a·h_n²/8 of the true optimum.

    (HiGHS's QP solver, the obvious choice, returns "Solve error" or stalls on many of these
    problems because the Hessian is zero on the edge columns; the simplex method does not.)
    """
    n_pairs = problem.n_pairs
    n_peers = problem.limit_price.size
    if n_pairs == 0:
        return CentralisedSolution(np.zeros(0), np.zeros(0), 0.0, 0.0)
    m = segments
    signed = np.where(problem.is_seller, problem.limit_price, -problem.limit_price)
    step = problem.quantity_kwh / m
    midpoint = (np.arange(m) + 0.5)[None, :]
    piece_cost = signed[:, None] + (problem.curvature * step)[:, None] * midpoint

    model = LpModel()
    every_pair = np.ones(n_pairs, dtype=bool)
    t_s = model.cols(every_pair, 0.0, np.inf, problem.cost_seller)
    t_b = model.cols(every_pair, 0.0, np.inf, problem.cost_buyer)
    piece = model.cols(np.ones((n_peers, m), dtype=bool), 0.0, step[:, None], piece_cost)
    reciprocity = model.rows(every_pair, 0.0, 0.0)
    total = model.rows(np.ones(n_peers, dtype=bool), 0.0, 0.0)
    # t_s has +1 in its reciprocity row and −1 in its seller's total row; t_b has −1 and −1
    # (buyer's row); every piece w_nj has +1 in its peer's total row.
    model.coef(reciprocity, t_s, 1.0)
    model.coef(total[problem.pair_seller], t_s, -1.0)
    model.coef(reciprocity, t_b, -1.0)
    model.coef(total[problem.pair_buyer], t_b, -1.0)
    model.coef(total[:, None], piece, 1.0)
    solution = solve_optimal(model.lp()[0], {"solver": "simplex"})
    col = solution.col_value
    # t_s = t_b up to the LP's feasibility tolerance; the minimum keeps every peer within q.
    trade = np.maximum(np.minimum(col[:n_pairs], col[n_pairs : 2 * n_pairs]), 0.0)
    price = solution.row_dual[:n_pairs]
    bound = float(np.sum(problem.curvature * step * step) / 8.0)
    return CentralisedSolution(
        trade_kwh=trade, price=price, welfare=problem.welfare(trade), welfare_bound=bound
    )


# --- clearing ---------------------------------------------------------------------------------


def _sum_by(index: IntArray, weights: FloatArray, n: int) -> FloatArray:
    """Σ of `weights` per value of `index` in [0, n)."""
    return np.bincount(index, weights, n).astype(np.float64, copy=False)


def _result(
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
    return _result(problem, solve_bilateral(problem, params), ctx, params.rho)


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
