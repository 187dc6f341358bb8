"""Bill sharing (BS) community pricing (Long et al. 2017; time-varying form of Zhou et al. 2018).

C. Long, J. Wu, C. Zhang, L. Thomas, M. Cheng, N. Jenkins, "Peer-to-peer energy trading in a
community microgrid", IEEE PES GM 2017; Y. Zhou, J. Wu, C. Long, "Evaluation of peer-to-peer energy
sharing mechanisms based on a multiagent simulation framework", Applied Energy 222, 2018.

The community pays the retailer for its *net* flow only; bill sharing splits that one grid bill
over the members with one import and one export price for the whole billing period, computed after
the fact. With `net_kwh[t, n]` participant n's net position in slot t (export positive, the
nomenclature's sign), deficit⁺ = max(−net, 0), surplus⁺ = max(net, 0), and the community's grid
flows import_t = max(−Σ_n net[t, n], 0), export_t = max(Σ_n net[t, n], 0):

    p_import = Σ_t λ_buy,t · import_t / Σ_t Σ_n deficit⁺[t, n]
    p_export = Σ_t λ_sell,t · export_t / Σ_t Σ_n surplus⁺[t, n]
    bill_n   = p_import · Σ_t deficit⁺[t, n] − p_export · Σ_t surplus⁺[t, n]

Σ_n bill_n = Σ_t λ_buy,t·import_t − λ_sell,t·export_t, the community's grid bill, exactly (budget
balanced by construction; pinned to 1e-9 by a property test). Energy shared inside the community
is free: its cost is spread over everyone's imports and its value is lost to everyone's exports.
Hence p_import <= max_t λ_buy,t and p_export <= max_t λ_sell,t, but **neither price is bounded
below by the feed-in tariff**: when the community is nearly balanced both fall towards 0. With flat
tariffs every buyer pays at most retail and every seller earns at most feed-in, so bill sharing
rewards buyers and is *not* individually rational for sellers; unlike SDR and MMR its prices are
not in [λ_sell, λ_buy]. (Zhou et al. rank it last of the three on their overall index.)

Two faces in this module:

- The pure functions `bill_sharing_prices` and `bill_sharing_bills` price a whole billing period
  from a (T, P) net array. **They give the real bill**: the engine settles the period through
  `BillSharing.settle_period`, which calls `bill_sharing_bills`.
- `BillSharing`, registered as ``bill-sharing``, clears one slot behind the common interface so the
  slot loop and `peergrid clear` can run it. It shares what can be shared (the short side fills
  fully, the long side pro rata, as in `sdr`) and publishes the *single-slot* bill-sharing prices
  (the formulas above with T = 1) as `buy_price` = p_import and `sell_price` = p_export. These are
  provisional: the per-slot bills add up to each slot's grid bill, but they are not the period's
  bills (one price pair over the period moves money between slots and members). The shared energy
  itself changes hands at 0 per kWh: that is the only fill price for which each buyer's all-in cost
  fill·0 + (q − fill)·λ_buy equals q·p_import and each seller's fill·0 + (q − fill)·λ_sell equals
  q·p_export, because with T = 1 the long side's remainder is exactly the community's grid flow.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    MarketContext,
    MechanismParams,
    OrderBook,
    pool_result,
    side_totals,
)

#: Rows of the (T, P) net array processed at once: bounds the temporaries to ~8 MB per 1,000
#: participants while keeping numpy's per-call overhead negligible.
_CHUNK_SLOTS = 1024


class NetTotals(NamedTuple):
    """Positive parts of a (T, P) net array summed per slot and per participant [kWh].

    Attributes:
        total_sell_kwh: Σ_n max(net, 0) per slot (TSP, G), (T,).
        total_buy_kwh: Σ_n max(−net, 0) per slot (TBP, D), (T,).
        surplus_kwh: Σ_t max(net, 0) per participant, (P,).
        deficit_kwh: Σ_t max(−net, 0) per participant, (P,).
    """

    total_sell_kwh: FloatArray
    total_buy_kwh: FloatArray
    surplus_kwh: FloatArray
    deficit_kwh: FloatArray


class BillSharingPrices(NamedTuple):
    """Bill sharing's two period prices [currency/kWh]; NaN where nobody imports (exports)."""

    import_price: float
    export_price: float


def net_totals(net_kwh: ArrayLike) -> NetTotals:
    """Per-slot and per-participant sums of the surpluses and deficits of a (T, P) net array.

    One pass over the array in blocks of slots, so a year of 15-min slots for 1,000 participants
    (280 MB) needs no full-size temporary.

    Args:
        net_kwh: net positions [kWh], (T, P), export positive.
    """
    net = np.asarray(net_kwh, dtype=np.float64)
    if net.ndim != 2:
        raise ValueError(f"net_kwh must be (T, P), got shape {net.shape}")
    n_t, n_p = net.shape
    total_sell = np.empty(n_t)
    total_buy = np.empty(n_t)
    surplus = np.zeros(n_p)
    deficit = np.zeros(n_p)
    buf = np.empty((min(_CHUNK_SLOTS, n_t), n_p))
    for start in range(0, n_t, _CHUNK_SLOTS):
        block = net[start : start + _CHUNK_SLOTS]
        part = buf[: block.shape[0]]
        np.maximum(block, 0.0, out=part)
        part.sum(axis=1, out=total_sell[start : start + block.shape[0]])
        surplus += part.sum(axis=0)
        np.minimum(block, 0.0, out=part)
        np.negative(part, out=part)
        part.sum(axis=1, out=total_buy[start : start + block.shape[0]])
        deficit += part.sum(axis=0)
    return NetTotals(total_sell, total_buy, surplus, deficit)


def _slot_tariff(price: ArrayLike, n_t: int, name: str) -> FloatArray:
    out = np.asarray(price, dtype=np.float64)
    if out.shape != (n_t,):
        raise ValueError(f"{name} must be a profile of shape ({n_t},), got {out.shape}")
    return out


def bill_sharing_prices_from_totals(
    total_sell_kwh: ArrayLike,
    total_buy_kwh: ArrayLike,
    retail_price: ArrayLike,
    feed_in_price: ArrayLike,
) -> BillSharingPrices:
    """Period import and export prices from per-slot community totals.

    The community's grid import in slot t is max(D_t − G_t, 0), its export max(G_t − D_t, 0).

    Args:
        total_sell_kwh: G_t, Σ of the members' surpluses per slot [kWh], (T,).
        total_buy_kwh: D_t, Σ of the members' deficits per slot [kWh], (T,).
        retail_price: λ_buy,t [currency/kWh], (T,).
        feed_in_price: λ_sell,t [currency/kWh], (T,).

    Returns:
        (p_import, p_export) [currency/kWh]; p_import is NaN when Σ_t D_t = 0 (nobody has a
        deficit, so nobody is billed at it), p_export NaN when Σ_t G_t = 0.
    """
    g = np.asarray(total_sell_kwh, dtype=np.float64)
    d = np.asarray(total_buy_kwh, dtype=np.float64)
    diff = d - g
    grid_cost = float(np.dot(retail_price, np.maximum(diff, 0.0)))
    grid_revenue = float(np.dot(feed_in_price, np.maximum(-diff, 0.0)))
    sum_d = float(d.sum())
    sum_g = float(g.sum())
    p_import = grid_cost / sum_d if sum_d > 0.0 else float("nan")
    p_export = grid_revenue / sum_g if sum_g > 0.0 else float("nan")
    return BillSharingPrices(import_price=p_import, export_price=p_export)


def bill_sharing_prices(
    net_kwh: ArrayLike, retail_price: ArrayLike, feed_in_price: ArrayLike
) -> BillSharingPrices:
    """Bill sharing's import and export prices for a billing period (module docstring).

    Args:
        net_kwh: net positions [kWh], (T, P), export positive.
        retail_price: λ_buy,t [currency/kWh], (T,).
        feed_in_price: λ_sell,t [currency/kWh], (T,).

    Returns:
        (p_import, p_export) [currency/kWh], NaN where the price has no base (no deficit or no
        surplus in the whole period).
    """
    totals = net_totals(net_kwh)
    n_t = totals.total_sell_kwh.shape[0]
    return bill_sharing_prices_from_totals(
        totals.total_sell_kwh,
        totals.total_buy_kwh,
        _slot_tariff(retail_price, n_t, "retail_price"),
        _slot_tariff(feed_in_price, n_t, "feed_in_price"),
    )


def bill_sharing_bills(
    net_kwh: ArrayLike, retail_price: ArrayLike, feed_in_price: ArrayLike
) -> FloatArray:
    """Each participant's energy cost for the billing period under bill sharing [currency], (P,).

    bill_n = p_import · Σ_t deficit⁺[t, n] − p_export · Σ_t surplus⁺[t, n]; positive = pays. The
    bills sum to `community_grid_bill` (budget balance). A participant with no deficit (surplus)
    pays (earns) nothing at the import (export) price, also where that price is NaN.

    Args:
        net_kwh: net positions [kWh], (T, P), export positive.
        retail_price: λ_buy,t [currency/kWh], (T,).
        feed_in_price: λ_sell,t [currency/kWh], (T,).
    """
    totals = net_totals(net_kwh)
    n_t = totals.total_sell_kwh.shape[0]
    p_import, p_export = bill_sharing_prices_from_totals(
        totals.total_sell_kwh,
        totals.total_buy_kwh,
        _slot_tariff(retail_price, n_t, "retail_price"),
        _slot_tariff(feed_in_price, n_t, "feed_in_price"),
    )
    # NaN prices only occur where the matching energy is 0 everywhere
    cost = totals.deficit_kwh * (0.0 if np.isnan(p_import) else p_import)
    return cost - totals.surplus_kwh * (0.0 if np.isnan(p_export) else p_export)


def community_grid_bill(
    net_kwh: ArrayLike, retail_price: ArrayLike, feed_in_price: ArrayLike
) -> float:
    """What the retailer bills the community for its net flow over the period [currency]:
    Σ_t λ_buy,t·max(−Σ_n net, 0) − λ_sell,t·max(Σ_n net, 0)."""
    net = np.asarray(net_kwh, dtype=np.float64)
    if net.ndim != 2:
        raise ValueError(f"net_kwh must be (T, P), got shape {net.shape}")
    n_t = net.shape[0]
    flow = net.sum(axis=1)
    retail = _slot_tariff(retail_price, n_t, "retail_price")
    feed_in = _slot_tariff(feed_in_price, n_t, "feed_in_price")
    return float(np.dot(retail, np.maximum(-flow, 0.0)) - np.dot(feed_in, np.maximum(flow, 0.0)))


class BillSharingSlotPrices(NamedTuple):
    """Single-slot bill-sharing prices [currency/kWh], arrays broadcast over the inputs."""

    import_price: FloatArray
    export_price: FloatArray


def bill_sharing_slot_prices(
    total_sell_kwh: ArrayLike,
    total_buy_kwh: ArrayLike,
    retail_price: ArrayLike,
    feed_in_price: ArrayLike,
) -> BillSharingSlotPrices:
    """Bill sharing with a billing period of one slot, vectorised over slots (each its own
    period): p_import = λ_buy·max(1 − G/D, 0), p_export = λ_sell·max(1 − D/G, 0).

    Args:
        total_sell_kwh: G, the community's total surplus [kWh], >= 0.
        total_buy_kwh: D, the community's total deficit [kWh], >= 0.
        retail_price: λ_buy [currency/kWh].
        feed_in_price: λ_sell [currency/kWh].

    Returns:
        (p_import, p_export) [currency/kWh]; p_import is NaN where D = 0, p_export where G = 0.
        p_import lies in [0, λ_buy], p_export in [0, λ_sell] (for λ >= 0).
    """
    g = np.asarray(total_sell_kwh, dtype=np.float64)
    d = np.asarray(total_buy_kwh, dtype=np.float64)
    lam_buy = np.asarray(retail_price, dtype=np.float64)
    lam_sell = np.asarray(feed_in_price, dtype=np.float64)
    g, d, lam_buy, lam_sell = np.broadcast_arrays(g, d, lam_buy, lam_sell)
    # λ·max(1 − G/D, 0) rather than λ·max(D − G, 0)/D: a factor <= 1 keeps the price <= λ
    # after rounding
    p_import = np.full(g.shape, np.nan)
    p_export = np.full(g.shape, np.nan)
    has_d, has_g = d > 0.0, g > 0.0
    ratio = np.divide(g, d, out=np.zeros(g.shape), where=has_d)
    np.multiply(lam_buy, np.maximum(1.0 - ratio, 0.0), out=p_import, where=has_d)
    ratio = np.divide(d, g, out=np.zeros(g.shape), where=has_g)
    np.multiply(lam_sell, np.maximum(1.0 - ratio, 0.0), out=p_export, where=has_g)
    return BillSharingSlotPrices(import_price=p_import, export_price=p_export)


def _slot_prices_scalar(
    total_sell_kwh: float, total_buy_kwh: float, retail_price: float, feed_in_price: float
) -> tuple[float, float]:
    """`bill_sharing_slot_prices` for one slot in plain floats: (p_import, p_export). The
    clearing hot path calls this; a test pins it to the vectorised function."""
    g, d = total_sell_kwh, total_buy_kwh
    nan = float("nan")
    p_import = retail_price * max(1.0 - g / d, 0.0) if d > 0.0 else nan
    p_export = feed_in_price * max(1.0 - d / g, 0.0) if g > 0.0 else nan
    return p_import, p_export


class BillSharingParams(MechanismParams):
    """Bill sharing has no parameters: its prices follow from the book and the retail context."""


class BillSharing:
    """Bill sharing for one slot (provisional); the period's real bill is `bill_sharing_bills`.

    Quantities are net positions: BUY orders are the participants' deficits, SELL orders their
    surpluses; limit prices are ignored. The book is assumed validated (one net order per
    participant, quantities >= 0); nothing is re-checked here.

    Result conventions: `pool=True`, no bilateral trades; the short side fills fully, the long side
    pro rata; per-order `price` = 0 where the order fills (shared energy is free), NaN where it
    does not; `buy_price` = the single-slot p_import, `sell_price` = the single-slot p_export
    (NaN when nobody buys / sells); `clearing_price` = NaN; `operator_surplus` = 0. `info` holds
    `total_buy_kwh` and `total_sell_kwh`.
    """

    name: ClassVar[str] = "bill-sharing"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Bill sharing (Long et al. 2017, Zhou et al. 2018): the community's net grid bill is "
        "split by one import and one export price per billing period, computed after the fact."
    )
    Params: ClassVar[type[MechanismParams]] = BillSharingParams
    uses_net_positions: ClassVar[bool] = True

    params: MechanismParams

    def __init__(self, params: BillSharingParams | None = None) -> None:
        self.params = params if params is not None else BillSharingParams()

    def settle_period(
        self, net_kwh: FloatArray, retail_price: FloatArray, feed_in_price: FloatArray
    ) -> FloatArray:
        """The period's real energy cost per participant, (P,): see `bill_sharing_bills`."""
        return bill_sharing_bills(net_kwh, retail_price, feed_in_price)

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Share one slot's net positions inside the community at the provisional prices."""
        total_buy_kwh, total_sell_kwh = side_totals(book)
        p_import, p_export = _slot_prices_scalar(
            total_sell_kwh, total_buy_kwh, ctx.retail_price, ctx.feed_in_price
        )
        info = {"total_buy_kwh": total_buy_kwh, "total_sell_kwh": total_sell_kwh}
        # shared energy is free: the remainders at the tariff make each side's one-slot price
        return pool_result(book, fill_price=0.0, buy_price=p_import, sell_price=p_export, info=info)
