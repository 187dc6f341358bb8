"""Product differentiation in the bilateral market: each side's cost per kWh traded with a partner.

c_nm ≥ 0 is peer n's cost per kWh traded with m, charged on |P_nm|, so it never rewards a trade
and individual rationality holds against the limit prices. Sources, summed:
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

Costs are evaluated per edge, vectorised over (seller, buyer) pairs of participant indices;
nothing P×P is built unless the data already is (`distance_km`, the network's pair fees).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from peergrid.errors import InputError
from peergrid.markets.base import FloatArray, IntArray
from peergrid.markets.bilateral.params import BilateralParams

#: A pluggable per-edge cost: (owner participant, partner participant) arrays → the owner's cost
#: per kWh traded with that partner [currency/kWh], >= 0, vectorised over edges.
PairCost = Callable[[IntArray, IntArray], FloatArray]


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
