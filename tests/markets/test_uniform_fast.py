"""Uniform clearing against a frozen copy of the implementation it replaced, bit for bit.

The per-side packed-key sort, the prefix-only work and the searchsorted pairing of
`peergrid.markets.uniform` must reproduce the earlier implementation exactly: fills, per-order
prices, trades, the clearing price and `info`, down to the sign of zero. The earlier code (git
be7a1b3, `src/peergrid/markets/uniform.py`) is copied below with only its names prefixed
`_ref_`; do not "fix" it, it is the specification.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from math import isqrt
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from peergrid.markets import merit_order as merit_order_module
from peergrid.markets import uniform
from peergrid.markets.base import ClearingResult, FloatArray, IntArray, OrderBook, Side
from peergrid.markets.merit_order import merit_order, pair_fills
from peergrid.markets.uniform import PriceRule, clear_uniform

# --- the reference: the implementation before the fast path, unchanged but for names ----------

REL_TOL = 1e-12


_REF_LARGE_BOOK = 4096


# The hot path calls ndarray methods and ufunc methods rather than the np.* wrappers (np.cumsum,
# np.searchsorted, np.argsort, np.full, ...): at 100 orders the wrappers' dispatch overhead is
# larger than the work, and avoiding it halves the time per call.
_ref_cumsum = np.add.accumulate
_REF_PLUS_INF = np.array([np.inf])
_REF_PLUS_INF.flags.writeable = False


def _ref_filled(n: int, value: float) -> FloatArray:
    out = np.empty(n)
    out.fill(value)
    return out


def _ref_nothing(n_orders: int) -> ClearingResult:
    return ClearingResult(
        filled_kwh=np.zeros(n_orders),
        price=_ref_filled(n_orders, np.nan),
        info={"cleared_kwh": 0.0, "self_matched_kwh": 0.0},
    )


def _ref_merit_order(side: NDArray[np.int8], price: FloatArray, order_id: IntArray) -> IntArray:
    """Positions of the orders in merit order: all bids (price descending), then all asks (price
    ascending), ties by id ascending.

    Small books use one `np.lexsort`. Large books whose ids increase with position (the engine's
    books) sort a float key once without stability, then restore the tie order with one sort of
    an int64 composite key (side, price rank, position): about 3x faster than a lexsort.
    """
    key = np.where(side, price, -price)  # Side.BUY == 0: bids by −price
    n = key.size
    if n <= _REF_LARGE_BOOK or not bool((order_id[1:] > order_id[:-1]).all()):
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


def _ref_accepted_bids(
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
    if n <= _REF_LARGE_BOOK:
        return int(np.count_nonzero(accepted(slice(None))))
    stride = isqrt(n)
    coarse = np.arange(0, n, stride)
    k = int(np.count_nonzero(accepted(coarse)))
    if k == 0:
        return 0
    lo = int(coarse[k - 1])  # accepted; coarse[k] (if any) is not
    return lo + int(np.count_nonzero(accepted(slice(lo, min(lo + stride, n)))))


def _ref_fill_side(
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


def _ref_wash_self_matches(
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


def _ref_pair(
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
    points = np.concatenate((_ref_cumsum(bid_fill), _ref_cumsum(ask_fill)))
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


def _ref_clear_uniform(book: OrderBook, price_rule: PriceRule = "midpoint") -> ClearingResult:
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
        return _ref_nothing(n)
    order = _ref_merit_order(side, book.price, book.id)
    sorted_price = book.price[order]
    sorted_q = book.quantity_kwh[order]
    bid_price = sorted_price[:n_bids]
    ask_price = sorted_price[n_bids:]
    if bid_price[0] < ask_price[0]:
        return _ref_nothing(n)
    bid_q = sorted_q[:n_bids]
    ask_q = sorted_q[n_bids:]
    bid_cum = _ref_cumsum(bid_q)
    ask_cum = _ref_cumsum(ask_q)
    tol_kwh = REL_TOL * (float(bid_cum[-1]) + float(ask_cum[-1]))

    n_bid_acc = _ref_accepted_bids(
        bid_price,
        bid_cum,
        bid_q,
        ask_cum=ask_cum,
        ask_price_ext=np.concatenate((ask_price, _REF_PLUS_INF)),
        tol_kwh=tol_kwh,
    )
    if n_bid_acc == 0:
        return _ref_nothing(n)
    # Q* lies in the last accepted bid's interval and ends where that bid or the asks priced at
    # most its limit run out (trailing zero-quantity bids leave both ends unchanged).
    last_bid_kwh = float(bid_cum[n_bid_acc - 1])
    n_ask_within = int(ask_price.searchsorted(bid_price[n_bid_acc - 1], side="right"))
    cleared_kwh = min(last_bid_kwh, float(ask_cum[n_ask_within - 1]))
    if cleared_kwh <= tol_kwh:
        return _ref_nothing(n)

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
    bid_fill = _ref_fill_side(bid_q, bid_cum, n_bid_above, n_bid_tied, cleared_kwh)
    ask_fill = _ref_fill_side(ask_q, ask_cum, n_ask_above, n_ask_tied, cleared_kwh)
    bids = order[:n_bid_tied]
    asks = order[n_bids : n_bids + n_ask_tied]

    self_matched_kwh = 0.0
    accepted = np.concatenate((bids, asks))
    acc_participant = book.participant[accepted]
    sorted_participant = acc_participant.copy()
    sorted_participant.sort()
    if np.logical_or.reduce(sorted_participant[1:] == sorted_participant[:-1]):
        is_bid = np.arange(accepted.size) < bids.size
        fill, self_matched_kwh = _ref_wash_self_matches(
            acc_participant, np.concatenate((bid_fill, ask_fill)), is_bid
        )
        bid_fill = fill[: bids.size]
        ask_fill = fill[bids.size :]

    filled_kwh = np.zeros(n)
    filled_kwh[bids] = bid_fill
    filled_kwh[asks] = ask_fill
    price = np.where(filled_kwh > 0.0, clearing_price, np.nan)
    trade_buy, trade_sell, trade_kwh = _ref_pair(bids, bid_fill, asks, ask_fill, tol_kwh)
    return ClearingResult(
        filled_kwh=filled_kwh,
        price=price,
        clearing_price=clearing_price,
        operator_surplus=0.0,
        trade_buy=trade_buy,
        trade_sell=trade_sell,
        trade_kwh=trade_kwh,
        trade_price=_ref_filled(trade_kwh.size, clearing_price),
        info={
            "cleared_kwh": cleared_kwh,
            "self_matched_kwh": self_matched_kwh,
            "marginal_bid_price": bid_marginal,
            "marginal_ask_price": ask_marginal,
        },
    )


# --- comparison ---------------------------------------------------------------------------------

ARRAYS = ("filled_kwh", "price", "trade_buy", "trade_sell", "trade_kwh", "trade_price")
SCALARS = ("clearing_price", "buy_price", "sell_price", "operator_surplus")


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_identical(new: ClearingResult, old: ClearingResult) -> None:
    """Same arrays (dtype, shape, bytes: NaN where NaN, −0.0 where −0.0) and the same scalars."""
    for name in ARRAYS:
        a, b = getattr(new, name), getattr(old, name)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert a.tobytes() == b.tobytes(), name
    for name in SCALARS:
        assert _bits(getattr(new, name)) == _bits(getattr(old, name)), name
    assert new.pool == old.pool
    assert new.info.keys() == old.info.keys()
    for key, value in old.info.items():
        assert _bits(new.info[key]) == _bits(value), key


def check_book(book: OrderBook, rule: PriceRule = "midpoint") -> None:
    """The fast implementation, on its default paths and with every book forced onto the
    large-book path, against the reference."""
    expected = _ref_clear_uniform(book, rule)
    assert_identical(clear_uniform(book, rule), expected)
    with patch.object(uniform, "LARGE_BOOK", 1):
        assert_identical(clear_uniform(book, rule), expected)


# --- random books -------------------------------------------------------------------------------


def _prices(n: int, rng: np.random.Generator) -> FloatArray:
    kind = int(rng.integers(0, 9))
    if kind == 0:  # continuous, no ties
        return rng.uniform(0.05, 0.35, n)
    if kind == 1:  # cents: many ties
        return np.round(rng.uniform(-0.1, 0.4, n), 2)
    if kind == 2:  # a handful of levels: long tie runs
        return rng.choice(np.array([0.1, 0.2, 0.2, 0.3]), n)
    if kind == 3:  # everyone at one price
        return np.full(n, 0.25)
    if kind == 4:  # signed zeros and their neighbours
        return rng.choice(np.array([0.0, -0.0, 5e-324, -5e-324, 1.0, -1.0]), n)
    if kind == 5:  # a few ulps apart: equal in every bit the packed sort key keeps
        ulps: FloatArray = rng.integers(0, 64, n) * np.spacing(0.2)
        return 0.2 + ulps
    if kind == 6:  # huge and tiny magnitudes, both signs
        magnitude: FloatArray = np.power(10.0, rng.uniform(-300, 300, n))
        return rng.choice(np.array([-1.0, 1.0]), n) * magnitude
    if kind == 7:  # bids all below asks is likely: no crossing
        return rng.uniform(0.0, 1.0, n)
    return np.round(rng.lognormal(-1.5, 0.5, n), 4)


def _quantities(n: int, rng: np.random.Generator) -> FloatArray:
    kind = int(rng.integers(0, 7))
    if kind == 0:
        return rng.uniform(0.0, 5.0, n)
    if kind == 1:  # integers and zeros
        return rng.integers(0, 4, n).astype(np.float64)
    if kind == 2:  # all zero
        return np.zeros(n)
    if kind == 3:  # rounding residues: 0.1 + 0.2 != 0.3
        return rng.choice(np.array([0.1, 0.2, 0.3, 1.0 / 3.0, 0.0]), n)
    if kind == 4:  # residue-sized orders next to large ones
        return rng.choice(np.array([1e-17, 3e-13, 1.0, 1e3]), n)
    if kind == 5:  # mostly zero
        return np.where(rng.random(n) < 0.9, 0.0, rng.uniform(0.0, 2.0, n))
    return np.round(rng.uniform(0.0, 3.0, n), 3)


def _ids(n: int, rng: np.random.Generator) -> IntArray:
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return np.arange(n, dtype=np.int64)
    if kind == 1:  # increasing with gaps
        return np.cumsum(rng.integers(1, 5, n)).astype(np.int64)
    if kind == 2:
        return rng.permutation(n).astype(np.int64)
    return rng.choice(np.arange(-(2**40), 2**40, 2**20 + 7, dtype=np.int64), n, replace=False)


def _participants(n: int, rng: np.random.Generator) -> IntArray:
    kind = int(rng.integers(0, 4))
    if kind == 0:  # one order each: no self-trade possible
        return np.arange(n, dtype=np.int64)
    if kind == 1:  # a few participants holding both bids and asks
        return rng.integers(0, 5, n).astype(np.int64)
    if kind == 2:
        return rng.integers(0, max(n // 2, 1), n).astype(np.int64)
    return rng.integers(0, 3, n).astype(np.int64) * 10**12  # sparse labels


def random_book(n: int, rng: np.random.Generator) -> OrderBook:
    """A book of `n` orders drawn from one of many regimes (ties, residues, self-trades, ...)."""
    p_buy = float(rng.choice([0.0, 1.0, 0.5, 0.3, 0.9, rng.random()]))
    side = np.where(rng.random(n) < p_buy, Side.BUY, Side.SELL).astype(np.int8)
    price = _prices(n, rng)
    if rng.random() < 0.2:  # asks priced above bids: the sides barely cross
        price = np.where(side == Side.SELL, price + 0.1, price)
    return OrderBook(
        id=_ids(n, rng),
        participant=_participants(n, rng),
        side=side,
        quantity_kwh=_quantities(n, rng),
        price=price,
    )


def _sizes(rng: np.random.Generator, count: int) -> Iterator[int]:
    for _ in range(count):
        yield int(rng.choice([rng.integers(0, 12), rng.integers(12, 300), rng.integers(300, 3000)]))


RULES: tuple[PriceRule, ...] = ("midpoint", "marginal_bid", "marginal_ask")


@pytest.mark.parametrize("seed", range(8))
def test_random_books_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in _sizes(rng, 60):
        check_book(random_book(n, rng), RULES[int(rng.integers(0, 3))])


@pytest.mark.parametrize("seed", range(6))
def test_large_books_match_the_reference(seed: int) -> None:
    # above LARGE_BOOK, so both implementations take their large-book paths
    rng = np.random.default_rng(100 + seed)
    for n in (4097, int(rng.integers(5_000, 40_000))):
        check_book(random_book(n, rng), RULES[seed % 3])


def test_benchmark_book_matches_the_reference() -> None:
    rng = np.random.default_rng(1)
    n = 200_000
    book = OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=rng.integers(0, 2, n).astype(np.int8),
        quantity_kwh=rng.uniform(0.0, 5.0, n),
        price=rng.uniform(0.05, 0.35, n),
    )
    assert_identical(clear_uniform(book), _ref_clear_uniform(book))


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ([], []),
        ([(1.0, 1.0)], []),
        ([], [(1.0, 1.0)]),
        ([(1.0, 1.0)], [(2.0, 1.0)]),
        ([(1.0, 0.0)], [(0.5, 1.0)]),
        ([(1.0, 0.0), (2.0, 0.0)], [(0.5, 0.0)]),
        ([(-0.0, 1.0), (0.0, 1.0)], [(-0.0, 1.5), (0.0, 1.0)]),
        ([(0.0, 1.0)], [(-0.0, 1.0)]),
        ([(10.0, 0.1), (9.0, 0.2), (1.0, 0.5)], [(2.0, 0.3), (8.0, 1.0)]),
    ],
)
def test_edge_books_match_the_reference(
    bids: list[tuple[float, float]], asks: list[tuple[float, float]]
) -> None:
    for participant in (None, [0] * (len(bids) + len(asks))):
        n = len(bids) + len(asks)
        book = OrderBook(
            id=np.arange(n, dtype=np.int64)[::-1].copy(),
            participant=np.arange(n, dtype=np.int64)
            if participant is None
            else np.array(participant, np.int64),
            side=np.array([Side.BUY] * len(bids) + [Side.SELL] * len(asks), np.int8),
            quantity_kwh=np.array([q for _, q in bids + asks], dtype=np.float64),
            price=np.array([p for p, _ in bids + asks], dtype=np.float64),
        )
        for rule in RULES:
            check_book(book, rule)


kwh = st.one_of(
    st.just(0.0), st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0, 1.0, 1e-17]), st.floats(0.0, 10.0)
)
limit = st.one_of(
    st.sampled_from([0.0, -0.0, 0.1, 0.2, 0.2 + 2**-55, 0.3]),
    st.floats(-1e300, 1e300, allow_subnormal=True),
)


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    n = draw(st.integers(0, 30))
    ids = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n, unique=True))
    return OrderBook(
        id=np.array(ids, np.int64),
        participant=np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), np.int64),
        side=np.array(
            draw(st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=n, max_size=n)),
            np.int8,
        ),
        quantity_kwh=np.array(draw(st.lists(kwh, min_size=n, max_size=n)), np.float64),
        price=np.array(draw(st.lists(limit, min_size=n, max_size=n)), np.float64),
    )


@settings(max_examples=300, deadline=None)
@given(book=books(), rule=st.sampled_from(RULES))
def test_hypothesis_books_match_the_reference(book: OrderBook, rule: PriceRule) -> None:
    check_book(book, rule)


# --- the shared building blocks (McAfee uses them too) -----------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_merit_order_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    for n in (0, 1, 2, 50, 5_000, 30_000):
        book = random_book(n, rng)
        expected = np.lexsort(
            (book.id, np.where(book.side == Side.BUY, -book.price, book.price), book.side)
        )
        for threshold in (1, merit_order_module.LARGE_BOOK):
            with patch.object(merit_order_module, "LARGE_BOOK", threshold):
                got = merit_order(book.side, book.price, book.id)
            np.testing.assert_array_equal(got, expected)
        if n > _REF_LARGE_BOOK:
            np.testing.assert_array_equal(
                _ref_merit_order(book.side, book.price, book.id), expected
            )


@pytest.mark.parametrize("seed", range(4))
def test_pair_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    for _ in range(40):
        n_bids, n_asks = (int(k) for k in rng.integers(1, 400, 2))
        bid_fill = _quantities(n_bids, rng)
        ask_fill = _quantities(n_asks, rng)
        bids: NDArray[np.int64] = rng.permutation(n_bids + n_asks)[:n_bids].astype(np.int64)
        asks: NDArray[np.int64] = np.arange(n_asks, dtype=np.int64) + 1000
        tol_kwh = float(rng.choice([0.0, 1e-12, 1e-3]))
        got = pair_fills(bids, bid_fill, asks, ask_fill, tol_kwh)
        expected = _ref_pair(bids, bid_fill, asks, ask_fill, tol_kwh)
        for a, b in zip(got, expected, strict=True):
            assert (a.dtype, a.tobytes()) == (b.dtype, b.tobytes())
