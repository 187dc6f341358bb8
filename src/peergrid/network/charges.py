"""Network usage charges on peer-to-peer trades (Baroche et al., IEEE TPWRS 34(4), 2019).

A P2P trade uses the distribution network between the seller's and the buyer's connection
points, so the operator may charge it per kWh. Three designs from Baroche et al., plus none:

- "uniform": every kWh traded between two different participants pays `fee_per_kwh`;
- "distance": a kWh sold by i to j pays `fee_per_kwh + fee_per_kwh_per_ohm · d_ij`, with d_ij the
  electrical distance of `electrical_distance` [Ω] (Baroche's γ·d_nm with `fee_per_kwh` = 0);
- "zonal": `fee_per_kwh` on trades between zones, `intra_zone_fee_per_kwh` inside a zone
  (`feeder_zones`: by default each cable leaving the substation's LV busbar is a zone).

The fee is paid by the buyer, the seller, or half each ("split", the default). Energy bought
from or sold to the retailer pays no P2P charge here (it pays the ordinary grid tariff).

Everything is a pure function of arrays: `pair_volumes_kwh` turns one slot's clearing into a
participant × participant matrix of energy sold, `pair_fees_per_kwh` gives the fee of every
pair, and `network_charges` what each participant pays and what the operator collects.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from peergrid.errors import InputError
from peergrid.markets.base import ClearingResult, OrderBook
from peergrid.network.feeder import S_BASE_MVA, Feeder

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

TariffKind = Literal["none", "uniform", "distance", "zonal"]
Payer = Literal["buyer", "seller", "split"]

#: Buses below this nominal voltage are low-voltage [kV].
_LV_KV = 1.0


# --- who traded with whom -----------------------------------------------------------------------


def pair_volumes_kwh(book: OrderBook, clearing: ClearingResult, n_participants: int) -> FloatArray:
    """Energy sold by participant i to participant j in one slot [kWh], (P, P).

    Mechanisms that name the partners of every trade (`clearing.trade_kwh` non-empty: uniform,
    pay-as-bid, CDA, McAfee, bilateral, ...) give the matrix directly: each trade adds its
    energy at (participant of its sell order, participant of its buy order). Pool mechanisms
    (`clearing.pool`, or no trades reported: SDR, MMR, bill sharing, coordinated, ...) only
    say how much each order filled; the pool is then split pro rata,
    q_ij = sold_i · bought_j / Σ sold, as if every seller's energy were spread over the buyers in
    proportion to what they bought.

    Row sums are the energy each participant sold in the market and column sums the energy it
    bought (for a pool exactly the column sums; the row sums up to the rounding of Σ sold vs
    Σ bought, which a pool makes equal). A participant with both a buy and a sell order that the
    mechanism matched with each other appears on the diagonal; it pays no charge and causes no
    loss there.

    Args:
        book: the slot's order book (`book.participant` maps orders to participants).
        clearing: the mechanism's result for `book`.
        n_participants: P; every participant index in the book must be smaller.
    """
    if book.n_orders and int(book.participant.max()) >= n_participants:
        raise InputError(
            f"the book has participant index {int(book.participant.max())} but "
            f"n_participants = {n_participants}"
        )
    out = np.zeros((n_participants, n_participants))
    if clearing.trade_kwh.size and not clearing.pool:
        seller = book.participant[clearing.trade_sell]
        buyer = book.participant[clearing.trade_buy]
        np.add.at(out, (seller, buyer), clearing.trade_kwh)
        return out
    filled = clearing.filled_kwh
    sold = np.bincount(
        book.participant, weights=np.where(book.is_sell, filled, 0.0), minlength=n_participants
    )
    bought = np.bincount(
        book.participant, weights=np.where(book.is_buy, filled, 0.0), minlength=n_participants
    )
    total = float(sold.sum())
    if total <= 0.0 or float(bought.sum()) <= 0.0:
        return out
    out[:] = sold[:, None] * (bought[None, :] / total)
    return out


# --- electrical distance and zones --------------------------------------------------------------


def electrical_distance(feeder: Feeder, bus_of: IntArray) -> FloatArray:
    """Electrical distance between participants' buses [Ω], (P, P).

    d_ij = Σ over the branches on the path between bus_of[i] and bus_of[j] of |z_b|, i.e. the
    branches that lie on exactly one of the two buses' paths to the slack (branches shared by
    both paths carry neither end's trade and cancel). |z_b| = √(r_b² + x_b²) is in ohm referred
    to the feeder's lowest nominal voltage (the LV level, 0.4 kV on the built-in feeders):
    |z_pu| · V_ref² / S_base, so an LV cable counts with its physical impedance and branches at
    other voltages as seen from the LV side.

    This is the length of the tree path under non-negative branch weights, so d is a metric on
    buses: 0 for participants on the same bus, symmetric, and it satisfies the triangle
    inequality (d_ij ≤ d_ik + d_kj, with equality when k lies on the path from i to j).
    """
    bus_of = np.asarray(bus_of, dtype=np.int64)
    if bus_of.size and (bus_of.min() < 0 or bus_of.max() >= feeder.n_bus):
        raise InputError(f"bus_of must index the feeder's {feeder.n_bus} buses")
    v_ref_kv = float(feeder.vn_kv.min())
    z_ohm = np.hypot(feeder.r_pu, feeder.x_pu) * (v_ref_kv**2 / S_BASE_MVA)
    buses, inverse = np.unique(bus_of, return_inverse=True)
    path = feeder.path[:, buses].astype(np.float64)  # (B, U)
    depth = z_ohm @ path  # |Z| from the slack to each bus, (U,)
    common = path.T @ (z_ohm[:, None] * path)  # |Z| of the shared part of two paths, (U, U)
    d_bus = np.maximum(depth[:, None] + depth[None, :] - 2.0 * common, 0.0)
    np.fill_diagonal(d_bus, 0.0)
    d_bus = 0.5 * (d_bus + d_bus.T)  # exact symmetry despite rounding
    out: FloatArray = d_bus[np.ix_(inverse, inverse)]
    return out


def feeder_zones(feeder: Feeder, bus_of: IntArray, zone_of_bus: IntArray | None = None) -> IntArray:
    """Network zone of every participant, (P,) int.

    By default (`zone_of_bus` None) a zone is a subtree hanging off a substation's LV busbar:
    every LV cable leaving the busbar starts one zone and holds every bus below it. The busbar
    is the LV side of a transformer (or the slack bus when it is itself LV), together with the
    buses joined to it by closed bus-bus switches. Labels: 0..H−1 for the H outgoing cables in
    branch order, then H + g for the buses of the g-th busbar itself, then one last label for
    every bus upstream of all busbars (the MV side). On a multi-substation feeder (CIGRE LV),
    every substation's cables are separate zones.

    Args:
        feeder: the feeder.
        bus_of: bus of every participant, (P,).
        zone_of_bus: user-given zone label of every bus, (N,) (any integers), or None.
    """
    bus_of = np.asarray(bus_of, dtype=np.int64)
    if bus_of.size and (bus_of.min() < 0 or bus_of.max() >= feeder.n_bus):
        raise InputError(f"bus_of must index the feeder's {feeder.n_bus} buses")
    if zone_of_bus is not None:
        zones = np.asarray(zone_of_bus, dtype=np.int64)
        if zones.shape != (feeder.n_bus,):
            raise InputError(f"zone_of_bus must have one label per bus ({feeder.n_bus})")
        out_user: IntArray = zones[bus_of]
        return out_user
    return _busbar_zones(feeder)[bus_of]


def _busbar_zones(feeder: Feeder) -> IntArray:
    """Zone label of every bus (see `feeder_zones`), (N,)."""
    kind = feeder.branch_kind
    is_lv = feeder.vn_kv < _LV_KV
    roots = feeder.branch_to[kind == "trafo"]
    if roots.size == 0 and is_lv[feeder.slack]:
        roots = np.array([feeder.slack], dtype=np.int64)
    # Grow each busbar through closed switches (branches are parent → child, BFS order free).
    group = np.full(feeder.n_bus, -1, dtype=np.int64)
    group[roots] = np.arange(roots.size)
    switch = np.flatnonzero(kind == "switch")
    changed = True
    while changed:
        changed = False
        for b in switch.tolist():
            parent, child = int(feeder.branch_from[b]), int(feeder.branch_to[b])
            if group[parent] >= 0 and group[child] < 0:
                group[child] = group[parent]
                changed = True
    on_busbar = group >= 0
    heads = np.flatnonzero(
        on_busbar[feeder.branch_from] & ~on_busbar[feeder.branch_to] & (kind != "trafo")
    )
    zone = np.full(feeder.n_bus, heads.size + roots.size, dtype=np.int64)  # upstream (MV)
    zone[on_busbar] = heads.size + group[on_busbar]
    if heads.size:
        below = feeder.path[heads]  # (H, N)
        # A bus below several heads (a substation inside an LV cable) takes the deepest one.
        depth = feeder.path[:, feeder.branch_to[heads]].sum(axis=0)  # (H,)
        score = np.where(below, depth[:, None], -1)
        deepest = score.argmax(axis=0)
        has_head = below.any(axis=0)
        zone[has_head] = deepest[has_head]
    return zone


# --- tariffs ------------------------------------------------------------------------------------


class NetworkTariff(BaseModel):
    """A network usage charge on P2P trades (module docstring). Fees are per kWh traded
    [currency/kWh]; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TariffKind = Field(
        default="none", description="'none', 'uniform', 'distance' or 'zonal'."
    )
    fee_per_kwh: float = Field(
        default=0.0,
        ge=0.0,
        description="uniform: the fee; distance: its fixed part; zonal: the inter-zone fee "
        "[currency/kWh].",
    )
    fee_per_kwh_per_ohm: float = Field(
        default=0.0,
        ge=0.0,
        description="distance: γ, fee per kWh and ohm of electrical distance [currency/(kWh·Ω)].",
    )
    intra_zone_fee_per_kwh: float = Field(
        default=0.0, ge=0.0, description="zonal: fee inside a zone [currency/kWh]."
    )
    payer: Payer = Field(
        default="split", description="who pays: 'buyer', 'seller' or 'split' (half each)."
    )


def pair_fees_per_kwh(
    tariff: NetworkTariff,
    distance_ohm: FloatArray | None = None,
    zones: IntArray | None = None,
    n_participants: int | None = None,
) -> FloatArray:
    """Fee for one kWh sold by participant i to participant j [currency/kWh], (P, P), ≥ 0,
    0 on the diagonal (a participant never pays for trading with itself).

    Args:
        tariff: the tariff.
        distance_ohm: `electrical_distance`, (P, P); needed by "distance".
        zones: `feeder_zones`, (P,); needed by "zonal".
        n_participants: P, when neither array is given ("none", "uniform").
    """
    sizes = {int(a.shape[0]) for a in (distance_ohm, zones) if a is not None} | (
        {n_participants} if n_participants is not None else set()
    )
    if len(sizes) != 1:
        raise InputError(
            "pair_fees_per_kwh needs the participant count: give distance_ohm, zones or "
            "n_participants, consistently"
        )
    (n,) = sizes
    fee: FloatArray
    if tariff.kind == "none":
        fee = np.zeros((n, n))
    elif tariff.kind == "uniform":
        fee = np.full((n, n), tariff.fee_per_kwh)
    elif tariff.kind == "distance":
        if distance_ohm is None:
            raise InputError("a distance tariff needs the electrical distances")
        fee = tariff.fee_per_kwh + tariff.fee_per_kwh_per_ohm * np.asarray(distance_ohm, float)
    else:
        if zones is None:
            raise InputError("a zonal tariff needs the participants' zones")
        z = np.asarray(zones)
        fee = np.where(
            z[:, None] == z[None, :], tariff.intra_zone_fee_per_kwh, tariff.fee_per_kwh
        ).astype(np.float64)
    if fee.shape != (n, n):
        raise InputError(f"distance_ohm must be ({n}, {n}), got {fee.shape}")
    np.fill_diagonal(fee, 0.0)
    return fee


def network_charges(
    pair_kwh: FloatArray, fees_per_kwh: FloatArray, payer: Payer = "split"
) -> tuple[FloatArray, float]:
    """What each participant pays for its P2P trades, and what the operator collects.

    The charge of pair (i, j) is fees_per_kwh[i, j] · pair_kwh[i, j] [currency]: the seller i
    pays it ("seller"), the buyer j ("buyer"), or each half ("split").

    Args:
        pair_kwh: energy sold by i to j [kWh], (P, P) (`pair_volumes_kwh`); the charges are
            linear in it, so a matrix summed over slots gives the period's charges at once.
        fees_per_kwh: `pair_fees_per_kwh`, (P, P).
        payer: who pays.

    Returns:
        (charge per participant [currency] (P,), operator revenue [currency]); the revenue is
        the sum of the charges, so the two balance exactly.
    """
    q = np.asarray(pair_kwh, dtype=np.float64)
    fee = np.asarray(fees_per_kwh, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != q.shape[1] or fee.shape != q.shape:
        raise InputError(f"pair_kwh {q.shape} and fees_per_kwh {fee.shape} must be equal (P, P)")
    charge = fee * q
    as_seller = charge.sum(axis=1)
    as_buyer = charge.sum(axis=0)
    if payer == "seller":
        per_participant = as_seller
    elif payer == "buyer":
        per_participant = as_buyer
    else:
        per_participant = 0.5 * (as_seller + as_buyer)
    return per_participant, float(per_participant.sum())
