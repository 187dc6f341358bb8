"""Pay-as-bid double auction: a hand-computed example and properties on random books, checked
against the uniform auction whose matching it reuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.markets.base import ClearingResult, MarketContext, OrderBook, Side
from peergrid.markets.pay_as_bid import PayAsBidAuction, clear_pay_as_bid
from peergrid.markets.registry import get_mechanism
from peergrid.markets.uniform import clear_uniform

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


def trades(result: ClearingResult) -> list[tuple[int, int, float, float]]:
    return [
        (int(b), int(s), float(k), float(p))
        for b, s, k, p in zip(
            result.trade_buy, result.trade_sell, result.trade_kwh, result.trade_price, strict=True
        )
    ]


def test_hand_computed_example() -> None:
    # bids 0.30 x 2 kWh (order 0), 0.25 x 1 (1); asks 0.10 x 1 (2), 0.20 x 3 (3). Merit order:
    # (0,1] bid 0 vs ask 2, (1,2] bid 0 vs ask 3, (2,3] bid 1 vs ask 3. Each pair at the bid:
    # ask 2 gets 0.30, ask 3 gets (0.30 + 0.25)/2 = 0.275 on its 2 kWh.
    book = make_book([(0.30, 2.0), (0.25, 1.0)], [(0.10, 1.0), (0.20, 3.0)])
    mech = get_mechanism("pay-as-bid")
    assert isinstance(mech, PayAsBidAuction)
    result = mech.clear(book, CTX)
    assert trades(result) == [(0, 2, 1.0, 0.30), (0, 3, 1.0, 0.30), (1, 3, 1.0, 0.25)]
    np.testing.assert_array_equal(result.filled_kwh, [2.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(result.price, [0.30, 0.25, 0.30, 0.275], rtol=1e-15)
    # buyers pay 0.60 + 0.25, sellers receive 0.30 + 0.55
    paid = result.filled_kwh * result.price
    assert paid[:2].sum() == pytest.approx(0.85, rel=1e-15)
    assert paid[2:].sum() == pytest.approx(0.85, rel=1e-15)
    assert result.operator_surplus == 0.0
    assert math.isnan(result.clearing_price)
    assert not result.pool
    assert result.info["marginal_bid_price"] == 0.25


def test_pay_as_bid_differs_from_uniform_only_in_price() -> None:
    book = make_book([(0.30, 2.0), (0.25, 1.0)], [(0.10, 1.0), (0.20, 3.0)])
    uni, pab = clear_uniform(book), clear_pay_as_bid(book)
    np.testing.assert_array_equal(uni.filled_kwh, pab.filled_kwh)
    assert [t[:3] for t in trades(uni)] == [t[:3] for t in trades(pab)]
    # the sellers capture the whole surplus: every price at least the uniform price
    filled = pab.filled_kwh > 0.0
    assert np.all(pab.price[filled] >= uni.clearing_price)


def test_ties_at_the_margin_share_pro_rata_and_pay_their_own_bid() -> None:
    result = clear_pay_as_bid(make_book([(5.0, 1.0), (5.0, 3.0), (7.0, 1.0)], [(1.0, 3.0)]))
    np.testing.assert_array_equal(result.filled_kwh, [0.5, 1.5, 1.0, 3.0])
    np.testing.assert_array_equal(result.price[:3], [5.0, 5.0, 7.0])
    assert result.price[3] == pytest.approx((7.0 + 2.0 * 5.0) / 3.0, rel=1e-15)


@pytest.mark.parametrize(
    ("bids", "asks"),
    [([], []), ([(1.0, 1.0)], []), ([(1.0, 1.0)], [(2.0, 1.0)]), ([(1.0, 0.0)], [(0.5, 1.0)])],
)
def test_books_that_trade_nothing(
    bids: list[tuple[float, float]], asks: list[tuple[float, float]]
) -> None:
    book = make_book(bids, asks)
    result = clear_pay_as_bid(book)
    np.testing.assert_array_equal(result.filled_kwh, np.zeros(book.n_orders))
    assert np.isnan(result.price).all()
    assert result.trade_kwh.size == 0


def test_a_participant_never_trades_with_itself() -> None:
    # participant 0 bids 6 and asks 5.5: its own kWh is washed out, as in the uniform auction
    book = make_book([(6.0, 1.0), (10.0, 1.0)], [(5.5, 1.0), (1.0, 1.0)], participant=[0, 1, 0, 2])
    result = clear_pay_as_bid(book)
    assert trades(result) == [(1, 3, 1.0, 10.0)]
    np.testing.assert_array_equal(result.filled_kwh, [0.0, 1.0, 0.0, 1.0])
    assert result.info["self_matched_kwh"] == 1.0


def test_fills_never_exceed_quantities_on_rounded_books() -> None:
    # sums of trades can pass an order's quantity by an ulp (cumulative differences); clipped
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = 40
        book = OrderBook(
            id=np.arange(n, dtype=np.int64),
            participant=np.arange(n, dtype=np.int64),
            side=rng.integers(0, 2, n).astype(np.int8),
            quantity_kwh=np.round(rng.uniform(0.0, 2.0, n), 2),
            price=np.round(rng.uniform(0.05, 0.30, n), 3),
        )
        result = clear_pay_as_bid(book)
        assert np.all(result.filled_kwh <= book.quantity_kwh)
        is_buy = book.side == Side.BUY
        paid = np.where(result.filled_kwh > 0, result.filled_kwh * result.price, 0.0)
        assert paid[is_buy].sum() == pytest.approx(paid[~is_buy].sum(), rel=0, abs=1e-12)


# --- properties --------------------------------------------------------------------------------

kwh = st.one_of(
    st.just(0.0), st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0, 1.0, 2.5]), st.floats(0.0, 10.0)
)
limit = st.one_of(st.sampled_from([0.05, 0.1, 0.15, 0.2, 0.25, 0.3]), st.floats(-0.5, 1.0))


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    n = draw(st.integers(0, 20))
    side = draw(st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=n, max_size=n))
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


@settings(max_examples=300, deadline=None)
@given(book=books(), seed=st.integers(0, 2**32 - 1))
def test_pay_as_bid_properties(book: OrderBook, seed: int) -> None:
    result = clear_pay_as_bid(book)
    uni = clear_uniform(book)
    n = book.n_orders
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    filled = fill > 0.0
    assert fill.shape == result.price.shape == (n,)
    assert np.all(fill >= 0.0)
    assert np.all(fill <= q)
    # the uniform auction's matching: same volume, same pairs
    np.testing.assert_allclose(fill, uni.filled_kwh, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(result.trade_buy, uni.trade_buy)
    np.testing.assert_array_equal(result.trade_sell, uni.trade_sell)
    # every pair at the buyer's bid, never below the seller's ask
    np.testing.assert_array_equal(result.trade_price, book.price[result.trade_buy])
    assert np.all(result.trade_price >= book.price[result.trade_sell])
    assert np.all(book.participant[result.trade_buy] != book.participant[result.trade_sell])
    # fills are the sums of the trades, up to the matching's rounding residue (1e-12 x volume)
    per_order = np.bincount(result.trade_buy, result.trade_kwh, minlength=n) + np.bincount(
        result.trade_sell, result.trade_kwh, minlength=n
    )
    np.testing.assert_allclose(per_order, fill, rtol=0, atol=1e-12 * max(q.sum(), 1.0))
    # volume balance and money conservation (budget balanced)
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
    paid = np.where(filled, fill * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(
        paid[~is_buy].sum() + result.operator_surplus, rel=0, abs=1e-9
    )
    assert result.operator_surplus == 0.0
    assert paid[is_buy].sum() == pytest.approx(
        float(np.dot(result.trade_kwh, result.trade_price)), rel=0, abs=1e-9
    )
    # prices: NaN exactly where nothing fills; buyers pay their bid; sellers get at least their
    # ask and at most the best bid they met
    assert np.isnan(result.price[~filled]).all()
    assert not np.isnan(result.price[filled]).any()
    np.testing.assert_array_equal(result.price[filled & is_buy], book.price[filled & is_buy])
    assert np.all(result.price[filled & ~is_buy] >= book.price[filled & ~is_buy])
    if result.trade_kwh.size:
        assert np.all(result.price[filled] <= result.trade_price.max())
    # deterministic, and independent of row order (ties by id)
    again = clear_pay_as_bid(book)
    np.testing.assert_array_equal(again.price, result.price)
    perm = np.random.default_rng(seed).permutation(n)
    shuffled = OrderBook(
        book.id[perm], book.participant[perm], book.side[perm], q[perm], book.price[perm]
    )
    other = clear_pay_as_bid(shuffled)
    np.testing.assert_array_equal(other.filled_kwh, fill[perm])
    np.testing.assert_array_equal(other.price, result.price[perm])
