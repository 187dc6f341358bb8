"""Mid-market-rate pricing: the published examples, edge cases and pool properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid.markets.base import MarketContext, OrderBook, Side
from peergrid.markets.mmr import MidMarketRate, _mmr_prices_scalar, mmr_prices

# Long et al. 2017 / the issue: grid prices 15 and 5 p/kWh, so p_mid = 10.
RETAIL = 15.0
FEED_IN = 5.0
CTX = MarketContext(retail_price=RETAIL, feed_in_price=FEED_IN)


def net_book(buy_kwh: list[float], sell_kwh: list[float]) -> OrderBook:
    """One net order per participant: buyers first, then sellers; limit prices are junk on
    purpose (MMR must ignore them)."""
    n = len(buy_kwh) + len(sell_kwh)
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=np.array([Side.BUY] * len(buy_kwh) + [Side.SELL] * len(sell_kwh), np.int8),
        quantity_kwh=np.array(buy_kwh + sell_kwh, dtype=np.float64),
        price=np.linspace(-5.0, 99.0, n),
    )


# --- the published examples ------------------------------------------------------------------

EXAMPLES = [
    # G, D, p_sell, p_buy
    (3.0, 4.0, 10.0, 11.25),  # [3·10 + 1·15]/4
    (6.0, 4.0, 25.0 / 3.0, 10.0),  # [4·10 + 2·5]/6 = 8.333
    (4.0, 4.0, 10.0, 10.0),
]


@pytest.mark.parametrize(("g", "d", "p_sell", "p_buy"), EXAMPLES)
def test_mmr_prices_reproduce_published_examples(
    g: float, d: float, p_sell: float, p_buy: float
) -> None:
    prices = mmr_prices(g, d, RETAIL, FEED_IN)
    assert float(prices.sell_price) == pytest.approx(p_sell, rel=1e-15)
    assert float(prices.buy_price) == pytest.approx(p_buy, rel=1e-15)
    assert _mmr_prices_scalar(g, d, RETAIL, FEED_IN) == pytest.approx((p_sell, p_buy), rel=1e-15)


def test_published_example_undersupply_fills_and_bills() -> None:
    # G = 3 (sellers 1 + 2), D = 4 (buyers 1 + 3): sellers fill fully, buyers 3/4 of their need.
    book = net_book([1.0, 3.0], [1.0, 2.0])
    result = MidMarketRate().clear(book, CTX)
    assert (result.sell_price, result.buy_price) == (10.0, 11.25)
    np.testing.assert_allclose(result.filled_kwh, [0.75, 2.25, 1.0, 2.0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(result.price, np.full(4, 10.0))
    assert result.clearing_price == 10.0
    # buyer 1: 2.25 kWh at 10 + 0.75 kWh at 15 = 33.75 = 3 × 11.25
    assert 2.25 * 10.0 + 0.75 * RETAIL == 3.0 * 11.25
    assert result.traded_kwh == pytest.approx(3.0)
    assert result.operator_surplus == 0.0
    assert result.pool
    assert result.trade_kwh.size == 0


def test_published_example_oversupply_fills_and_bills() -> None:
    # G = 6 (sellers 2 + 4), D = 4: buyers fill fully, sellers 2/3 of their surplus.
    book = net_book([1.0, 3.0], [2.0, 4.0])
    result = MidMarketRate().clear(book, CTX)
    assert result.buy_price == 10.0
    assert result.sell_price == pytest.approx(25.0 / 3.0, rel=1e-15)
    np.testing.assert_allclose(result.filled_kwh, [1.0, 3.0, 4 / 3, 8 / 3], rtol=1e-15)
    # seller 2: 8/3 kWh at 10 + 4/3 kWh at 5 = 33.33 = 4 × 8.333
    revenue = 8 / 3 * 10.0 + 4 / 3 * FEED_IN
    assert revenue == pytest.approx(4.0 * result.sell_price, rel=1e-15)


def test_prices_follow_the_ratio_monotonically() -> None:
    g = np.linspace(0.0, 10.0, 201)
    prices = mmr_prices(g, 5.0, RETAIL, FEED_IN)
    # undersupply: the buy price falls from retail to p_mid, the sell price stays at p_mid
    under = g < 5.0
    assert prices.buy_price[0] == RETAIL
    assert np.all(np.diff(prices.buy_price[under]) < 0.0)
    np.testing.assert_array_equal(prices.sell_price[under], 10.0)
    # oversupply: the sell price falls from p_mid towards feed-in, the buy price stays at p_mid
    over = g > 5.0
    assert np.all(np.diff(prices.sell_price[over]) < 0.0)
    np.testing.assert_array_equal(prices.buy_price[over], 10.0)
    assert np.all(prices.buy_price >= prices.sell_price)


def test_mmr_prices_broadcast_over_slots() -> None:
    rng = np.random.default_rng(5)
    n_slots = 35_040
    g = np.concatenate([rng.uniform(0.0, 10.0, n_slots - 4), [0.0, 0.0, 3.0, 2.0]])
    d = np.concatenate([rng.uniform(0.0, 10.0, n_slots - 4), [0.0, 4.0, 0.0, 2.0]])
    feed_in = rng.uniform(0.0, 10.0, n_slots)
    retail = feed_in + rng.uniform(0.0, 20.0, n_slots)
    prices = mmr_prices(g, d, retail, feed_in)
    assert prices.sell_price.shape == prices.buy_price.shape == (n_slots,)
    for i in [*range(0, n_slots, 997), *range(n_slots - 4, n_slots)]:
        assert (prices.sell_price[i], prices.buy_price[i]) == _mmr_prices_scalar(
            float(g[i]), float(d[i]), float(retail[i]), float(feed_in[i])
        )
    assert mmr_prices(g[:5], d[:5], RETAIL, FEED_IN).sell_price.shape == (5,)


@given(
    g=st.floats(0.0, 1e3),
    d=st.floats(0.0, 1e3),
    feed_in=st.floats(-1.0, 100.0),
    spread=st.floats(0.0, 100.0),
)
def test_scalar_twin_matches_vectorised(g: float, d: float, feed_in: float, spread: float) -> None:
    retail = feed_in + spread
    vec = mmr_prices(g, d, retail, feed_in)
    scalar = _mmr_prices_scalar(g, d, retail, feed_in)
    assert (float(vec.sell_price), float(vec.buy_price)) == scalar
    assert feed_in <= scalar[0] <= scalar[1] <= retail


def test_edge_cases_of_the_price_function() -> None:
    assert tuple(map(float, mmr_prices(0.0, 4.0, RETAIL, FEED_IN))) == (10.0, RETAIL)
    assert tuple(map(float, mmr_prices(4.0, 0.0, RETAIL, FEED_IN))) == (FEED_IN, 10.0)
    assert tuple(map(float, mmr_prices(0.0, 0.0, RETAIL, FEED_IN))) == (10.0, 10.0)
    assert tuple(map(float, mmr_prices(1.0, 3.0, 7.0, 7.0))) == (7.0, 7.0)
    assert all(math.isnan(float(p)) for p in mmr_prices(math.nan, 1.0, RETAIL, FEED_IN))
    assert all(math.isnan(p) for p in _mmr_prices_scalar(1.0, math.nan, RETAIL, FEED_IN))


@pytest.mark.parametrize(
    ("buy_kwh", "sell_kwh"),
    [([2.0, 1.0], []), ([], [2.0, 1.0]), ([], []), ([0.0], [0.0]), ([2.0], [0.0])],
)
def test_one_sided_books_trade_nothing(buy_kwh: list[float], sell_kwh: list[float]) -> None:
    book = net_book(buy_kwh, sell_kwh)
    result = MidMarketRate().clear(book, CTX)
    np.testing.assert_array_equal(result.filled_kwh, np.zeros(book.n_orders))
    assert np.isnan(result.price).all()
    assert math.isnan(result.clearing_price)
    g, d = sum(sell_kwh), sum(buy_kwh)
    assert (result.sell_price, result.buy_price) == _mmr_prices_scalar(g, d, RETAIL, FEED_IN)


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
# both sides total 0.8 kWh; summed in another order (numpy unrolls 8 terms) they differ by an ulp
@example(buy_kwh=[0.1] * 8, sell_kwh=[0.8], ctx=MarketContext(0.3, 0.1))
def test_pool_properties(buy_kwh: list[float], sell_kwh: list[float], ctx: MarketContext) -> None:
    book = net_book(buy_kwh, sell_kwh)
    result = MidMarketRate().clear(book, ctx)
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    lam_buy, lam_sell = ctx.retail_price, ctx.feed_in_price
    p_sell, p_buy = result.sell_price, result.buy_price
    p_mid = 0.5 * (lam_buy + lam_sell)

    assert fill.shape == result.price.shape == (book.n_orders,)
    assert np.all(fill >= 0.0)
    assert np.all(fill <= q)
    assert np.isnan(result.price[fill == 0.0]).all()
    np.testing.assert_array_equal(result.price[fill > 0.0], p_mid)
    # the short side fills fully
    tbp, tsp = q[is_buy].sum(), q[~is_buy].sum()
    if tbp > 0.0 and tsp > 0.0:
        short = ~is_buy if tsp <= tbp else is_buy
        np.testing.assert_array_equal(fill[short], q[short])
    # volume balance
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
    # money conservation, with the reported surplus (0: budget balanced at the pool level)
    paid = np.where(fill > 0.0, fill * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(
        paid[~is_buy].sum() + result.operator_surplus, rel=0, abs=1e-9
    )
    assert result.operator_surplus == 0.0
    # published prices inside the retail band, buy price never below sell price
    assert lam_sell <= p_sell <= p_buy <= lam_buy
    # the all-in prices hold exactly: each buyer's bill is q·p_buy, each seller's revenue q·p_sell
    buyer_bill = fill * p_mid + (q - fill) * lam_buy
    seller_revenue = fill * p_mid + (q - fill) * lam_sell
    np.testing.assert_allclose(buyer_bill[is_buy], q[is_buy] * p_buy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(seller_revenue[~is_buy], q[~is_buy] * p_sell, rtol=0, atol=1e-9)
    # individually rational against the retailer
    assert np.all(buyer_bill[is_buy] <= q[is_buy] * lam_buy + 1e-9)
    assert np.all(seller_revenue[~is_buy] >= q[~is_buy] * lam_sell - 1e-9)
    # budget balance against the community's grid bill: D·p_buy − G·p_sell is what the
    # retailer charges for the net flow
    grid_bill = lam_buy * max(tbp - tsp, 0.0) - lam_sell * max(tsp - tbp, 0.0)
    assert tbp * p_buy - tsp * p_sell == pytest.approx(grid_bill, rel=0, abs=1e-9)
    # deterministic and blind to limit prices
    again = MidMarketRate().clear(
        OrderBook(book.id, book.participant, book.side, q, np.zeros(book.n_orders)), ctx
    )
    np.testing.assert_array_equal(again.filled_kwh, fill)
    np.testing.assert_array_equal(again.price, result.price)
    assert (again.sell_price, again.buy_price) == (p_sell, p_buy)
