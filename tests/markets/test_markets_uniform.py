"""Uniform-price double auction: hand-computed examples, conventions and properties checked
against an independent brute-force reference."""

from __future__ import annotations

import math
from fractions import Fraction
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.markets import uniform
from peergrid.markets.base import ClearingResult, MarketContext, OrderBook, Side
from peergrid.markets.merit_order import merit_order
from peergrid.markets.uniform import UniformParams, UniformPriceAuction, clear_uniform

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)


def make_book(
    bids: list[tuple[float, float]],
    asks: list[tuple[float, float]],
    participant: list[int] | None = None,
) -> OrderBook:
    """Bids then asks, each (price, kWh); ids and participants 0..n-1 unless given."""
    n = len(bids) + len(asks)
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64)
        if participant is None
        else np.array(participant, np.int64),
        side=np.array([Side.BUY] * len(bids) + [Side.SELL] * len(asks), np.int8),
        quantity_kwh=np.array([q for _, q in bids + asks], dtype=np.float64),
        price=np.array([p for p, _ in bids + asks], dtype=np.float64),
    )


def trades(result: ClearingResult) -> list[tuple[int, int, float]]:
    return [
        (int(b), int(s), float(k))
        for b, s, k in zip(result.trade_buy, result.trade_sell, result.trade_kwh, strict=True)
    ]


# --- hand-computed examples ------------------------------------------------------------------


def test_hand_computed_example() -> None:
    # bids 0.30 x 2 kWh (order 0), 0.25 x 1 (1); asks 0.10 x 1 (2), 0.20 x 3 (3).
    # Merit order on the volume axis: (0,1] 0.30 vs 0.10, (1,2] 0.30 vs 0.20, (2,3] 0.25 vs 0.20;
    # no bid beyond 3 kWh, so Q* = 3. Lowest accepted bid 0.25, highest accepted ask 0.20:
    # price 0.225. Ask 3 sells 2 of its 3 kWh.
    book = make_book([(0.30, 2.0), (0.25, 1.0)], [(0.10, 1.0), (0.20, 3.0)])
    result = UniformPriceAuction().clear(book, CTX)
    np.testing.assert_array_equal(result.filled_kwh, [2.0, 1.0, 1.0, 2.0])
    assert result.clearing_price == pytest.approx(0.225, abs=1e-15)
    np.testing.assert_array_equal(result.price, np.full(4, result.clearing_price))
    assert trades(result) == [(0, 2, 1.0), (0, 3, 1.0), (1, 3, 1.0)]
    np.testing.assert_array_equal(result.trade_price, np.full(3, result.clearing_price))
    assert result.traded_kwh == 3.0
    assert result.operator_surplus == 0.0
    assert not result.pool
    assert result.info["marginal_bid_price"] == 0.25
    assert result.info["marginal_ask_price"] == 0.20


@pytest.mark.parametrize(("rule", "price"), [("marginal_bid", 0.25), ("marginal_ask", 0.20)])
def test_price_rules(rule: str, price: float) -> None:
    book = make_book([(0.30, 2.0), (0.25, 1.0)], [(0.10, 1.0), (0.20, 3.0)])
    result = UniformPriceAuction(UniformParams.model_validate({"price_rule": rule})).clear(
        book, CTX
    )
    assert result.clearing_price == price
    np.testing.assert_array_equal(result.filled_kwh, [2.0, 1.0, 1.0, 2.0])


def test_ties_at_the_margin_share_pro_rata() -> None:
    # Two bids at 5 want 1 and 3 kWh; only 2 kWh is offered: 0.5 and 1.5, not 1 and 1 by id.
    result = clear_uniform(make_book([(5.0, 1.0), (5.0, 3.0)], [(1.0, 2.0)]))
    np.testing.assert_array_equal(result.filled_kwh, [0.5, 1.5, 2.0])
    assert result.clearing_price == 3.0
    assert trades(result) == [(0, 2, 0.5), (1, 2, 1.5)]


def test_ties_on_the_ask_side_share_pro_rata() -> None:
    result = clear_uniform(make_book([(4.0, 3.0)], [(2.0, 1.0), (3.0, 2.0), (3.0, 6.0)]))
    np.testing.assert_allclose(result.filled_kwh, [3.0, 1.0, 0.5, 1.5], rtol=0, atol=1e-15)
    assert result.clearing_price == 3.5


def test_ties_away_from_the_margin_pair_by_id_not_position() -> None:
    # Bids 7 and 3 at the same price, listed id 7 first: the walk visits id 3 first.
    book = OrderBook(
        id=np.array([7, 3, 5], np.int64),
        participant=np.array([0, 1, 2], np.int64),
        side=np.array([Side.BUY, Side.BUY, Side.SELL], np.int8),
        quantity_kwh=np.array([1.0, 1.0, 2.0]),
        price=np.array([9.0, 9.0, 1.0]),
    )
    result = clear_uniform(book)
    assert [int(book.id[b]) for b in result.trade_buy] == [3, 7]


def test_rounding_residue_does_not_move_the_price() -> None:
    # 0.1 + 0.2 != 0.3 in floats: the bids' cumulative 0.30000000000000004 kWh must not let the
    # 8.0 ask look accepted and set the price to (9 + 8)/2.
    book = make_book([(10.0, 0.1), (9.0, 0.2), (1.0, 0.5)], [(2.0, 0.3), (8.0, 1.0)])
    result = clear_uniform(book)
    assert result.clearing_price == 5.5
    assert result.filled_kwh[4] == 0.0
    assert result.traded_kwh == pytest.approx(0.3, abs=1e-15)
    assert len(trades(result)) == 2


def test_zero_quantity_orders_never_set_the_price() -> None:
    book = make_book([(10.0, 1.0), (6.0, 0.0)], [(1.0, 5.0), (0.5, 0.0)])
    result = clear_uniform(book)
    assert result.clearing_price == 5.5
    np.testing.assert_array_equal(result.filled_kwh, [1.0, 0.0, 1.0, 0.0])
    assert math.isnan(result.price[1])
    assert math.isnan(result.price[3])


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ([], []),
        ([(1.0, 1.0)], []),
        ([], [(1.0, 1.0)]),
        ([(1.0, 1.0)], [(2.0, 1.0)]),  # no crossing
        ([(1.0, 0.0)], [(0.5, 1.0)]),  # crossing price, no volume
    ],
)
def test_books_that_trade_nothing(
    bids: list[tuple[float, float]], asks: list[tuple[float, float]]
) -> None:
    book = make_book(bids, asks)
    result = clear_uniform(book)
    np.testing.assert_array_equal(result.filled_kwh, np.zeros(book.n_orders))
    assert np.isnan(result.price).all()
    assert math.isnan(result.clearing_price)
    assert result.trade_kwh.size == 0


def test_equal_bid_and_ask_trade() -> None:
    result = clear_uniform(make_book([(5.0, 2.0)], [(5.0, 1.0)]))
    np.testing.assert_array_equal(result.filled_kwh, [1.0, 1.0])
    assert result.clearing_price == 5.0


# --- self-trades -------------------------------------------------------------------------------


def test_self_match_is_washed_and_others_keep_their_fills() -> None:
    # Participant 0 bids 6 and asks 5.5; participant 1 bids 10, participant 2 asks 1.
    # The full book clears 2 kWh at (6 + 5.5)/2 = 5.75; participant 0 would buy its own kWh.
    book = make_book([(6.0, 1.0), (10.0, 1.0)], [(5.5, 1.0), (1.0, 1.0)], participant=[0, 1, 0, 2])
    result = clear_uniform(book)
    assert result.clearing_price == 5.75
    np.testing.assert_array_equal(result.filled_kwh, [0.0, 1.0, 0.0, 1.0])
    assert trades(result) == [(1, 3, 1.0)]
    assert result.info["cleared_kwh"] == 2.0
    assert result.info["self_matched_kwh"] == 1.0


def test_partial_self_match_keeps_the_net_position_in_the_market() -> None:
    # Participant 0 asks 2 kWh at 5 and bids 1 kWh at 9: 1 kWh is its own; the other sells to 1.
    book = make_book([(9.0, 1.0), (8.0, 1.0)], [(5.0, 2.0)], participant=[0, 1, 0])
    result = clear_uniform(book)
    np.testing.assert_array_equal(result.filled_kwh, [0.0, 1.0, 1.0])
    assert trades(result) == [(1, 2, 1.0)]
    assert result.info["self_matched_kwh"] == 1.0


def test_lone_participant_never_trades_with_itself() -> None:
    result = clear_uniform(make_book([(10.0, 1.0)], [(5.0, 1.0)], participant=[4, 4]))
    np.testing.assert_array_equal(result.filled_kwh, [0.0, 0.0])
    assert result.trade_kwh.size == 0
    assert result.info["self_matched_kwh"] == 1.0


# --- merit order -------------------------------------------------------------------------------


def test_merit_order_large_path_matches_lexsort() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    side = rng.integers(0, 2, n).astype(np.int8)
    price = np.round(rng.uniform(-0.1, 0.4, n), 2)  # many ties, some negative
    price[:50] = 0.0
    price[50:100] = -0.0
    ids = np.cumsum(rng.integers(1, 5, n))
    expected = np.lexsort((ids, np.where(side == Side.BUY, -price, price), side))
    np.testing.assert_array_equal(merit_order(side, price, ids), expected)


# --- properties against an independent reference ----------------------------------------------


def competitive_volume(book: OrderBook) -> Fraction:
    """Q* = max over prices p of min(demand at p, supply at p), in exact arithmetic: the largest
    volume at which every matched bid is at least every matched ask."""
    orders = [
        (int(s), Fraction(float(p)), Fraction(float(q)))
        for s, p, q in zip(book.side, book.price, book.quantity_kwh, strict=True)
    ]
    best = Fraction(0)
    for _, p, _ in orders:
        demand = sum((q for s, b, q in orders if s == Side.BUY and b >= p), Fraction(0))
        supply = sum((q for s, a, q in orders if s == Side.SELL and a <= p), Fraction(0))
        best = max(best, min(demand, supply))
    return best


def marginal_prices(book: OrderBook) -> tuple[float, float] | None:
    """(lowest accepted bid, highest accepted ask) by walking the merit order one matched piece at
    a time, in exact arithmetic. Pieces of at most 1e-12 x the book's volume do not count as
    accepted (the documented rounding rule: 0.1 + 0.2 kWh against 0.3 kWh leaves 3e-17 kWh)."""
    is_buy = book.side == Side.BUY
    tol = Fraction(1e-12) * Fraction(float(book.quantity_kwh.sum()))
    bids = sorted(
        (
            (Fraction(float(p)), Fraction(float(q)))
            for p, q in zip(book.price[is_buy], book.quantity_kwh[is_buy], strict=True)
        ),
        key=lambda o: -o[0],
    )
    asks = sorted(
        (Fraction(float(p)), Fraction(float(q)))
        for p, q in zip(book.price[~is_buy], book.quantity_kwh[~is_buy], strict=True)
    )
    i = j = 0
    left_bid = bids[0][1] if bids else Fraction(0)
    left_ask = asks[0][1] if asks else Fraction(0)
    found: tuple[float, float] | None = None
    while i < len(bids) and j < len(asks) and bids[i][0] >= asks[j][0]:
        piece = min(left_bid, left_ask)
        if piece > tol:
            found = (float(bids[i][0]), float(asks[j][0]))
        left_bid -= piece
        left_ask -= piece
        if left_bid == 0:
            i += 1
            left_bid = bids[i][1] if i < len(bids) else Fraction(0)
        if left_ask == 0:
            j += 1
            left_ask = asks[j][1] if j < len(asks) else Fraction(0)
    return found


book_sizes = st.integers(0, 24)
kwh = st.one_of(
    st.just(0.0), st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0, 1.0, 2.5]), st.floats(0.0, 10.0)
)
limit = st.one_of(st.sampled_from([0.05, 0.1, 0.15, 0.2, 0.25, 0.3]), st.floats(-0.5, 1.0))


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    n = draw(book_sizes)
    side = draw(st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=n, max_size=n))
    if draw(st.booleans()):
        ids = list(range(n))
    else:
        ids = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    if draw(st.booleans()):
        participant = list(range(n))
    else:  # few participants: some hold both a bid and an ask
        participant = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    return OrderBook(
        id=np.array(ids, np.int64),
        participant=np.array(participant, np.int64),
        side=np.array(side, np.int8),
        quantity_kwh=np.array(draw(st.lists(kwh, min_size=n, max_size=n)), np.float64),
        price=np.array(draw(st.lists(limit, min_size=n, max_size=n)), np.float64),
    )


def check_invariants(book: OrderBook, result: ClearingResult, atol: float = 1e-9) -> None:
    """Invariants of every uniform result; `atol` [kWh, currency] absorbs float rounding, which
    grows with the book's total volume (cumulative sums of 10^5 kWh carry ~1e-11 kWh)."""
    n = book.n_orders
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    assert fill.shape == result.price.shape == (n,)
    assert np.all(fill >= 0.0)
    assert np.all(fill <= q)
    # volume balance and money conservation
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=atol)
    paid = np.where(fill > 0.0, fill * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(
        paid[~is_buy].sum() + result.operator_surplus, rel=0, abs=atol
    )
    assert result.operator_surplus == 0.0
    # prices: one price for all filled energy, individually rational
    filled = fill > 0.0
    assert np.isnan(result.price[~filled]).all()
    assert np.all(result.price[filled] == result.clearing_price)
    assert np.all(result.price[filled & is_buy] <= book.price[filled & is_buy])
    assert np.all(result.price[filled & ~is_buy] >= book.price[filled & ~is_buy])
    # trades: buy against sell, positive, at the clearing price, summing to each order's fill
    assert np.all(book.side[result.trade_buy] == Side.BUY)
    assert np.all(book.side[result.trade_sell] == Side.SELL)
    assert np.all(result.trade_kwh > 0.0)
    assert np.all(result.trade_price == result.clearing_price)
    per_order = np.bincount(result.trade_buy, result.trade_kwh, minlength=n) + np.bincount(
        result.trade_sell, result.trade_kwh, minlength=n
    )
    np.testing.assert_allclose(per_order, fill, rtol=0, atol=atol)
    # nobody trades with itself
    assert np.all(book.participant[result.trade_buy] != book.participant[result.trade_sell])


@settings(max_examples=400, deadline=None)
@given(book=books(), large_paths=st.booleans())
def test_uniform_properties(book: OrderBook, large_paths: bool) -> None:
    # With the threshold at 1 every book takes the large-book paths (one in-place sort of
    # integer keys built from the price bits and positions, binary searches for the marginal
    # price and the tie groups).
    with patch.object(uniform, "LARGE_BOOK", 1 if large_paths else uniform.LARGE_BOOK):
        result = clear_uniform(book)
        again = clear_uniform(book)
    check_invariants(book, result)

    # efficient: the volume the brute-force reference finds
    q_star = float(competitive_volume(book))
    assert result.info["cleared_kwh"] == pytest.approx(q_star, rel=0, abs=1e-9)
    assert result.traded_kwh == pytest.approx(
        q_star - result.info["self_matched_kwh"], rel=0, abs=1e-9
    )

    # the price: midpoint of the marginal prices the merit-order walk finds
    margins = marginal_prices(book)
    if margins is None:
        assert result.traded_kwh == 0.0
    else:
        assert (result.info["marginal_bid_price"], result.info["marginal_ask_price"]) == margins
        assert result.clearing_price == 0.5 * (margins[0] + margins[1])

    # deterministic, bit for bit
    np.testing.assert_array_equal(again.filled_kwh, result.filled_kwh)
    np.testing.assert_array_equal(again.price, result.price)
    assert trades(again) == trades(result)

    if np.unique(book.participant).size == book.n_orders and result.traded_kwh > 0.0:
        assert result.info["self_matched_kwh"] == 0.0
        # merit order: better than the margin fills fully, worse does not fill, the tied share
        # one fill ratio
        is_buy = book.side == Side.BUY
        b_marg, a_marg = result.info["marginal_bid_price"], result.info["marginal_ask_price"]
        q, fill = book.quantity_kwh, result.filled_kwh
        np.testing.assert_array_equal(
            fill[is_buy & (book.price > b_marg)], q[is_buy & (book.price > b_marg)]
        )
        np.testing.assert_array_equal(
            fill[~is_buy & (book.price < a_marg)], q[~is_buy & (book.price < a_marg)]
        )
        assert np.all(fill[is_buy & (book.price < b_marg)] == 0.0)
        assert np.all(fill[~is_buy & (book.price > a_marg)] == 0.0)
        for tied in (is_buy & (book.price == b_marg), ~is_buy & (book.price == a_marg)):
            share = fill[tied].sum() / q[tied].sum()
            np.testing.assert_allclose(fill[tied], q[tied] * share, rtol=1e-12, atol=1e-15)


@settings(max_examples=150, deadline=None)
@given(book=books(), seed=st.integers(0, 2**32 - 1))
def test_result_depends_on_ids_not_row_order(book: OrderBook, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(book.n_orders)
    shuffled = OrderBook(
        id=book.id[perm],
        participant=book.participant[perm],
        side=book.side[perm],
        quantity_kwh=book.quantity_kwh[perm],
        price=book.price[perm],
    )
    a, b = clear_uniform(book), clear_uniform(shuffled)
    np.testing.assert_array_equal(a.filled_kwh[perm], b.filled_kwh)
    id_trades_a = [(book.id[i], book.id[j], k) for i, j, k in trades(a)]
    id_trades_b = [(shuffled.id[i], shuffled.id[j], k) for i, j, k in trades(b)]
    assert id_trades_a == id_trades_b
    assert a.clearing_price == b.clearing_price or (
        math.isnan(a.clearing_price) and math.isnan(b.clearing_price)
    )


def test_large_book_against_a_vectorised_reference() -> None:
    rng = np.random.default_rng(11)
    n = 100_000
    side = rng.integers(0, 2, n).astype(np.int8)
    book = OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=side,
        quantity_kwh=np.round(rng.uniform(0.0, 3.0, n), 3),
        price=np.round(rng.uniform(0.05, 0.35, n), 3),
    )
    result = clear_uniform(book)
    check_invariants(book, result)
    # Q* = max over candidate prices of min(demand, supply), in price space via sorting
    is_buy = side == Side.BUY
    bid_p, bid_q = book.price[is_buy], book.quantity_kwh[is_buy]
    ask_p, ask_q = book.price[~is_buy], book.quantity_kwh[~is_buy]
    candidates = np.unique(book.price)
    o = np.argsort(bid_p)
    demand = np.concatenate([np.cumsum(bid_q[o][::-1])[::-1], [0.0]])[
        np.searchsorted(bid_p[o], candidates, side="left")
    ]
    o = np.argsort(ask_p)
    supply = np.concatenate([[0.0], np.cumsum(ask_q[o])])[
        np.searchsorted(ask_p[o], candidates, side="right")
    ]
    assert result.traded_kwh == pytest.approx(np.minimum(demand, supply).max(), rel=1e-12)
