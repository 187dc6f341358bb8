"""k-double auction: the competitive interval on hand-computed books, and on random books against
an independent exact reference (the Walrasian prices of the book)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.errors import InputError
from peergrid.markets.base import MarketContext, OrderBook, Side
from peergrid.markets.k_double import KDoubleAuction, KDoubleParams, clear_k_double, k_price
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


def interval(result_info: dict[str, float]) -> tuple[float, float]:
    return result_info["interval_low_price"], result_info["interval_high_price"]


# --- hand-computed books -----------------------------------------------------------------------


@pytest.mark.parametrize(("k", "price"), [(0.0, 7.0), (0.25, 7.5), (0.5, 8.0), (1.0, 9.0)])
def test_rejected_orders_bound_the_interval(k: float, price: float) -> None:
    # bids 10 and 7, asks 2 and 9, 1 kWh each: one unit trades (7 < 9). Accepted: bid 10, ask 2;
    # rejected: bid 7, ask 9. L = max(2, 7) = 7, U = min(10, 9) = 9. The uniform midpoint
    # (10 + 2)/2 = 6 is outside: the rejected buyer would buy at 6.
    book = make_book([(10.0, 1.0), (7.0, 1.0)], [(2.0, 1.0), (9.0, 1.0)])
    result = KDoubleAuction(KDoubleParams(k=k)).clear(book, CTX)
    assert interval(result.info) == (7.0, 9.0)
    assert result.clearing_price == price
    np.testing.assert_array_equal(result.filled_kwh, [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(result.price, [price, np.nan, price, np.nan])
    np.testing.assert_array_equal(result.trade_price, [price])
    assert clear_uniform(book).clearing_price == 6.0


def test_exact_balance_leaves_the_whole_spread() -> None:
    # everything trades: no rejected order, [L, U] = [marginal ask, marginal bid]
    book = make_book([(10.0, 1.0), (6.0, 1.0)], [(2.0, 1.0), (3.0, 1.0)])
    result = clear_k_double(book, 0.25)
    assert interval(result.info) == (3.0, 6.0)
    assert result.clearing_price == 3.75


def test_partly_filled_marginal_bid_pins_the_price() -> None:
    # the bid wants 3 kWh, 2 are offered: at any price below 10 it would want more than it gets
    book = make_book([(10.0, 3.0)], [(2.0, 1.0), (4.0, 1.0)])
    for k in (0.0, 0.5, 1.0):
        result = clear_k_double(book, k)
        assert interval(result.info) == (10.0, 10.0)
        assert result.clearing_price == 10.0
    np.testing.assert_array_equal(result.filled_kwh, [2.0, 1.0, 1.0])


def test_partly_filled_marginal_ask_pins_the_price() -> None:
    book = make_book([(10.0, 1.0), (8.0, 1.0)], [(2.0, 5.0)])
    result = clear_k_double(book, 1.0)
    assert interval(result.info) == (2.0, 2.0)
    assert result.clearing_price == 2.0


def test_tie_group_at_the_margin_shares_pro_rata_at_its_price() -> None:
    # two bids at 5 (1 and 3 kWh) against 2 kWh offered: they get 0.5 and 1.5, and the price is 5
    result = clear_k_double(make_book([(5.0, 1.0), (5.0, 3.0)], [(1.0, 2.0)]), 0.0)
    np.testing.assert_array_equal(result.filled_kwh, [0.5, 1.5, 2.0])
    assert interval(result.info) == (5.0, 5.0)


def test_zero_quantity_orders_do_not_bound_the_interval() -> None:
    book = make_book([(10.0, 1.0), (8.0, 0.0)], [(2.0, 1.0), (3.0, 0.0)])
    assert interval(clear_k_double(book).info) == (2.0, 10.0)


def test_orders_below_the_rounding_tolerance_do_not_bound_the_interval() -> None:
    # 5e-324 kWh vanishes from the cumulative volume (0.1 + 5e-324 == 0.1): it is residue, not a
    # rejected bid at 0.1 that would push L above U = 0 (the partly filled ask)
    book = make_book([(0.2, 0.1), (0.1, 5e-324)], [(0.0, 0.2)])
    result = clear_k_double(book, 0.0)
    assert interval(result.info) == (0.0, 0.0)
    assert result.clearing_price == 0.0


def test_nothing_trades() -> None:
    result = clear_k_double(make_book([(1.0, 1.0)], [(2.0, 1.0)]))
    assert math.isnan(result.clearing_price)
    assert all(math.isnan(v) for v in interval(result.info))
    np.testing.assert_array_equal(result.filled_kwh, [0.0, 0.0])


def test_k_is_validated_by_the_registry() -> None:
    mech = get_mechanism("k-double", {"k": 0.3})
    assert isinstance(mech.params, KDoubleParams)
    assert mech.params.k == 0.3
    assert get_mechanism("k-double").params == KDoubleParams(k=0.5)
    for bad in (-0.1, 1.5):
        with pytest.raises(InputError, match=r"'k-double': parameter 'k'"):
            get_mechanism("k-double", {"k": bad})


def test_k_half_is_the_average_rule_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    low = rng.uniform(-1.0, 1.0, 1000)
    high = low + rng.uniform(0.0, 1.0, 1000)
    for lo, hi in zip(low, high, strict=True):
        assert k_price(lo, hi, 0.5) == (lo + hi) / 2.0
        assert k_price(lo, hi, 0.0) == lo
        assert k_price(lo, hi, 1.0) == hi


# --- properties against an exact reference -----------------------------------------------------


def walrasian_prices(book: OrderBook) -> tuple[Fraction, Fraction] | None:
    """(min, max) of the limit prices p at which the efficient volume Q* is demanded and supplied:
    D(>p) <= Q* <= D(>=p) and S(<p) <= Q* <= S(>=p), in exact arithmetic. The set is a closed
    interval whose ends are limit prices, so checking the limit prices finds both ends."""
    orders = [
        (int(s), Fraction(float(p)), Fraction(float(q)))
        for s, p, q in zip(book.side, book.price, book.quantity_kwh, strict=True)
        if q > 0
    ]

    def demand(p: Fraction, strict: bool) -> Fraction:
        return sum(
            (q for s, b, q in orders if s == Side.BUY and (b > p if strict else b >= p)),
            Fraction(0),
        )

    def supply(p: Fraction, strict: bool) -> Fraction:
        return sum(
            (q for s, a, q in orders if s == Side.SELL and (a < p if strict else a <= p)),
            Fraction(0),
        )

    prices = sorted({p for _, p, _ in orders})
    q_star = max((min(demand(p, False), supply(p, False)) for p in prices), default=Fraction(0))
    if q_star == 0:
        return None
    ok = [
        p
        for p in prices
        if demand(p, True) <= q_star <= demand(p, False)
        and supply(p, True) <= q_star <= supply(p, False)
    ]
    return min(ok), max(ok)


# Dyadic quantities and prices are exact in binary, so the float code meets the exact reference
# without rounding residue.
quarters = st.integers(0, 24).map(lambda i: i / 4.0)
limits = st.integers(0, 16).map(lambda i: i / 8.0)


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    n = draw(st.integers(0, 14))
    side = draw(st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    if draw(st.booleans()):
        participant = list(range(n))
    else:
        participant = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return OrderBook(
        id=np.array(ids, np.int64),
        participant=np.array(participant, np.int64),
        side=np.array(side, np.int8),
        quantity_kwh=np.array(draw(st.lists(quarters, min_size=n, max_size=n)), np.float64),
        price=np.array(draw(st.lists(limits, min_size=n, max_size=n)), np.float64),
    )


@settings(max_examples=400, deadline=None)
@given(book=books(), k=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0)))
def test_interval_is_the_set_of_walrasian_prices(book: OrderBook, k: float) -> None:
    result = clear_k_double(book, k)
    uni = clear_uniform(book)
    reference = walrasian_prices(book)
    if reference is None:
        assert math.isnan(result.clearing_price)
        assert result.traded_kwh == 0.0
        return
    low, high = interval(result.info)
    assert (Fraction(low), Fraction(high)) == reference
    p = result.clearing_price
    assert low <= p <= high
    if k == 0.5:
        assert p == (low + high) / 2.0
    # the uniform auction's matching, at p; every filled order is individually rational
    np.testing.assert_array_equal(result.filled_kwh, uni.filled_kwh)
    filled = result.filled_kwh > 0.0
    is_buy = book.side == Side.BUY
    np.testing.assert_array_equal(result.price[filled], p)
    assert np.isnan(result.price[~filled]).all()
    assert np.all(book.price[filled & is_buy] >= p)
    assert np.all(book.price[filled & ~is_buy] <= p)
    np.testing.assert_array_equal(result.trade_price, np.full(result.trade_kwh.size, p))
    # budget balanced
    paid = np.where(filled, result.filled_kwh * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(paid[~is_buy].sum(), rel=0, abs=1e-9)
    assert result.operator_surplus == 0.0
    # the interval lies inside the marginal prices, and k moves the price monotonically
    assert uni.info["marginal_ask_price"] <= low <= high <= uni.info["marginal_bid_price"]
    assert clear_k_double(book, 0.0).clearing_price <= p <= clear_k_double(book, 1.0).clearing_price


float_kwh = st.one_of(st.just(0.0), st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0]), st.floats(0, 10))
float_limit = st.one_of(st.sampled_from([0.1, 0.2, 0.3]), st.floats(-0.5, 1.0))


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.tuples(st.booleans(), float_kwh, float_limit), max_size=16),
    k=st.floats(0.0, 1.0),
)
def test_price_within_interval_on_float_books(
    data: list[tuple[bool, float, float]], k: float
) -> None:
    book = make_book([(p, q) for b, q, p in data if b], [(p, q) for b, q, p in data if not b])
    result = clear_k_double(book, k)
    if result.traded_kwh == 0.0:
        return
    low, high = interval(result.info)
    assert low <= result.clearing_price <= high
    filled = result.filled_kwh > 0.0
    is_buy = book.side == Side.BUY
    assert np.all(book.price[filled & is_buy] >= result.clearing_price)
    assert np.all(book.price[filled & ~is_buy] <= result.clearing_price)
