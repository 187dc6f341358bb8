"""Allocation of network losses to participants with bilateral exchange coefficients.

Guerrero, Chapman & Verbič (IEEE TSG 10(5), 2019), after the loss-allocation literature: a kW
injected at bus n changes the losses by LSF_n = ∂L/∂p_n (`linear.loss_sensitivity`), so a
transaction that moves energy q [kWh] from bus a to bus b causes the marginal loss

    ΔL = (LSF_a − LSF_b) · q = BEC_ab · q                                               [kWh]

with the bilateral exchange coefficient BEC_ab = LSF_a − LSF_b (antisymmetric; 0 on one bus).

Transactions of one slot. Participant n's net position net_n [kWh] (export positive) is split
into its P2P trades (q_ij: i sold to j, `charges.pair_volumes_kwh`) and a grid transaction with
the retailer, g_n = net_n − (Σ_j q_nj − Σ_i q_in), which the slack bus balances. The slack's
LSF is 0, so the grid transaction's marginal loss is LSF_n · g_n whether n exports (g_n > 0) or
imports (g_n < 0). Summed over all transactions the marginal losses are Σ_n LSF_n · net_n.

Scaling. Losses are (nearly) quadratic in the injections, so by Euler's theorem the marginal
losses add up to about twice the actual loss. Every slot's marginal losses are therefore scaled
by k_t = actual_t / Σ marginal_t, and the allocated losses add up to the actual losses exactly
(k_t ≈ ½ when the participants are the feeder's only injections). A marginal loss may be
negative: a transaction against the prevailing flow reduces the losses and is credited.
The transformer's no-load (iron) losses do not depend on the injections; to keep them out of
the allocation, pass the load-dependent losses (AC losses minus those at zero injection) as
the actual losses. On SimBench LV rural3 that gives k_t = 0.50 ± 0.01 (tests).

Guard. When Σ marginal_t ≤ `rel_tol` · Σ |marginal| over the slot's transactions (their
effects cancel, or their sum has the wrong sign, e.g. with flows of non-participants on the
feeder), k_t would be huge or negative; the slot's actual loss is then shared pro rata to
|net_n| (equally when every net position is 0), and each participant's share is split between
its P2P and grid parts in proportion to its P2P volume (Σ_j q_nj + Σ_i q_in) and |g_n|.

Who bears a pair's loss: half the seller, half the buyer (both chose the partner); the loss of
a grid transaction goes to its participant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.errors import InputError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class LossAllocation:
    """Losses allocated to participants. Shapes: (P,) and () for one slot, (T, P) and (T,) for T
    slots, following the inputs of `allocate_losses`.

    Attributes:
        p2p_kwh: allocated loss caused by the participant's P2P trades (half of each of its
            pairs' losses) [kWh].
        grid_kwh: allocated loss caused by its exchange with the retailer [kWh].
        scale: k = actual / Σ marginal of every slot [-] (NaN where the guard applied).
        marginal_p2p_kwh: the unscaled marginal losses of its P2P trades [kWh].
        marginal_grid_kwh: the unscaled marginal loss of its grid exchange [kWh].
        pro_rata: True where the guard allocated pro rata to |net| instead of scaling.
    """

    p2p_kwh: FloatArray
    grid_kwh: FloatArray
    scale: FloatArray
    marginal_p2p_kwh: FloatArray
    marginal_grid_kwh: FloatArray
    pro_rata: NDArray[np.bool_]

    @property
    def total_kwh(self) -> FloatArray:
        """Allocated loss of every participant [kWh]; sums to the actual loss of each slot."""
        total: FloatArray = self.p2p_kwh + self.grid_kwh
        return total


def bilateral_exchange_coefficients(lsf: FloatArray, bus_of: IntArray) -> FloatArray:
    """BEC_ij = LSF(bus_of[i]) − LSF(bus_of[j]) [kWh of loss per kWh moved from i to j],
    (..., P, P) for `lsf` (..., N)."""
    lp = np.asarray(lsf, dtype=np.float64)[..., np.asarray(bus_of, dtype=np.int64)]
    bec: FloatArray = lp[..., :, None] - lp[..., None, :]
    return bec


def allocate_losses(
    lsf: FloatArray,
    bus_of: IntArray,
    pair_kwh: FloatArray,
    net_kwh: FloatArray,
    actual_loss_kwh: float | FloatArray,
    *,
    rel_tol: float = 1e-3,
) -> LossAllocation:
    """Allocate every slot's actual network losses to the participants (module docstring).

    Args:
        lsf: ∂losses/∂p of every bus at the slot's operating point [kW/kW], (N,) or (T, N).
        bus_of: bus of every participant, (P,).
        pair_kwh: energy sold by participant i to participant j [kWh], (P, P) or (T, P, P).
        net_kwh: net position of every participant, export positive [kWh], (P,) or (T, P).
        actual_loss_kwh: the network losses to allocate [kWh], scalar or (T,).
        rel_tol: the guard's threshold on Σ marginal relative to Σ |marginal| [-]; it bounds
            k_t · Σ|marginal_t| by actual_t / rel_tol.

    Memory: a (T, P, P) temporary of the pair losses, like `pair_kwh` itself; call it per slot
    or per chunk of slots for long runs of large communities.

    Returns:
        The allocation, with (P,) arrays for one slot ((N,) `lsf`), else (T, P).
    """
    lsf_a = np.asarray(lsf, dtype=np.float64)
    single = lsf_a.ndim == 1
    lsf_t = lsf_a[None] if single else lsf_a
    q = np.asarray(pair_kwh, dtype=np.float64)
    net = np.asarray(net_kwh, dtype=np.float64)
    actual = np.asarray(actual_loss_kwh, dtype=np.float64)
    bus = np.asarray(bus_of, dtype=np.int64)
    n_p = bus.size
    if single:
        q, net, actual = q[None], net[None], actual.reshape(1)
    n_t = lsf_t.shape[0]
    if (
        lsf_t.ndim != 2
        or q.shape != (n_t, n_p, n_p)
        or net.shape != (n_t, n_p)
        or actual.shape != (n_t,)
    ):
        raise InputError(
            f"allocate_losses: inconsistent shapes lsf {lsf_a.shape}, bus_of {bus.shape}, "
            f"pair_kwh {np.shape(pair_kwh)}, net_kwh {np.shape(net_kwh)}, "
            f"actual_loss_kwh {np.shape(actual_loss_kwh)}"
        )
    if n_p and (bus.min() < 0 or bus.max() >= lsf_t.shape[1]):
        raise InputError(f"bus_of must index the {lsf_t.shape[1]} buses of lsf")

    lp = lsf_t[:, bus]  # (T, P)
    sold = q.sum(axis=2)
    bought = q.sum(axis=1)
    # The pair losses BEC_ij·q_ij, formed explicitly so that trades on one bus add exactly 0
    # (Σ_j lp_i·q_ij − Σ_j lp_j·q_ij would leave rounding noise that the scaling magnifies).
    pair_loss = (lp[:, :, None] - lp[:, None, :]) * q  # (T, P, P)
    marginal_p2p = 0.5 * (pair_loss.sum(axis=2) + pair_loss.sum(axis=1))
    grid = net - (sold - bought)
    marginal_grid = lp * grid

    total = pair_loss.sum(axis=(1, 2)) + marginal_grid.sum(axis=1)
    magnitude = np.abs(pair_loss).sum(axis=(1, 2)) + np.abs(marginal_grid).sum(axis=1)
    guard = ~(total > rel_tol * magnitude)
    with np.errstate(over="ignore"):  # a subnormal Σ marginal: guarded below
        raw = actual / np.where(guard, 1.0, total)
    guard |= ~np.isfinite(raw)
    scale = np.where(guard, np.nan, raw)
    k = np.where(guard, 0.0, scale)[:, None]
    p2p_kwh = k * marginal_p2p
    grid_kwh = k * marginal_grid

    if guard.any():
        g = np.flatnonzero(guard)
        weight = np.abs(net[g])
        weight_sum = weight.sum(axis=1, keepdims=True)
        share = np.where(
            weight_sum > 0.0,
            weight / np.where(weight_sum > 0.0, weight_sum, 1.0),
            1.0 / max(n_p, 1),
        )
        volume = sold[g] + bought[g]
        parts = volume + np.abs(grid[g])
        p2p_frac = np.where(parts > 0.0, volume / np.where(parts > 0.0, parts, 1.0), 0.0)
        alloc = actual[g, None] * share
        p2p_kwh[g] = alloc * p2p_frac
        grid_kwh[g] = alloc - p2p_kwh[g]

    if single:
        return LossAllocation(
            p2p_kwh=p2p_kwh[0],
            grid_kwh=grid_kwh[0],
            scale=scale.reshape(()),
            marginal_p2p_kwh=marginal_p2p[0],
            marginal_grid_kwh=marginal_grid[0],
            pro_rata=guard.reshape(()),
        )
    return LossAllocation(
        p2p_kwh=p2p_kwh,
        grid_kwh=grid_kwh,
        scale=scale,
        marginal_p2p_kwh=marginal_p2p,
        marginal_grid_kwh=marginal_grid,
        pro_rata=guard,
    )
