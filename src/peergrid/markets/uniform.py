"""Uniform-price double auction (pay-as-clear) for one slot.

Merit order: bids by limit price descending, asks ascending, ties by order `id`. The auction trades
the efficient (competitive) volume Q*, the largest volume at which the marginal bid is still at
least the marginal ask (bid = ask trades), which maximises Σ(bid − ask) over the matched volume.
Every trade clears at one price; by default the midpoint of the lowest accepted bid and the
highest accepted ask, so no buyer pays above its limit and no seller receives below its limit.
As with any single price inside [marginal ask, marginal bid], a rejected bid may lie above the
price (or a rejected ask below it); the k-double auction's competitive interval is a separate
mechanism.

Conventions:
- Ties: all orders strictly better than the marginal price fill fully; the orders whose limit
  equals the marginal price (on each side separately) share the remaining volume pro rata to
  their quantities, regardless of id. Elsewhere ties only order the bilateral pairing, by id.
- Zero-quantity orders never fill and never set the price.
- Rounding: cumulative volumes are float sums, so two breakpoints that are equal in exact
  arithmetic may differ by a few ulps. Volumes below `tol_kwh` = 1e-12 × (total bid + ask volume)
  are treated as zero when locating the margin and when pairing; without this a rounding residue
  of 1e-17 kWh could make a far-off order marginal and move the price.
- Self-trades: the book is cleared as submitted (price and every other participant's fill are
  those of the full book). A participant whose buy and sell orders both fill would only buy its
  own energy at the clearing price (a money-neutral wash), so min(Σ its buy fills, Σ its sell
  fills) is removed from both of its sides, pro rata over its orders on each side, before the
  pairing. Afterwards no participant has fills on both sides, so no bilateral trade can pair a
  participant with itself. The removed volume is `info["self_matched_kwh"]`; it is the
  participant's own energy, to be netted behind its meter by settlement, not community trade. The
  engine sends one net order per participant, which never triggers this.
- Bilateral trades: the accepted (filled) volumes of both sides are laid out along one volume axis
  in merit order; every interval between consecutive cumulative-fill breakpoints is one trade
  between the buy and the sell order covering it, at the clearing price. Σ trades per order equals
  its fill up to float rounding (about 1e-16 × the book's volume), and there are at most
  n_bids + n_asks − 1 trades.
- Nothing trades (all fills 0, prices NaN, no trades, `clearing_price` NaN) when a side is empty,
  the best bid is below the best ask, or Q* is rounding residue. When self-matching removes all
  volume, `clearing_price` still reports the book's price though nothing fills.

The implementation is a sort, cumulative sums and searchsorted: no Python loop over orders.
"""

from __future__ import annotations

from math import isqrt
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    IntArray,
    MarketContext,
    MechanismParams,
    OrderBook,
)

PriceRule = Literal["midpoint", "marginal_bid", "marginal_ask"]

#: Volumes below this fraction of the book's total volume count as rounding residue [-].
REL_TOL = 1e-12


class UniformParams(MechanismParams):
    """Parameters of the uniform-price double auction."""

    price_rule: PriceRule = Field(
        default="midpoint",
        description=(
            "Clearing price from the lowest accepted bid b and the highest accepted ask a: "
            "'midpoint' (b + a)/2, 'marginal_bid' b, 'marginal_ask' a."
        ),
    )


#: Books larger than this use the O(n log n)-with-small-constant paths (composite-key sort,
#: two-level prefix search); smaller ones use the paths with the fewest numpy calls.
_LARGE_BOOK = 4096


# The hot path calls ndarray methods and ufunc methods rather than the np.* wrappers (np.cumsum,
# np.searchsorted, np.argsort, np.full, ...): at 100 orders the wrappers' dispatch overhead is
# larger than the work, and avoiding it halves the time per call.
_cumsum = np.add.accumulate
_PLUS_INF = np.array([np.inf])
_PLUS_INF.flags.writeable = False


def _filled(n: int, value: float) -> FloatArray:
    out = np.empty(n)
    out.fill(value)
    return out


def _nothing(n_orders: int) -> ClearingResult:
    return ClearingResult(
        filled_kwh=np.zeros(n_orders),
        price=_filled(n_orders, np.nan),
        info={"cleared_kwh": 0.0, "self_matched_kwh": 0.0},
    )


def merit_order(side: NDArray[np.int8], price: FloatArray, order_id: IntArray) -> IntArray:
    """Positions of the orders in merit order: all bids (price descending), then all asks (price
    ascending), ties by id ascending.

    Small books use one `np.lexsort`. Large books whose ids increase with position (the engine's
    books) sort a float key once without stability, then restore the tie order with one sort of
    an int64 composite key (side, price rank, position): about 3x faster than a lexsort.
    """
    key = np.where(side, price, -price)  # Side.BUY == 0: bids by −price
    n = key.size
    if n <= _LARGE_BOOK or not bool((order_id[1:] > order_id[:-1]).all()):
        return np.lexsort((order_id, key, side))
    perm = key.argsort()
    sorted_key = key[perm]
    composite = np.zeros(n, np.int64)  # becomes (side, rank of key, position), in place
    np.add.accumulate(sorted_key[1:] != sorted_key[:-1], dtype=np.int64, out=composite[1:])
    n_ranks = int(composite[-1]) + 1
    composite += side[perm].astype(np.int64) * n_ranks
    composite *= n
    composite += perm
    composite.sort()
    np.remainder(composite, n, out=composite)
    return composite


def _accepted_bids(
    bid_price: FloatArray,
    bid_cum: FloatArray,
    bid_q: FloatArray,
    *,
    ask_cum: FloatArray,
    ask_price_ext: FloatArray,
    tol_kwh: float,
) -> int:
    """How many bids (in merit order) cross the asks.

    A bid is accepted when its price is at least the price of the ask serving the volume just
    after the bid's start (`ask_price_ext` ends with +∞ for "no ask left"). Along the merit order
    bid prices fall and the ask prices met rise, so the accepted bids form a prefix; large books
    find its end with a two-level search (about 2√n checks instead of n).
    """

    def accepted(idx: slice | IntArray) -> NDArray[np.bool_]:
        start = bid_cum[idx] - bid_q[idx] + tol_kwh
        met = ask_price_ext[ask_cum.searchsorted(start, side="right")]
        return bid_price[idx] >= met

    n = bid_price.size
    if n <= _LARGE_BOOK:
        return int(np.count_nonzero(accepted(slice(None))))
    stride = isqrt(n)
    coarse = np.arange(0, n, stride)
    k = int(np.count_nonzero(accepted(coarse)))
    if k == 0:
        return 0
    lo = int(coarse[k - 1])  # accepted; coarse[k] (if any) is not
    return lo + int(np.count_nonzero(accepted(slice(lo, min(lo + stride, n)))))


def _fill_side(
    q_kwh: FloatArray, cum_kwh: FloatArray, n_above: int, n_tied: int, cleared_kwh: float
) -> FloatArray:
    """Fills of one side's first `n_tied` orders in merit order: the first `n_above` in full, the
    tie group at the marginal price pro rata to quantity, so that the side totals `cleared_kwh`."""
    above_kwh = float(cum_kwh[n_above - 1]) if n_above else 0.0
    tied_kwh = float(cum_kwh[n_tied - 1]) - above_kwh
    share = min(max((cleared_kwh - above_kwh) / tied_kwh, 0.0), 1.0) if tied_kwh > 0.0 else 0.0
    fill = q_kwh[:n_tied].copy()
    fill[n_above:] *= share
    return fill


def _wash_self_matches(
    participant: IntArray, fill_kwh: FloatArray, is_bid: NDArray[np.bool_]
) -> tuple[FloatArray, float]:
    """Remove each participant's self-matched volume min(Σ buy fills, Σ sell fills) from both of its
    sides, pro rata over its orders on each side. Returns the new fills and the removed volume."""
    _, inv = np.unique(participant, return_inverse=True)
    bid_fill = np.where(is_bid, fill_kwh, 0.0)
    ask_fill = fill_kwh - bid_fill
    total_bid = np.bincount(inv, weights=bid_fill)
    total_ask = np.bincount(inv, weights=ask_fill)
    washed = np.minimum(total_bid, total_ask)
    if not washed.any():
        return fill_kwh, 0.0
    side_total = np.where(is_bid, total_bid[inv], total_ask[inv])
    # washed == side_total gives exactly 1 − 1 = 0; side_total == 0 means nothing to wash.
    keep = 1.0 - np.divide(
        washed[inv], side_total, out=np.zeros_like(side_total), where=side_total > 0
    )
    return fill_kwh * keep, float(washed.sum())


def _pair(
    bids: IntArray, bid_fill: FloatArray, asks: IntArray, ask_fill: FloatArray, tol_kwh: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """Bilateral trades from the two sides' fills in merit order.

    Both sides' cumulative fills are merged on one volume axis (a stable merge of two sorted runs,
    bid breakpoints first on equal volumes); each interval between consecutive breakpoints is one
    trade between the bid and the ask whose fills cover it, i.e. those with as many breakpoints
    before it. Intervals of at most `tol_kwh` (rounding residue, or zero-fill orders) merge into
    the next interval.
    """
    n_bids = bids.size
    points = np.concatenate((_cumsum(bid_fill), _cumsum(ask_fill)))
    merged = points.argsort(kind="stable")
    end_kwh = min(float(points[n_bids - 1]), float(points[-1]))
    volume = np.minimum(points[merged], end_kwh)
    is_bid_point = merged < n_bids
    bids_before: IntArray = np.add.accumulate(is_bid_point, dtype=np.int64) - is_bid_point
    step = volume.copy()
    step[1:] -= volume[:-1]
    keep = (step > tol_kwh).nonzero()[0]
    n_bids_before = bids_before[keep]
    trade_buy = bids[n_bids_before]
    trade_sell = asks[keep - n_bids_before]
    trade_kwh = volume[keep]
    trade_kwh[1:] -= trade_kwh[:-1]  # ufuncs buffer overlapping operands
    return trade_buy, trade_sell, trade_kwh


def clear_uniform(book: OrderBook, price_rule: PriceRule = "midpoint") -> ClearingResult:
    """Clear one slot's book as a uniform-price double auction; see the module docstring.

    Args:
        book: a validated order book (quantities >= 0, finite prices, unique ids, sides 0/1).
        price_rule: how the clearing price follows from the marginal bid and ask.

    Returns:
        Fills, per-order prices (the clearing price where filled, NaN elsewhere), the bilateral
        trades and `info` with `cleared_kwh` (Q* before self-match removal),
        `self_matched_kwh`, `marginal_bid_price` and `marginal_ask_price` [currency/kWh].
    """
    n = book.n_orders
    side = book.side
    n_bids = n - int(np.count_nonzero(side))
    if n_bids in (0, n):
        return _nothing(n)
    order = merit_order(side, book.price, book.id)
    sorted_price = book.price[order]
    sorted_q = book.quantity_kwh[order]
    bid_price = sorted_price[:n_bids]
    ask_price = sorted_price[n_bids:]
    if bid_price[0] < ask_price[0]:
        return _nothing(n)
    bid_q = sorted_q[:n_bids]
    ask_q = sorted_q[n_bids:]
    bid_cum = _cumsum(bid_q)
    ask_cum = _cumsum(ask_q)
    tol_kwh = REL_TOL * (float(bid_cum[-1]) + float(ask_cum[-1]))

    n_bid_acc = _accepted_bids(
        bid_price,
        bid_cum,
        bid_q,
        ask_cum=ask_cum,
        ask_price_ext=np.concatenate((ask_price, _PLUS_INF)),
        tol_kwh=tol_kwh,
    )
    if n_bid_acc == 0:
        return _nothing(n)
    # Q* lies in the last accepted bid's interval and ends where that bid or the asks priced at
    # most its limit run out (trailing zero-quantity bids leave both ends unchanged).
    last_bid_kwh = float(bid_cum[n_bid_acc - 1])
    n_ask_within = int(ask_price.searchsorted(bid_price[n_bid_acc - 1], side="right"))
    cleared_kwh = min(last_bid_kwh, float(ask_cum[n_ask_within - 1]))
    if cleared_kwh <= tol_kwh:
        return _nothing(n)

    # The marginal orders: the first on each side whose cumulative volume reaches Q* (up to
    # rounding), which skips zero-quantity orders.
    bid_marginal = float(bid_price[bid_cum.searchsorted(cleared_kwh - tol_kwh)])
    ask_marginal = float(ask_price[ask_cum.searchsorted(cleared_kwh - tol_kwh)])
    if price_rule == "midpoint":
        clearing_price = 0.5 * (bid_marginal + ask_marginal)
    elif price_rule == "marginal_bid":
        clearing_price = bid_marginal
    else:
        clearing_price = ask_marginal

    # Orders better than the margin fill fully; those tied at it share the rest pro rata.
    neg_bid_price = -bid_price  # ascending, for searchsorted
    n_bid_above = int(neg_bid_price.searchsorted(-bid_marginal, side="left"))
    n_bid_tied = int(neg_bid_price.searchsorted(-bid_marginal, side="right"))
    n_ask_above = int(ask_price.searchsorted(ask_marginal, side="left"))
    n_ask_tied = int(ask_price.searchsorted(ask_marginal, side="right"))
    bid_fill = _fill_side(bid_q, bid_cum, n_bid_above, n_bid_tied, cleared_kwh)
    ask_fill = _fill_side(ask_q, ask_cum, n_ask_above, n_ask_tied, cleared_kwh)
    bids = order[:n_bid_tied]
    asks = order[n_bids : n_bids + n_ask_tied]

    self_matched_kwh = 0.0
    accepted = np.concatenate((bids, asks))
    acc_participant = book.participant[accepted]
    sorted_participant = acc_participant.copy()
    sorted_participant.sort()
    if np.logical_or.reduce(sorted_participant[1:] == sorted_participant[:-1]):
        is_bid = np.arange(accepted.size) < bids.size
        fill, self_matched_kwh = _wash_self_matches(
            acc_participant, np.concatenate((bid_fill, ask_fill)), is_bid
        )
        bid_fill = fill[: bids.size]
        ask_fill = fill[bids.size :]

    filled_kwh = np.zeros(n)
    filled_kwh[bids] = bid_fill
    filled_kwh[asks] = ask_fill
    price = np.where(filled_kwh > 0.0, clearing_price, np.nan)
    trade_buy, trade_sell, trade_kwh = _pair(bids, bid_fill, asks, ask_fill, tol_kwh)
    return ClearingResult(
        filled_kwh=filled_kwh,
        price=price,
        clearing_price=clearing_price,
        operator_surplus=0.0,
        trade_buy=trade_buy,
        trade_sell=trade_sell,
        trade_kwh=trade_kwh,
        trade_price=_filled(trade_kwh.size, clearing_price),
        info={
            "cleared_kwh": cleared_kwh,
            "self_matched_kwh": self_matched_kwh,
            "marginal_bid_price": bid_marginal,
            "marginal_ask_price": ask_marginal,
        },
    )


class UniformPriceAuction:
    """Uniform-price (pay-as-clear) double auction over limit orders; see the module docstring."""

    name: ClassVar[str] = "uniform"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Uniform-price double auction (pay-as-clear): bids and asks in merit order, the "
        "efficient volume trades at one price between the marginal bid and ask."
    )
    Params: ClassVar[type[MechanismParams]] = UniformParams
    uses_net_positions: ClassVar[bool] = False

    params: MechanismParams

    def __init__(self, params: UniformParams | None = None) -> None:
        self.params = params if params is not None else UniformParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Clear one slot's book; the retail context is not used (limit prices decide)."""
        params = self.params
        if not isinstance(params, UniformParams):
            raise TypeError(f"uniform needs UniformParams, got {type(params).__name__}")
        return clear_uniform(book, params.price_rule)
