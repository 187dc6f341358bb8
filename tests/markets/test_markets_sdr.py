"""Supply-demand-ratio pricing: the published worked example, edge cases and pool properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.markets.base import MarketContext, OrderBook, Side
from peergrid.markets.sdr import (
    SupplyDemandRatio,
    _sdr_prices_scalar,
    sdr_prices,
    supply_demand_ratio,
)

# Zhou, Wu & Long, Applied Energy 222 (2018), App. B: grid prices in p/kWh.
RETAIL = 14.57
FEED_IN = 5.03
CTX = MarketContext(retail_price=RETAIL, feed_in_price=FEED_IN)


def net_book(buy_kwh: list[float], sell_kwh: list[float]) -> OrderBook:
    """One net order per participant: buyers first, then sellers; limit prices are junk on
    purpose (SDR must ignore them)."""
    n = len(buy_kwh) + len(sell_kwh)
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=np.array([Side.BUY] * len(buy_kwh) + [Side.SELL] * len(sell_kwh), np.int8),
        quantity_kwh=np.array(buy_kwh + sell_kwh, dtype=np.float64),
        price=np.linspace(-5.0, 99.0, n),
    )


# --- the published worked example ------------------------------------------------------------

WORKED = [
    # SDR, p_sell, p_buy, (buyers, sellers) with that SDR
    (0.75, 6.0145, 8.1534, ([1.0, 3.0], [2.0, 1.0])),
    (0.5, 7.4783, 11.0241, ([2.0], [0.25, 0.75])),
    (0.25, 9.8836, 13.3984, ([1.5, 2.5], [1.0])),
]


@pytest.mark.parametrize(("sdr", "p_sell", "p_buy", "_book"), WORKED)
def test_sdr_prices_reproduce_published_example(
    sdr: float, p_sell: float, p_buy: float, _book: object
) -> None:
    prices = sdr_prices(sdr, RETAIL, FEED_IN)
    assert round(float(prices.sell_price), 4) == p_sell
    assert round(float(prices.buy_price), 4) == p_buy


@pytest.mark.parametrize(("sdr", "p_sell", "p_buy", "book_kwh"), WORKED)
def test_clear_publishes_the_example_prices(
    sdr: float, p_sell: float, p_buy: float, book_kwh: tuple[list[float], list[float]]
) -> None:
    result = SupplyDemandRatio().clear(net_book(*book_kwh), CTX)
    assert result.info["sdr"] == pytest.approx(sdr, abs=1e-15)
    assert round(result.sell_price, 4) == p_sell
    assert round(result.buy_price, 4) == p_buy
    assert math.isnan(result.clearing_price)
    assert result.pool


def test_sell_price_falls_from_retail_to_feed_in_not_the_swapped_way() -> None:
    grid = np.linspace(0.0, 1.0, 101)
    prices = sdr_prices(grid, RETAIL, FEED_IN)
    assert prices.sell_price[0] == RETAIL
    assert prices.sell_price[-1] == pytest.approx(FEED_IN, abs=1e-12)
    assert np.all(np.diff(prices.sell_price) < 0.0)
    assert prices.buy_price[0] == RETAIL
    assert np.all(np.diff(prices.buy_price) < 0.0)
    assert np.all(prices.buy_price >= prices.sell_price)


@pytest.mark.parametrize("sdr", [1.0 + 1e-12, 1.5, 3.0, math.inf])
def test_oversupply_pays_feed_in_on_both_sides(sdr: float) -> None:
    prices = sdr_prices(sdr, RETAIL, FEED_IN)
    assert float(prices.sell_price) == FEED_IN
    assert float(prices.buy_price) == FEED_IN


def test_sdr_prices_broadcast_over_slots() -> None:
    rng = np.random.default_rng(7)
    n_slots = 35_040
    sdr = np.concatenate([rng.uniform(0.0, 2.0, n_slots - 3), [0.0, 1.0, np.inf]])
    feed_in = rng.uniform(0.0, 10.0, n_slots)
    retail = feed_in + rng.uniform(0.0, 20.0, n_slots)
    prices = sdr_prices(sdr, retail, feed_in)
    assert prices.sell_price.shape == prices.buy_price.shape == (n_slots,)
    for i in range(0, n_slots, 997):
        assert (prices.sell_price[i], prices.buy_price[i]) == _sdr_prices_scalar(
            float(sdr[i]), float(retail[i]), float(feed_in[i])
        )
    # a scalar tariff broadcasts against a profile of ratios
    flat = sdr_prices(sdr[:5], RETAIL, FEED_IN)
    assert flat.sell_price.shape == (5,)


@given(
    sdr=st.one_of(st.floats(0.0, 5.0), st.just(math.inf)),
    feed_in=st.floats(0.0, 100.0),
    spread=st.floats(0.0, 100.0),
)
def test_scalar_twin_matches_vectorised(sdr: float, feed_in: float, spread: float) -> None:
    retail = feed_in + spread
    vec = sdr_prices(sdr, retail, feed_in)
    assert (float(vec.sell_price), float(vec.buy_price)) == _sdr_prices_scalar(sdr, retail, feed_in)


def test_edge_cases_of_the_price_function() -> None:
    # nobody sells: SDR 0 → both at retail, also when the feed-in tariff is 0 (0/0 in the formula)
    assert tuple(map(float, sdr_prices(0.0, RETAIL, FEED_IN))) == (RETAIL, RETAIL)
    assert tuple(map(float, sdr_prices(0.0, RETAIL, 0.0))) == (RETAIL, RETAIL)
    # zero feed-in tariff: sellers are paid 0, buyers pay retail on the unmatched share only
    p_sell, p_buy = map(float, sdr_prices(0.25, RETAIL, 0.0))
    assert p_sell == 0.0
    assert p_buy == pytest.approx(0.75 * RETAIL)
    # equal tariffs: everything at that price
    assert tuple(map(float, sdr_prices(0.4, 7.0, 7.0))) == (7.0, 7.0)
    # both zero, and NaN propagates
    assert tuple(map(float, sdr_prices(0.4, 0.0, 0.0))) == (0.0, 0.0)
    assert all(math.isnan(float(p)) for p in sdr_prices(math.nan, RETAIL, FEED_IN))


def test_supply_demand_ratio() -> None:
    ratio = supply_demand_ratio([3.0, 0.0, 1.0, 0.0], [4.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(ratio, [0.75, 0.0, math.inf, math.inf])


# --- fills -------------------------------------------------------------------------------------


def test_undersupply_sellers_fill_fully_buyers_pro_rata() -> None:
    book = net_book([1.0, 3.0], [2.0, 1.0])  # SDR 0.75
    result = SupplyDemandRatio().clear(book, CTX)
    np.testing.assert_allclose(result.filled_kwh, [0.75, 2.25, 2.0, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(result.price, np.full(4, result.sell_price))
    assert result.traded_kwh == pytest.approx(3.0)
    assert result.operator_surplus == 0.0
    assert result.trade_buy.size == 0


def test_oversupply_buyers_fill_fully_sellers_pro_rata_at_feed_in() -> None:
    book = net_book([1.0, 2.0], [4.0, 2.0])  # SDR 2
    result = SupplyDemandRatio().clear(book, CTX)
    np.testing.assert_allclose(result.filled_kwh, [1.0, 2.0, 2.0, 1.0], rtol=0, atol=1e-15)
    assert result.sell_price == result.buy_price == FEED_IN
    np.testing.assert_array_equal(result.price, np.full(4, FEED_IN))


@pytest.mark.parametrize(
    ("buy_kwh", "sell_kwh", "p_sell", "p_buy"),
    [
        ([2.0, 1.0], [], RETAIL, RETAIL),  # TSP = 0: SDR 0
        ([], [2.0, 1.0], FEED_IN, FEED_IN),  # TBP = 0: SDR ∞
        ([], [], FEED_IN, FEED_IN),  # empty book: TBP = 0 → SDR ∞
        ([0.0, 0.0], [0.0], FEED_IN, FEED_IN),  # only zero positions: TBP = 0
        ([2.0], [0.0], RETAIL, RETAIL),  # a zero surplus is no surplus
    ],
)
def test_one_sided_books_trade_nothing(
    buy_kwh: list[float], sell_kwh: list[float], p_sell: float, p_buy: float
) -> None:
    book = net_book(buy_kwh, sell_kwh)
    result = SupplyDemandRatio().clear(book, CTX)
    np.testing.assert_array_equal(result.filled_kwh, np.zeros(book.n_orders))
    assert np.isnan(result.price).all()
    assert (result.sell_price, result.buy_price) == (p_sell, p_buy)
    assert result.pool


def test_zero_quantity_order_gets_no_price() -> None:
    result = SupplyDemandRatio().clear(net_book([2.0, 0.0], [1.0]), CTX)
    assert result.filled_kwh[1] == 0.0
    assert math.isnan(result.price[1])
    assert not math.isnan(result.price[0])


# --- properties --------------------------------------------------------------------------------

quantities = st.lists(
    st.one_of(st.just(0.0), st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0]), st.floats(0.0, 20.0)),
    max_size=12,
)
tariffs = st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0)).map(
    lambda t: MarketContext(retail_price=t[0] + t[1], feed_in_price=t[0])
)


@settings(max_examples=300)
@given(buy_kwh=quantities, sell_kwh=quantities, ctx=tariffs)
def test_pool_properties(buy_kwh: list[float], sell_kwh: list[float], ctx: MarketContext) -> None:
    book = net_book(buy_kwh, sell_kwh)
    result = SupplyDemandRatio().clear(book, ctx)
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    lam_buy, lam_sell = ctx.retail_price, ctx.feed_in_price
    p_sell, p_buy = result.sell_price, result.buy_price

    assert fill.shape == result.price.shape == (book.n_orders,)
    assert np.all(fill >= 0.0)
    assert np.all(fill <= q)
    assert np.isnan(result.price[fill == 0.0]).all()
    assert not np.isnan(result.price[fill > 0.0]).any()
    # volume balance
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
    # money conservation: buyers pay what sellers receive
    paid = np.where(fill > 0.0, fill * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(
        paid[~is_buy].sum() + result.operator_surplus, rel=0, abs=1e-9
    )
    assert result.operator_surplus == 0.0
    # published prices inside the retail band, buy price never below sell price
    assert lam_sell <= p_sell <= lam_buy
    assert lam_sell <= p_buy <= lam_buy
    assert p_sell <= p_buy
    # the pool identity: each buyer's bill is q·p_buy, each seller's revenue q·p_sell
    buyer_bill = fill * p_sell + (q - fill) * lam_buy
    seller_revenue = fill * p_sell + (q - fill) * lam_sell
    np.testing.assert_allclose(buyer_bill[is_buy], q[is_buy] * p_buy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(seller_revenue[~is_buy], q[~is_buy] * p_sell, rtol=0, atol=1e-9)
    # participants are never worse off than with the retailer alone
    assert np.all(buyer_bill[is_buy] <= q[is_buy] * lam_buy + 1e-9)
    assert np.all(seller_revenue[~is_buy] >= q[~is_buy] * lam_sell - 1e-9)
    # budget balance in Liu et al.'s form, for SDR <= 1
    tbp, tsp = q[is_buy].sum(), q[~is_buy].sum()
    if tbp > 0.0 and tsp <= tbp:
        assert p_buy * tbp == pytest.approx(p_sell * tsp + lam_buy * (tbp - tsp), rel=0, abs=1e-9)
    # deterministic and blind to limit prices
    again = SupplyDemandRatio().clear(
        OrderBook(book.id, book.participant, book.side, q, np.zeros(book.n_orders)), ctx
    )
    np.testing.assert_array_equal(again.filled_kwh, fill)
    np.testing.assert_array_equal(again.price, result.price)
    assert (again.sell_price, again.buy_price) == (p_sell, p_buy)
