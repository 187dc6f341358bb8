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

The implementation is a sort, cumulative sums and searchsorted: no Python loop over orders. Large
books sort once by a packed int64 key (price bits, inverted for bids, then position), look at ids
only where prices tie, and keep few full-length temporaries; see `merit_order.packed_merit_order`
and `merit_order.PackedBook`.
"""

from __future__ import annotations

from math import isqrt
from typing import ClassVar, Literal, NamedTuple

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
from peergrid.markets.merit_order import (
    LARGE_BOOK,
    REL_TOL,
    ArrayBook,
    PackedBook,
    SortedBook,
    packed_merit_order,
    pair_fills,
    wash_self_matches,
)

PriceRule = Literal["midpoint", "marginal_bid", "marginal_ask"]

# The hot path calls ndarray and ufunc methods (np.add.accumulate, .searchsorted), not the np.*
# wrappers, as `merit_order` explains.


class UniformParams(MechanismParams):
    """Parameters of the uniform-price double auction."""

    price_rule: PriceRule = Field(
        default="midpoint",
        description=(
            "Clearing price from the lowest accepted bid b and the highest accepted ask a: "
            "'midpoint' (b + a)/2, 'marginal_bid' b, 'marginal_ask' a."
        ),
    )


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


def _accepted_bids(
    book: SortedBook,
    bid_cum: FloatArray,
    bid_q: FloatArray,
    *,
    ask_cum: FloatArray,
    tol_kwh: float,
) -> int:
    """How many bids (in merit order) cross the asks.

    A bid is accepted when its price is at least the price of the ask serving the volume just
    after the bid's start (+∞ when no ask is left). Along the merit order bid prices fall and the
    ask prices met rise, so the accepted bids form a prefix; large books find its end with a
    two-level search (about 2√n checks instead of n).
    """

    def accepted(idx: slice | IntArray) -> NDArray[np.bool_]:
        start = bid_cum[idx] - bid_q[idx] + tol_kwh
        met = book.ask_price_ext(ask_cum.searchsorted(start, side="right"))
        return book.bid_price(idx) >= met

    n = bid_cum.size
    if n <= LARGE_BOOK:
        return int(np.count_nonzero(accepted(slice(None))))
    stride = isqrt(n)
    coarse = np.arange(0, n, stride)
    k = int(np.count_nonzero(accepted(coarse)))
    if k == 0:
        return 0
    lo = int(coarse[k - 1])  # accepted; coarse[k] (if any) is not
    return lo + int(np.count_nonzero(accepted(slice(lo, min(lo + stride, n)))))


class _Margin(NamedTuple):
    """Where a book clears: Q*, the rounding tolerance, the marginal prices and how many orders
    of each side (from the top of the merit order) fill at all."""

    cleared_kwh: float
    tol_kwh: float
    bid_marginal: float
    ask_marginal: float
    n_bid_filled: int
    n_ask_filled: int


def _fill_side(
    q_kwh: FloatArray, cum_kwh: FloatArray, n_above: int, n_tied: int, cleared_kwh: float
) -> None:
    """Turn one side's first `n_tied` quantities (merit order) into fills, in place: the first
    `n_above` in full, the tie group at the marginal price pro rata to quantity, so that the side
    totals `cleared_kwh`."""
    above_kwh = float(cum_kwh[n_above - 1]) if n_above else 0.0
    tied_kwh = float(cum_kwh[n_tied - 1]) - above_kwh
    share = min(max((cleared_kwh - above_kwh) / tied_kwh, 0.0), 1.0) if tied_kwh > 0.0 else 0.0
    q_kwh[n_above:n_tied] *= share


def _margin(book: SortedBook, q_kwh: FloatArray, n_bids: int) -> _Margin | None:
    """Locate Q* and the marginal orders of a book in merit order (`q_kwh` its quantities in
    that order), and turn the quantities of the orders that fill into their fills, in place.
    None if nothing trades."""
    bid_q = q_kwh[:n_bids]
    ask_q = q_kwh[n_bids:]
    bid_cum = np.add.accumulate(bid_q)
    ask_cum = np.add.accumulate(ask_q)
    tol_kwh = REL_TOL * (float(bid_cum[-1]) + float(ask_cum[-1]))

    n_bid_acc = _accepted_bids(book, bid_cum, bid_q, ask_cum=ask_cum, tol_kwh=tol_kwh)
    if n_bid_acc == 0:
        return None
    # Q* lies in the last accepted bid's interval and ends where that bid or the asks priced at
    # most its limit run out (trailing zero-quantity bids leave both ends unchanged).
    last_bid_kwh = float(bid_cum[n_bid_acc - 1])
    last_bid_price = float(book.bid_price(n_bid_acc - 1))
    n_ask_within = book.n_asks_below(last_bid_price, "right")
    cleared_kwh = min(last_bid_kwh, float(ask_cum[n_ask_within - 1]))
    if cleared_kwh <= tol_kwh:
        return None

    # The marginal orders: the first on each side whose cumulative volume reaches Q* (up to
    # rounding), which skips zero-quantity orders.
    bid_marginal = float(book.bid_price(int(bid_cum.searchsorted(cleared_kwh - tol_kwh))))
    ask_marginal = book.ask_price(int(ask_cum.searchsorted(cleared_kwh - tol_kwh)))

    # Orders better than the margin fill fully; those tied at it share the rest pro rata.
    n_bid_above = book.n_bids_above(bid_marginal, "left")
    n_bid_tied = book.n_bids_above(bid_marginal, "right")
    n_ask_above = book.n_asks_below(ask_marginal, "left")
    n_ask_tied = book.n_asks_below(ask_marginal, "right")
    _fill_side(bid_q, bid_cum, n_bid_above, n_bid_tied, cleared_kwh)
    _fill_side(ask_q, ask_cum, n_ask_above, n_ask_tied, cleared_kwh)
    return _Margin(cleared_kwh, tol_kwh, bid_marginal, ask_marginal, n_bid_tied, n_ask_tied)


def _any_shared(a: IntArray, b: IntArray) -> bool:
    """Whether some value occurs in both (non-empty) arrays; by a lookup table when the values
    are small non-negative integers (participant indices), else by `np.isin`."""
    lo = min(int(a.min()), int(b.min()))
    hi = max(int(a.max()), int(b.max()))
    if lo >= 0 and hi < 8 * (a.size + b.size):
        seen = np.zeros(hi + 1, np.bool_)
        seen[a] = True
        return bool(seen[b].any())
    return bool(np.isin(b, a).any())


def _may_self_match(participant: IntArray, bids: IntArray, asks: IntArray) -> bool:
    """Whether some participant has accepted orders (positions `bids`, `asks`) on both sides of a
    large book. Never when the book's participants strictly increase (one order each, as the
    engine sends), which one pass over the book shows; otherwise by `_any_shared`."""
    if bool(np.logical_and.reduce(participant[1:] > participant[:-1])):
        return False
    return _any_shared(participant[bids], participant[asks])


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
    large = n > LARGE_BOOK
    book_view: SortedBook
    if large:
        order, packed, shift = packed_merit_order(side, book.price, book.id, n_bids)
        if book.price[order[0]] < book.price[order[n_bids]]:  # best bid below best ask
            return _nothing(n)
        book_view = PackedBook(order, packed, shift, book.price, n_bids)
        del packed
    else:
        order = np.lexsort((book.id, np.where(side, book.price, -book.price), side))
        sorted_price = book.price[order]
        if sorted_price[0] < sorted_price[n_bids]:
            return _nothing(n)
        book_view = ArrayBook(sorted_price, n_bids)
    fill_kwh = book.quantity_kwh[order]  # becomes the fills, in place
    margin = _margin(book_view, fill_kwh, n_bids)
    del book_view  # 8 MB for a million orders; the pairing below needs the room more
    if margin is None:
        return _nothing(n)
    bid_marginal = margin.bid_marginal
    ask_marginal = margin.ask_marginal
    if price_rule == "midpoint":
        clearing_price = 0.5 * (bid_marginal + ask_marginal)
    elif price_rule == "marginal_bid":
        clearing_price = bid_marginal
    else:
        clearing_price = ask_marginal
    n_acc_bids = margin.n_bid_filled
    bids = order[:n_acc_bids]
    asks = order[n_bids : n_bids + margin.n_ask_filled]
    bid_fill = fill_kwh[:n_acc_bids]
    ask_fill = fill_kwh[n_bids : n_bids + margin.n_ask_filled]

    # Only a participant with accepted orders on both sides can self-match.
    self_matched_kwh = 0.0
    if large:
        acc_participant = None
        may_self_match = _may_self_match(book.participant, bids, asks)
    else:  # any repeat among the accepted: one sort (a repeat on one side washes nothing)
        acc_participant = book.participant[np.concatenate((bids, asks))]
        repeats = acc_participant.copy()
        repeats.sort()
        may_self_match = bool(np.logical_or.reduce(repeats[1:] == repeats[:-1]))
    if may_self_match:
        if acc_participant is None:
            acc_participant = book.participant[np.concatenate((bids, asks))]
        is_bid = np.arange(acc_participant.size) < n_acc_bids
        fill, self_matched_kwh = wash_self_matches(
            acc_participant, np.concatenate((bid_fill, ask_fill)), is_bid
        )
        bid_fill = fill[:n_acc_bids]
        ask_fill = fill[n_acc_bids:]

    trade_buy, trade_sell, trade_kwh = pair_fills(bids, bid_fill, asks, ask_fill, margin.tol_kwh)
    filled_kwh = np.zeros(n)
    filled_kwh[bids] = bid_fill
    filled_kwh[asks] = ask_fill
    if large:  # only accepted orders can have filled
        price = _filled(n, np.nan)
        price[bids[bid_fill > 0.0]] = clearing_price
        price[asks[ask_fill > 0.0]] = clearing_price
    else:
        price = np.where(filled_kwh > 0.0, clearing_price, np.nan)
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
            "cleared_kwh": margin.cleared_kwh,
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
