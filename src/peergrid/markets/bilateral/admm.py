"""Vectorised iterations of the bilateral market (`bilateral.mechanism` runs them).

Everything here works on one slot's *trading graph* in the volume variables of
`bilateral.mechanism` (see its docstring for the model and the sign convention):

- a *pair* p joins one seller peer and one buyer peer; there are E pairs;
- each pair has two directed edges, the seller's proposal P_sb = t_s[p] ≥ 0 and the buyer's
  proposal P_bs = −t_b[p] ≤ 0, stored as volumes t = concat(t_s, t_b) of length 2E, with
  `owner[e]` the peer that owns edge e;
- reciprocity P_sb + P_bs = 0 reads t_s = t_b; the bilateral price of the pair is λ[p].

Peer n's local problem, for given edge targets u_e [kWh] and the penalty ρ [currency/kWh²], is

    min  ½·a_n·T² + σ_n·b_n·T + Σ_e (ρ/2)·(t_e − u_e)²    s.t. t_e ≥ 0,  T = Σ_e t_e ≤ q_n,

with σ_n = +1 for a seller (cost s·T) and −1 for a buyer (utility b·T). Every per-edge linear term
(price, differentiation cost) is folded into u_e by completing the square. `solve_local` solves
all peers' problems at once, exactly, by water-filling: t_e = max(0, u_e − θ_n/ρ), with the
peer's level θ_n found from one segmented sort of the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peergrid.markets.base import FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class LocalProblems:
    """The private data of every peer and the edge layout, fixed during the iterations.

    Attributes:
        owner: peer owning each directed edge, (2E,); edges [0, E) are the sellers' side of the
            pairs, edges [E, 2E) the buyers' side of the same pairs.
        signed_price: σ_n·b_n per peer [currency/kWh]: the effective ask for sellers, minus the
            effective bid for buyers, (n_peers,).
        curvature: a_n per peer [currency/kWh²], > 0, (n_peers,).
        quantity_kwh: q_n per peer [kWh], >= 0, (n_peers,).
    """

    owner: IntArray
    signed_price: FloatArray
    curvature: FloatArray
    quantity_kwh: FloatArray

    @property
    def n_pairs(self) -> int:
        return int(self.owner.size) // 2

    def layout(self) -> SortedLayout:
        """The owner-sorted layout used by `solve_local` (computed once per solve)."""
        n_peers = self.signed_price.size
        degree = np.bincount(self.owner, minlength=n_peers)
        start = np.zeros(n_peers, np.int64)
        np.cumsum(degree[:-1], out=start[1:])
        sorted_owner = np.sort(self.owner)
        rank = np.arange(sorted_owner.size, dtype=np.int64) - start[sorted_owner] + 1
        owner_key: NDArray[np.integer[Any]] = self.owner
        if n_peers <= np.iinfo(np.uint16).max:
            owner_key = self.owner.astype(np.uint16)
        return SortedLayout(
            owner_key=owner_key,
            sorted_owner=sorted_owner,
            rank=rank.astype(np.float64),
            start=start,
            degree=degree,
            a_edge=self.curvature[sorted_owner],
            sb_edge=self.signed_price[sorted_owner],
            q_edge=self.quantity_kwh[sorted_owner],
        )


@dataclass(frozen=True, eq=False)
class SortedLayout:
    """Per-edge constants in owner-sorted order (see `LocalProblems.layout`)."""

    owner_key: NDArray[np.integer[Any]]  # owner as the narrowest sort key
    sorted_owner: IntArray
    rank: FloatArray  # 1-based rank of the edge within its owner's segment
    start: IntArray  # first position of each peer's segment
    degree: IntArray  # number of edges of each peer
    a_edge: FloatArray
    sb_edge: FloatArray
    q_edge: FloatArray


def solve_local(
    u_kwh: FloatArray, rho: float, problems: LocalProblems, layout: SortedLayout
) -> FloatArray:
    """Exact solution of every peer's local problem (module docstring) for targets `u_kwh`.

    With θ_n = a_n·T + σ_n·b_n + μ_n (μ_n ≥ 0 the multiplier of T ≤ q_n), the KKT conditions
    give t_e = max(0, u_e − θ_n/ρ). Sorting each peer's targets in descending order,
    u_(1) ≥ u_(2) ≥ ..., and writing S_k = Σ_{i≤k} u_(i), the total at the level θ = ρ·u_(k) is
    G_k = S_k − k·u_(k) (non-decreasing in k). Then:

    - without the cap, the level solves θ = a·(S_K − K·θ/ρ) + σ·b, where K, the number of
      active edges, is the number of breakpoints with ρ·u_(k) − a·G_k − σ·b > 0 (that quantity
      decreases along the sorted order), so θ* = (a·S_K + σ·b) / (1 + a·K/ρ);
    - the cap T = q is met at θ_q = ρ·(S_Kq − q)/Kq with Kq = #{k: G_k < q} (θ_q = +∞ if Kq = 0);
    - θ = max(θ*, θ_q).

    Two sorts and a few segmented sums per call; no loop over peers. The segment sums come from
    one global cumulative sum, exact up to its rounding (about 1e-12 kWh here).
    """
    owner = problems.owner
    if owner.size == 0:
        return np.zeros(0)
    # Lexicographic (owner, −u) order in two passes: a quicksort of −u, then a stable sort by
    # owner, which numpy does as a radix sort on 16-bit keys (10× faster than np.lexsort).
    by_target = np.argsort(-u_kwh)
    order = by_target[np.argsort(layout.owner_key[by_target], kind="stable")]
    u_sorted = u_kwh[order]
    cum = np.cumsum(u_sorted)
    # Σ of the targets before each peer's segment (0 for the first segment).
    base = np.zeros(layout.start.size)
    has_edges = layout.degree > 0
    first = layout.start[has_edges]
    base[has_edges] = cum[first] - u_sorted[first]
    s_k = cum - base[layout.sorted_owner]
    g_k = s_k - layout.rank * u_sorted
    n_peers = layout.start.size
    h_k = rho * u_sorted - layout.a_edge * g_k - layout.sb_edge
    k_free = np.bincount(layout.sorted_owner, weights=h_k > 0.0, minlength=n_peers)
    k_cap = np.bincount(layout.sorted_owner, weights=g_k < layout.q_edge, minlength=n_peers)
    k_free_i = k_free.astype(np.int64)
    k_cap_i = k_cap.astype(np.int64)

    s_free = np.where(k_free_i > 0, s_k[np.maximum(layout.start + k_free_i - 1, 0)], 0.0)
    s_cap = np.where(k_cap_i > 0, s_k[np.maximum(layout.start + k_cap_i - 1, 0)], 0.0)
    a = problems.curvature
    theta_free = (a * s_free + problems.signed_price) / (1.0 + a * k_free / rho)
    theta_cap = np.full(n_peers, np.inf)
    np.divide(rho * (s_cap - problems.quantity_kwh), k_cap, out=theta_cap, where=k_cap_i > 0)
    theta = np.maximum(theta_free, theta_cap)
    t: FloatArray = u_kwh - theta[owner] / rho
    np.maximum(t, 0.0, out=t)
    return t


@dataclass(frozen=True, eq=False)
class IterationResult:
    """Final iterate of a bilateral algorithm.

    Attributes:
        seller_kwh, buyer_kwh: the seller's and the buyer's proposal for each pair [kWh], (E,).
        price: the pair's price [currency/kWh], (E,) (the mean of both sides' prices where the
            algorithm keeps two).
        iterations: iterations run.
        primal_residual: ‖t_s − t_b‖₂ = ‖P_nm + P_mn‖₂ over the pairs [kWh].
        dual_residual: the algorithm's dual residual [currency/kWh].
        converged: both residuals within their tolerances.
    """

    seller_kwh: FloatArray
    buyer_kwh: FloatArray
    price: FloatArray
    iterations: int
    primal_residual: float
    dual_residual: float
    converged: bool


def run_admm(
    problems: LocalProblems,
    cost_seller: FloatArray,
    cost_buyer: FloatArray,
    *,
    rho: float,
    initial_price: float,
    max_iterations: int,
    primal_tol_kwh: float,
    dual_tol_per_kwh: float,
) -> IterationResult:
    """Consensus ADMM on the reciprocity constraint (Baroche et al. 2019).

    In the volume variables, with m = (t_s + t_b)/2 the consensus value (z_sb = m, z_bs = −m) and
    λ the pair's price, the seller's and the buyer's local targets are
        u_s = m + (λ − c_s)/ρ,    u_b = m − (λ + c_b)/ρ,
    i.e. (ρ/2)·(z − P + λ/ρ)² + c·|P| with P = t_s resp. P = −t_b, completed into one square. After
    the local solves, λ ← λ − (ρ/2)·(t_s − t_b) and m ← (t_s + t_b)/2.
    """
    n = problems.n_pairs
    layout = problems.layout()
    price = np.full(n, initial_price)
    mean = np.zeros(n)
    seller = np.zeros(n)
    buyer = np.zeros(n)
    inv_rho = 1.0 / rho
    c_s = cost_seller * inv_rho
    c_b = cost_buyer * inv_rho
    u = np.empty(2 * n)
    primal = dual = np.inf
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported after the loop)
        scaled = price * inv_rho
        np.add(mean, scaled, out=u[:n])
        u[:n] -= c_s
        np.subtract(mean, scaled, out=u[n:])
        u[n:] -= c_b
        t = solve_local(u, rho, problems, layout)
        seller = t[:n]
        buyer = t[n:]
        gap = seller - buyer
        price -= (0.5 * rho) * gap
        new_mean = 0.5 * (seller + buyer)
        primal = float(np.sqrt(np.dot(gap, gap)))
        step = new_mean - mean
        dual = rho * float(np.sqrt(np.dot(step, step)))
        mean = new_mean
        if primal <= primal_tol_kwh and dual <= dual_tol_per_kwh:
            break
    return IterationResult(
        seller_kwh=seller,
        buyer_kwh=buyer,
        price=price,
        iterations=iterations,
        primal_residual=primal,
        dual_residual=dual,
        converged=primal <= primal_tol_kwh and dual <= dual_tol_per_kwh,
    )


def run_consensus(
    problems: LocalProblems,
    cost_seller: FloatArray,
    cost_buyer: FloatArray,
    *,
    rho: float,
    alpha: float,
    beta: float,
    max_iterations: int,
    primal_tol_kwh: float,
    dual_tol_per_kwh: float,
) -> IterationResult:
    """Relaxed consensus + innovation (Sorin, Bobo & Pinson 2019).

    Each side keeps its own price of the pair, λ_s (the seller's) and λ_b (the buyer's), starting
    from its own effective limit price. Per iteration, with g = t_s − t_b = P_nm + P_mn (the same
    for both directions) and m = (t_s + t_b)/2 of the previous iterate:
        λ_s ← λ_s − β·(λ_s − λ_b) − α·g,    λ_b ← λ_b − β·(λ_b − λ_s) − α·g,
    then each peer's local problem with a proximal term around the previous consensus value,
        u_s = m + (λ_s − c_s)/ρ,    u_b = m − (λ_b + c_b)/ρ.
    With λ_s = λ_b and α = ρ/2 this is the ADMM iteration of `run_admm`; α < ρ/2 damps the
    price steps. Dual residual: √((ρ·‖m^{k+1} − m^k‖₂)² + ‖λ_s − λ_b‖₂²) [currency/kWh].
    """
    n = problems.n_pairs
    layout = problems.layout()
    seller_peer = problems.owner[:n]
    buyer_peer = problems.owner[n:]
    price_s = problems.signed_price[seller_peer].copy()
    price_b = -problems.signed_price[buyer_peer]
    t = np.zeros(2 * n)
    mean = np.zeros(n)
    inv_rho = 1.0 / rho
    c_s = cost_seller * inv_rho
    c_b = cost_buyer * inv_rho
    u = np.empty(2 * n)
    primal = dual = np.inf
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported after the loop)
        gap = t[:n] - t[n:]
        diff = price_s - price_b
        price_s -= beta * diff + alpha * gap
        price_b += beta * diff - alpha * gap
        np.add(mean, price_s * inv_rho, out=u[:n])
        u[:n] -= c_s
        np.subtract(mean, price_b * inv_rho, out=u[n:])
        u[n:] -= c_b
        t = solve_local(u, rho, problems, layout)
        gap = t[:n] - t[n:]
        new_mean = 0.5 * (t[:n] + t[n:])
        step = new_mean - mean
        mean = new_mean
        diff = price_s - price_b
        primal = float(np.sqrt(np.dot(gap, gap)))
        dual = float(np.sqrt(rho * rho * np.dot(step, step) + np.dot(diff, diff)))
        if primal <= primal_tol_kwh and dual <= dual_tol_per_kwh:
            break
    return IterationResult(
        seller_kwh=t[:n],
        buyer_kwh=t[n:],
        price=0.5 * (price_s + price_b),
        iterations=iterations,
        primal_residual=primal,
        dual_residual=dual,
        converged=primal <= primal_tol_kwh and dual <= dual_tol_per_kwh,
    )
