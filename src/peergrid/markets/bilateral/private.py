"""Differentially private consensus ADMM for the bilateral market (the maths of "bilateral-dp").

The non-private market (`bilateral.admm.run_admm`) keeps each peer's costs on its own machine, but
the trade proposals it sends its partners are exact best responses to public targets, and a
partner who sees them recovers the peer's marginal value, hence its limit price and quantity
(Cao & Chen 2024, arXiv 2410.04787; Dvorkin et al. 2020, arXiv 1910.10136). Here every peer
perturbs its messages with Laplace noise calibrated to their sensitivity, in the way of Dvorkin,
Van Hentenryck, Kazempour & Pinson ("Differentially private distributed optimal power flow",
IEEE CDC 2020): Laplace perturbation of the primal (local) solutions released in every
iteration, with the privacy loss composed over a number of iterations fixed in advance.

Protected data and neighbouring relation. Peer n's private data is D_n = (b_n, q_n): its limit
price b_n (any real; the market uses the effective price clip(b_n, feed-in, retail)) and its
quantity q_n >= 0, of which the market uses min(q_n, q̄) with the public bound q̄ = `clip_kwh`.
Two books are neighbours when they differ in the data of one peer, arbitrarily within these
bounds (unbounded change of the price, any change of the quantity within [0, q̄]). Public: which
orders exist, their side and participant (hence the trading graph), the curvature a, the
differentiation costs c_nm, ρ, λ⁰, q̄, ε, K and the budget split. An order that cannot trade
(zero quantity, or a limit price outside [feed-in, retail]) stays in the graph with q = 0, so
the graph reveals nothing private.

Sensitivity. In round k every peer solves its local problem for targets u_e that are functions of
the public transcript only (the consensus m and price λ of each of its pairs, both computed from
released messages). Its exact solution is t_e = max(0, u_e − θ_n/ρ) with one level θ_n
(`admm.solve_local`), so the whole message vector moves along one monotone curve of θ_n: for two
neighbouring data sets every coordinate moves in the same direction and

    ‖t(D) − t(D′)‖₁ = |T_n(D) − T_n(D′)| ≤ q̄,    T_n = Σ_e t_e ∈ [0, min(q_n, q̄)],

whatever the degree of the peer. The vector is also the Euclidean projection of the public
targets onto the simplex {t ≥ 0, Σ t = T_n}, i.e. a public function of the scalar T_n. So a peer
releases its total through the Laplace mechanism and sends the projection of its targets onto the
released total:

    T̃_n = clip(T_n + Lap(q̄/ε_k), 0, q̄),    t̃_e = max(0, u_e − θ̃/ρ) with Σ_e t̃_e = T̃_n.

Given the transcript so far, round k of peer n is ε_k-DP (Laplace mechanism with L1 sensitivity
q̄; clipping and projecting are post-processing) and the other peers' messages in round k do not
depend on D_n. One noise draw per peer instead of one per message keeps the noise independent
of the number of partners. `laplace_message_noise` is the alternative that perturbs every message
independently with the same scale (also ε_k-DP, as the vector's L1 sensitivity is q̄); it is kept
for comparison and for tests, not used by the mechanism.

Prices. In ADMM both sides of a pair update its price from the two released proposals,
λ ← λ − (ρ/2)·(t̃_s − t̃_b), and the consensus m = (t̃_s + t̃_b)/2: post-processing of released
messages, so prices are exchanged without extra noise and without extra privacy loss. (The
consensus + innovation variant exchanges prices that start from private limit prices; it would
need noise of its own and is not offered.)

Composition. Basic sequential composition for adaptively chosen mechanisms: K rounds with budgets
ε_k are (Σ ε_k)-DP, and `iteration_epsilons` splits ε so that Σ ε_k ≤ ε holds in floating point.
Advanced composition (ε′ = ε₀·√(2K·ln(1/δ)) + K·ε₀·(e^ε₀ − 1) for (ε′, δ)) is not implemented: it
beats Kε₀ only for K larger than about 2·ln(1/δ) (28 rounds at δ = 10⁻⁶), and welfare is best at
K of a few rounds (docs/private_bilateral.md). The guarantee is per slot (event level); a peer
whose data is correlated over the slots of a day loses ε per slot (user level: Σ over slots).

Stopping rule. The number of releases must not depend on private data: a residual-based stop
would publish, through the iteration count, a function of the data without noise. The iteration
runs exactly K rounds; the residuals are reported, never used to stop.

Commitment (`commit_trades`). After round K the public consensus m^K and price λ^K (clipped to
[feed-in, retail]) are the offer of each pair. Each side accepts it only at a price within its
effective limit, and scales its accepted volumes down to fit its box Σ ≤ min(q_n, q̄); the pair
trades the smaller of the two. Trades are thus reciprocal, within every box and individually
rational, and money and energy balance. This last step uses private data outside the noise: the
settlement tells each partner whether the price was acceptable and, when a peer's box binds, its
total. Differential privacy covers the negotiation (every message of the K rounds), not the
outcome; no feasible settlement can hide a binding capacity.

Randomness: `noise_rng` derives a numpy Generator from the run's seed and the slot, so a
simulation is reproducible. Production DP needs a cryptographically secure generator and a
floating-point-safe Laplace sampler (Mironov 2012, "On significance of the least significant
bits for differential privacy"), e.g. OpenDP's; numpy's PCG64 and `Generator.laplace` are
neither.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from peergrid.markets.base import FloatArray, IntArray
from peergrid.markets.bilateral.admm import LocalProblems, SortedLayout, solve_local

#: How the total ε is split over the K rounds: equal shares, or ε_k ∝ k (later rounds, which
#: decide the committed trades, get more budget and less noise: Dvorkin et al.'s observation
#: that noise decreasing over the iterations costs less optimality).
BudgetSplit = Literal["uniform", "increasing"]

_NOISE_PURPOSE = zlib.crc32(b"bilateral-dp-noise")


def noise_rng(seed: int, slot: int, stream: int = 0) -> np.random.Generator:
    """The simulation's noise generator for one slot: determined by (seed, slot, stream) alone.

    `stream` separates repeated draws for the same slot (`welfare_vs_epsilon`'s repeats). Not a
    secure generator (module docstring).
    """
    return np.random.default_rng(np.random.SeedSequence([seed, _NOISE_PURPOSE, slot, stream]))


def iteration_epsilons(
    epsilon: float, iterations: int, split: BudgetSplit = "uniform"
) -> FloatArray:
    """Per-round budgets ε_k, k = 1..K, with Σ ε_k ≤ ε exactly (basic composition) [-], (K,).

    Args:
        epsilon: total budget ε per slot and peer, > 0 (∞ for a noise-free run).
        iterations: K, the number of rounds, >= 1.
        split: "uniform" (ε_k = ε/K) or "increasing" (ε_k ∝ k).
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if not epsilon > 0.0:
        raise ValueError("epsilon must be > 0")
    k = np.arange(1, iterations + 1, dtype=np.float64)
    weight = np.ones(iterations) if split == "uniform" else k
    shares: FloatArray = epsilon * (weight / weight.sum())
    # The shares' rounding can lift their sum an ulp above ε; lower them until it does not.
    while math.fsum(shares.tolist()) > epsilon:
        shares = np.nextafter(shares, 0.0)
    return shares


def laplace_scale_kwh(clip_kwh: float, epsilon_k: FloatArray) -> FloatArray:
    """Laplace scale of each round [kWh]: the L1 sensitivity q̄ of a peer's round of messages
    (module docstring) over the round's budget ε_k; 0 where ε_k = ∞."""
    eps = np.asarray(epsilon_k, dtype=np.float64)
    scale: FloatArray = np.where(np.isinf(eps), 0.0, clip_kwh / eps)
    return scale


def laplace_total_noise(n_peers: int, scale_kwh: float, rng: np.random.Generator) -> FloatArray:
    """One Laplace(0, scale) draw per peer [kWh], (n_peers,); zeros without drawing at scale 0.

    The noise the mechanism adds to every peer's total in a round.
    """
    if scale_kwh == 0.0:
        return np.zeros(n_peers)
    noise: FloatArray = rng.laplace(0.0, scale_kwh, n_peers)
    return noise


def laplace_message_noise(n_edges: int, scale_kwh: float, rng: np.random.Generator) -> FloatArray:
    """Independent Laplace(0, scale) noise on every message [kWh], (n_edges,): the per-message
    alternative (module docstring), kept for comparison; zeros at scale 0."""
    return laplace_total_noise(n_edges, scale_kwh, rng)


def release_totals(total_kwh: FloatArray, noise_kwh: FloatArray, clip_kwh: float) -> FloatArray:
    """The released totals T̃ = clip(T + noise, 0, q̄) [kWh] (the clip is post-processing)."""
    released: FloatArray = np.clip(total_kwh + noise_kwh, 0.0, clip_kwh)
    return released


def project_to_totals(
    u_kwh: FloatArray, total_kwh: FloatArray, problems: LocalProblems, layout: SortedLayout
) -> FloatArray:
    """Each peer's targets projected onto its simplex {t ≥ 0, Σ_e t_e = T_n} [kWh], (2E,).

    This is `solve_local` for a peer that wants as much as it may (σ_n·b_n = −∞) with cap T_n:
    t_e = max(0, u_e − θ_n) with the level θ_n that makes the total T_n (0 when T_n = 0). It
    depends on the targets and T_n only, so it is a public function of a released total, and at
    T_n = Σ of the local solution it returns that solution (module docstring).
    """
    n_peers = total_kwh.size
    eager = replace(problems, signed_price=np.full(n_peers, -np.inf), quantity_kwh=total_kwh)
    eager_layout = replace(
        layout,
        sb_edge=np.full(layout.sorted_owner.size, -np.inf),
        q_edge=total_kwh[layout.sorted_owner],
    )
    return solve_local(u_kwh, 1.0, eager, eager_layout)


@dataclass(frozen=True, eq=False)
class PrivateIterationResult:
    """The public transcript's final state after K noisy rounds, and its accounting.

    Attributes:
        seller_kwh, buyer_kwh: the released proposals of round K, t̃_s and t̃_b [kWh], (E,).
        consensus_kwh: m^K = (t̃_s + t̃_b)/2 per pair [kWh], (E,).
        price: λ^K per pair [currency/kWh], (E,).
        epsilon_per_iteration: ε_k of each round [-], (K,).
        noise_scale_kwh: Laplace scale of each round [kWh], (K,).
        released_total_kwh: every peer's released total T̃ in every round [kWh], (K, n_peers):
            one release per peer and round, exactly K rounds.
        primal_residual: ‖t̃_s − t̃_b‖₂ of round K [kWh].
        dual_residual: ρ·‖m^K − m^{K−1}‖₂ [currency/kWh].
    """

    seller_kwh: FloatArray
    buyer_kwh: FloatArray
    consensus_kwh: FloatArray
    price: FloatArray
    epsilon_per_iteration: FloatArray
    noise_scale_kwh: FloatArray
    released_total_kwh: FloatArray
    primal_residual: float
    dual_residual: float

    @property
    def iterations(self) -> int:
        return int(self.epsilon_per_iteration.size)

    @property
    def epsilon_spent(self) -> float:
        """Σ ε_k, the privacy loss of the slot's transcript for every peer [-]."""
        return math.fsum(self.epsilon_per_iteration.tolist())


def run_private_admm(
    problems: LocalProblems,
    cost_seller: FloatArray,
    cost_buyer: FloatArray,
    *,
    rho: float,
    initial_price: float,
    epsilon_per_iteration: FloatArray,
    clip_kwh: float,
    rng: np.random.Generator,
) -> PrivateIterationResult:
    """K = len(epsilon_per_iteration) rounds of consensus ADMM with Laplace-perturbed messages.

    Round k, for all peers at once (module docstring): targets u_s = m + (λ − c_s)/ρ,
    u_b = m − (λ + c_b)/ρ from the public state; the exact local solutions (`solve_local`, with
    every q_n clipped to q̄); each peer's total plus Laplace(q̄/ε_k), clipped to [0, q̄]; the
    messages as the projection of the targets onto the released totals; then
    λ ← λ − (ρ/2)·(t̃_s − t̃_b) and m ← (t̃_s + t̃_b)/2 from the released messages only. With
    ε_k = ∞ the rounds are those of `run_admm`.

    Args:
        problems: the peers' data and edge layout; quantities are clipped to `clip_kwh` here.
        cost_seller, cost_buyer: c_nm of each side of each pair [currency/kWh], (E,).
        rho: ADMM penalty ρ [currency/kWh²].
        initial_price: λ⁰, public [currency/kWh].
        epsilon_per_iteration: ε_k of every round (`iteration_epsilons`) [-].
        clip_kwh: q̄, the public bound on a peer's total [kWh].
        rng: the noise generator (`noise_rng`).
    """
    capped = replace(problems, quantity_kwh=np.minimum(problems.quantity_kwh, clip_kwh))
    layout = capped.layout()
    n = capped.n_pairs
    n_peers = capped.signed_price.size
    scale = laplace_scale_kwh(clip_kwh, epsilon_per_iteration)
    iterations = scale.size
    released_totals = np.zeros((iterations, n_peers))
    price = np.full(n, initial_price)
    mean = np.zeros(n)
    message = np.zeros(2 * n)
    inv_rho = 1.0 / rho
    c_s = cost_seller * inv_rho
    c_b = cost_buyer * inv_rho
    u = np.empty(2 * n)
    primal = dual = 0.0
    for k in range(iterations):
        scaled = price * inv_rho
        np.add(mean, scaled, out=u[:n])
        u[:n] -= c_s
        np.subtract(mean, scaled, out=u[n:])
        u[n:] -= c_b
        t = solve_local(u, rho, capped, layout)
        total = np.bincount(capped.owner, t, n_peers).astype(np.float64, copy=False)
        noise = laplace_total_noise(n_peers, float(scale[k]), rng)
        released = release_totals(total, noise, clip_kwh)
        released_totals[k] = released
        message = project_to_totals(u, released, capped, layout)
        gap = message[:n] - message[n:]
        price -= (0.5 * rho) * gap
        new_mean = 0.5 * (message[:n] + message[n:])
        primal = float(np.sqrt(np.dot(gap, gap)))
        step = new_mean - mean
        dual = rho * float(np.sqrt(np.dot(step, step)))
        mean = new_mean
    return PrivateIterationResult(
        seller_kwh=message[:n].copy(),
        buyer_kwh=message[n:].copy(),
        consensus_kwh=mean,
        price=price,
        epsilon_per_iteration=np.asarray(epsilon_per_iteration, dtype=np.float64).copy(),
        noise_scale_kwh=scale,
        released_total_kwh=released_totals,
        primal_residual=primal,
        dual_residual=dual,
    )


def fit_boxes(volume_kwh: FloatArray, owner: IntArray, quantity_kwh: FloatArray) -> FloatArray:
    """`volume_kwh` scaled down per owner so that every owner's sum is at most its quantity,
    exactly in floating point [kWh], (len(volume_kwh),). Owners within their box are untouched.
    """
    n = quantity_kwh.size
    out = np.array(volume_kwh, dtype=np.float64, copy=True)
    total = np.bincount(owner, out, n)
    over = total > quantity_kwh
    # q/T rounds, and so does the sum of the scaled volumes: step the factor down by an ulp until
    # no sum exceeds its box (one or two passes).
    while over.any():
        factor = np.ones(n)
        factor[over] = np.nextafter(quantity_kwh[over] / total[over], 0.0)
        out *= factor[owner]
        total = np.bincount(owner, out, n)
        over = total > quantity_kwh
    return out


def commit_trades(
    consensus_kwh: FloatArray,
    price: FloatArray,
    pair_seller: IntArray,
    pair_buyer: IntArray,
    limit_price: FloatArray,
    quantity_kwh: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The committed proposals of both sides of every pair [kWh], each (E,) (module docstring).

    Each side accepts the public offer (volume max(m, 0) at `price`) only at a price within its
    effective limit (seller: ask ≤ price, buyer: price ≤ bid), then scales its accepted volumes
    down to fit its box (`fit_boxes`). The pair trades min(seller's, buyer's) commitment, which
    is reciprocal and keeps both peers within their boxes.

    Args:
        consensus_kwh: m^K of each pair [kWh], (E,).
        price: the pair's public price, already within [feed-in, retail] [currency/kWh], (E,).
        pair_seller, pair_buyer: peer index of each pair's seller and buyer, (E,).
        limit_price: effective limit price of every peer [currency/kWh], (n_peers,).
        quantity_kwh: every peer's box min(q_n, q̄) [kWh], (n_peers,).
    """
    accepted = (limit_price[pair_seller] <= price) & (price <= limit_price[pair_buyer])
    offer = np.where(accepted, np.maximum(consensus_kwh, 0.0), 0.0)
    return (
        fit_boxes(offer, pair_seller, quantity_kwh),
        fit_boxes(offer, pair_buyer, quantity_kwh),
    )
