"""The merit order that the double auctions share (uniform, k-double, pay-as-bid, McAfee, CDA).

Merit order: bids by limit price descending, then asks by limit price ascending, ties by order
`id` (`merit_order`). Large books sort once by a packed int64 key (price bits, inverted for bids,
then position) and look at ids only where prices tie (`packed_merit_order`); `SortedBook` reads a
book's prices in merit order without gathering them (`ArrayBook`, `PackedBook`).

Along the merit order the mechanisms share two steps after they have decided who fills how much:

- `wash_self_matches`: a participant whose buy and sell orders both fill would only buy its own
  energy (a money-neutral wash), so min(Σ its buy fills, Σ its sell fills) is removed from both
  of its sides, pro rata over its orders on each side;
- `pair_fills`: the two sides' fills are laid out along one volume axis in merit order; every
  interval between consecutive cumulative-fill breakpoints is one bilateral trade between the
  bid and the ask covering it.

Rounding: cumulative volumes are float sums, so volumes below `REL_TOL` × the book's volume are
rounding residue (`uniform`, `mcafee`, `k_double`, `cda` use the same bound).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from peergrid.markets.base import FloatArray, IntArray

#: Volumes below this fraction of the book's total volume count as rounding residue [-].
REL_TOL = 1e-12

#: Books larger than this use the paths that scale (one packed-key sort, two-level prefix search,
#: table-based self-trade check, few full-length temporaries); smaller ones use the paths with the
#: fewest numpy calls.
LARGE_BOOK = 4096


# The hot path calls ndarray methods and ufunc methods rather than the np.* wrappers (np.cumsum,
# np.searchsorted, np.argsort, np.full, ...): at 100 orders the wrappers' dispatch overhead is
# larger than the work, and avoiding it halves the time per call.
_cumsum = np.add.accumulate
_PLUS_INF = np.array([np.inf])
_PLUS_INF.flags.writeable = False

#: Order-preserving map of finite doubles onto int64: flip the magnitude bits of negative values.
_MAGNITUDE_BITS = np.int64(0x7FFF_FFFF_FFFF_FFFF)
#: Added to the price bits halved (so the sum is >= 0) before the bids' bits are inverted (< 0).
_HALF_RANGE = 1 << 62


def _ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """The concatenation of arange(s, e) over the (disjoint) ranges [s, e)."""
    lengths = ends - starts
    offsets = starts - _cumsum(lengths) + lengths
    return np.repeat(offsets, lengths) + np.arange(int(lengths.sum()))


def _order_bits(price: FloatArray) -> IntArray:
    """int64 values in the order of the (finite) prices, the same for −0.0 and +0.0."""
    bits = price.view(np.int64)
    ordered = bits >> 63
    ordered &= _MAGNITUDE_BITS  # flip the magnitude bits of negative prices
    ordered ^= bits
    np.putmask(ordered, ordered == -1, 0)  # −0.0, just below +0.0 so far
    return ordered


def packed_merit_order(
    side: NDArray[np.int8], price: FloatArray, order_id: IntArray, n_bids: int
) -> tuple[IntArray, IntArray, int]:
    """Merit order of a large book: positions of all bids (price descending), then all asks
    (price ascending), ties by id; also the sorted packed keys and the number of position bits
    (`PackedBook` searches them).

    One in-place `ndarray.sort` of int64 values (numpy's SIMD sort, about 3x faster than
    `argsort` of a float key, and sorting no index array alongside) orders the packed keys:
    the price's order-preserving bits, halved and moved to [0, 2^63), inverted for bids (so
    bids are negative and descend in price), with the low `shift` bits replaced by the
    position. That is the merit order except within runs that agree in every kept bit: prices
    a few ulps apart, or equal prices whose ids do not increase with position. A vectorised
    check over the pairs that share their kept bits finds the runs that are out of order, and
    only those are lexsorted by (price, id).
    """
    n = side.size
    packed = _order_bits(price)
    packed >>= 1
    packed += _HALF_RANGE
    packed ^= side - 1  # −1 for bids: ~packed < 0, by price descending; asks >= 0
    shift = max(n - 1, 1).bit_length()
    low = (1 << shift) - 1
    packed &= ~low
    order = np.arange(n, dtype=np.int64)
    packed |= order
    packed.sort()
    np.bitwise_and(packed, low, out=order)

    high = packed >> shift
    pair = (high[1:] == high[:-1]).nonzero()[0]  # (i, i + 1) share the kept bits, and the side
    del high
    if pair.size:
        first = order[pair]
        second = order[pair + 1]
        first_price = price[first]
        second_price = price[second]
        wrong = np.where(pair < n_bids, second_price > first_price, second_price < first_price)
        wrong |= (second_price == first_price) & (order_id[second] < order_id[first])
        pair = pair[wrong]
    if pair.size:
        run_high = np.unique(packed[pair] >> shift)
        members = _ranges(
            packed.searchsorted(run_high << shift), packed.searchsorted((run_high + 1) << shift)
        )
        run = order[members]
        run_price = price[run]
        run_key = np.where(members < n_bids, -run_price, run_price)
        order[members] = run[np.lexsort((order_id[run], run_key, packed[members] >> shift))]
    return order, packed, shift


def merit_order(side: NDArray[np.int8], price: FloatArray, order_id: IntArray) -> IntArray:
    """Positions of the orders in merit order: all bids (price descending), then all asks (price
    ascending), ties by id ascending.

    Small books use one `np.lexsort`; large books one packed-key sort (`packed_merit_order`).
    """
    n = side.size
    if n <= LARGE_BOOK:
        return np.lexsort((order_id, np.where(side, price, -price), side))
    return packed_merit_order(side, price, order_id, n - int(np.count_nonzero(side)))[0]


#: searchsorted's side: "left" counts the elements strictly better than a price, "right" also
#: those equal to it.
SearchSide = Literal["left", "right"]


class SortedBook(Protocol):
    """A book's prices in merit order, as `_margin` reads them. Positions count from the top of
    each side; `ask_price_ext` gives +∞ at position n_asks ("no ask left")."""

    def bid_price(self, at: int | slice | IntArray) -> FloatArray: ...

    def ask_price(self, at: int) -> float: ...

    def ask_price_ext(self, at: IntArray) -> FloatArray: ...

    def n_bids_above(self, price: float, side: SearchSide) -> int:
        """How many bids are priced above `price` ("left") or at least at it ("right")."""

    def n_asks_below(self, price: float, side: SearchSide) -> int:
        """How many asks are priced below `price` ("left") or at most at it ("right")."""


class ArrayBook:
    """A small book's prices in merit order, as arrays."""

    __slots__ = ("_ask_ext", "_bid", "_neg_bid")

    def __init__(self, sorted_price: FloatArray, n_bids: int) -> None:
        self._bid = sorted_price[:n_bids]
        self._neg_bid = -self._bid  # ascending, for searchsorted
        self._ask_ext = np.concatenate((sorted_price[n_bids:], _PLUS_INF))

    def bid_price(self, at: int | slice | IntArray) -> FloatArray:
        return self._bid[at]

    def ask_price(self, at: int) -> float:
        return float(self._ask_ext[at])

    def ask_price_ext(self, at: IntArray) -> FloatArray:
        return self._ask_ext[at]

    def n_bids_above(self, price: float, side: SearchSide) -> int:
        return int(self._neg_bid.searchsorted(-price, side=side))

    def n_asks_below(self, price: float, side: SearchSide) -> int:
        return int(self._ask_ext.searchsorted(price, side=side))


class PackedBook:
    """A large book's prices in merit order, read through `packed_merit_order`'s result without
    gathering them all: a search finds the run of orders sharing the packed key's kept bits by
    binary search over the packed keys, then compares exact prices within that run only."""

    __slots__ = ("_bids", "_n_bids", "_order", "_packed", "_price", "_shift")

    def __init__(
        self, order: IntArray, packed: IntArray, shift: int, price: FloatArray, n_bids: int
    ) -> None:
        self._order = order
        self._bids = order[:n_bids]
        self._packed = packed
        self._shift = shift
        self._price = price
        self._n_bids = n_bids

    def bid_price(self, at: int | slice | IntArray) -> FloatArray:
        return self._price[self._bids[at]]

    def ask_price(self, at: int) -> float:
        return float(self._price[self._order[self._n_bids + at]])

    def ask_price_ext(self, at: IntArray) -> FloatArray:
        at = at + self._n_bids
        n = self._order.size
        out: FloatArray = self._price[self._order[np.minimum(at, n - 1)]]
        out[at == n] = np.inf
        return out

    def _run(self, packed_key: int) -> tuple[int, FloatArray]:
        """Where the run of orders whose packed keys share `packed_key`'s kept bits starts, and
        their prices in merit order."""
        kept = packed_key >> self._shift << self._shift
        start = int(self._packed.searchsorted(kept))
        end = int(self._packed.searchsorted(kept + (1 << self._shift)))
        return start, self._price[self._order[start:end]]

    def n_bids_above(self, price: float, side: SearchSide) -> int:
        bits = int(_order_bits(np.array([price]))[0])
        start, run = self._run(~((bits >> 1) + _HALF_RANGE))  # as in `packed_merit_order`
        return start + int(np.negative(run).searchsorted(-price, side=side))

    def n_asks_below(self, price: float, side: SearchSide) -> int:
        bits = int(_order_bits(np.array([price]))[0])
        start, run = self._run((bits >> 1) + _HALF_RANGE)
        return start - self._n_bids + int(run.searchsorted(price, side=side))


def wash_self_matches(
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


def pair_fills(
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
    points = np.empty(n_bids + asks.size)
    _cumsum(bid_fill, out=points[:n_bids])
    _cumsum(ask_fill, out=points[n_bids:])
    end_kwh = min(float(points[n_bids - 1]), float(points[-1]))
    merged = points.argsort(kind="stable")  # timsort: one merge of the two runs
    volume = points.take(merged)
    np.minimum(volume, end_kwh, out=volume)
    is_bid_point = merged < n_bids
    del merged
    bids_before: IntArray = _cumsum(is_bid_point, dtype=np.int64)
    bids_before -= is_bid_point
    step = points  # the breakpoints' buffer, no longer needed
    step[0] = volume[0]
    np.subtract(volume[1:], volume[:-1], out=step[1:])
    keep = (step > tol_kwh).nonzero()[0]
    del step, points
    n_bids_before = bids_before.take(keep)
    del bids_before
    trade_kwh = volume.take(keep)
    del volume
    trade_kwh[1:] -= trade_kwh[:-1]  # ufuncs buffer overlapping operands
    trade_buy = bids.take(n_bids_before)
    keep -= n_bids_before  # asks before each kept breakpoint
    trade_sell = asks.take(keep)
    return trade_buy, trade_sell, trade_kwh
