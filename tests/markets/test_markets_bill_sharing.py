"""Bill sharing: a hand-computed community in the flavour of Long et al. 2017, budget balance
against the grid bill, and the per-slot mechanism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from peergrid.markets import bill_sharing
from peergrid.markets.base import MarketContext, OrderBook, Side
from peergrid.markets.bill_sharing import (
    BillSharing,
    _slot_prices_scalar,
    bill_sharing_bills,
    bill_sharing_prices,
    bill_sharing_slot_prices,
    community_grid_bill,
    net_totals,
)
from peergrid.settlement.slot import commit, orders_from_net, retailer_only_cost, settle_slot

# Long et al. 2017's grid prices [p/kWh].
RETAIL = 15.0
FEED_IN = 5.0

# Three households A, B, C over two slots [kWh], export positive. Midday: A's PV exports 4, B and
# C each need 1. Evening: A and B need 2 and 3, C's battery exports 1.
NET = np.array([[4.0, -1.0, -1.0], [-2.0, -3.0, 1.0]])
FLAT_RETAIL = np.full(2, RETAIL)
FLAT_FEED_IN = np.full(2, FEED_IN)


def test_worked_example_by_hand() -> None:
    # Without sharing each household deals with the retailer alone:
    #   A exports 4 (−20) and imports 2 (+30) → 10; B imports 4 → 60; C imports 1, exports 1 → 10.
    alone = retailer_only_cost(NET, FLAT_RETAIL[:, None], FLAT_FEED_IN[:, None]).sum(axis=0)
    np.testing.assert_array_equal(alone, [10.0, 60.0, 10.0])
    # The community's meter sees midday +2 (export, −10) and evening −4 (import, +60): bill 50,
    # 37.5 % below the 80 the households pay alone (Long et al.: £6.99 → £5.04 a day, −27.9 %).
    assert community_grid_bill(NET, FLAT_RETAIL, FLAT_FEED_IN) == 50.0
    # Bill sharing: p_import = 15·4 / (2 + 5) = 60/7, p_export = 5·2 / (4 + 1) = 2.
    p_import, p_export = bill_sharing_prices(NET, FLAT_RETAIL, FLAT_FEED_IN)
    assert p_import == pytest.approx(60.0 / 7.0, rel=1e-15)
    assert p_export == 2.0
    # A: 2·60/7 − 4·2 = 64/7; B: 4·60/7 = 240/7; C: 1·60/7 − 1·2 = 46/7; Σ = 350/7 = 50.
    bills = bill_sharing_bills(NET, FLAT_RETAIL, FLAT_FEED_IN)
    np.testing.assert_allclose(bills, np.array([64.0, 240.0, 46.0]) / 7.0, rtol=1e-15)
    assert bills.sum() == pytest.approx(50.0, rel=1e-15)
    # everyone gains here, the buyer-heavy B most; the export price 2 is below feed-in 5
    assert np.all(bills < alone)
    assert p_export < FEED_IN


def test_slot_mechanism_is_provisional_and_the_period_bill_is_the_real_one() -> None:
    # Single-slot prices: midday D = 2 < G = 4 → p_import 0, p_export 5·2/4 = 2.5;
    # evening G = 1 < D = 5 → p_import 15·4/5 = 12, p_export 0.
    mech = BillSharing()
    costs = np.zeros(3)
    expected = [(0.0, 2.5), (12.0, 0.0)]
    for t, (p_import, p_export) in enumerate(expected):
        net = NET[t]
        book = orders_from_net(net, np.zeros(3), np.zeros(3))
        result = mech.clear(book, MarketContext(retail_price=RETAIL, feed_in_price=FEED_IN))
        assert (result.buy_price, result.sell_price) == (p_import, p_export)
        np.testing.assert_array_equal(result.price[result.filled_kwh > 0.0], 0.0)
        settled = settle_slot(commit(book, result, 3, RETAIL, FEED_IN), net, RETAIL, FEED_IN)
        # each order's all-in cost is its quantity at the single-slot price
        np.testing.assert_allclose(
            settled.cost,
            np.where(net < 0.0, -net * p_import, -net * p_export),
            rtol=0,
            atol=1e-12,
        )
        costs += settled.cost
    # A: midday −4·2.5 = −10, evening 2·12 = 24 → 14; B: 3·12 = 36; C: 0. Σ = 50, the grid bill,
    # but not the period's bills: slot by slot, A pays more than alone (14 > 10).
    np.testing.assert_allclose(costs, [14.0, 36.0, 0.0], rtol=0, atol=1e-12)
    assert costs.sum() == pytest.approx(community_grid_bill(NET, FLAT_RETAIL, FLAT_FEED_IN))
    assert not np.allclose(costs, bill_sharing_bills(NET, FLAT_RETAIL, FLAT_FEED_IN))


def test_one_slot_period_equals_the_slot_prices() -> None:
    net = np.array([[3.0, -1.0, -4.0, 0.5]])
    period = bill_sharing_prices(net, [0.3], [0.05])
    g, d = 3.5, 5.0
    slot = bill_sharing_slot_prices(g, d, 0.3, 0.05)
    assert period.import_price == pytest.approx(float(slot.import_price), rel=1e-15)
    assert math.isnan(period.export_price) is False
    assert period.export_price == float(slot.export_price) == 0.0


def test_time_varying_tariffs_weight_each_slot() -> None:
    # Zhou et al. 2018's form: the import price averages the retail price of the slots in which
    # the community imports, weighted by its import there.
    net = np.array([[-1.0, -1.0], [-3.0, 1.0], [2.0, -1.0]])
    retail = np.array([0.10, 0.40, 0.25])
    feed_in = np.array([0.02, 0.05, 0.08])
    # imports 2 @ 0.10 and 2 @ 0.40 = 1.0 over deficits 2 + 3 + 1 = 6; export 1 @ 0.08 over 3
    p_import, p_export = bill_sharing_prices(net, retail, feed_in)
    assert p_import == pytest.approx(1.0 / 6.0, rel=1e-15)
    assert p_export == pytest.approx(0.08 / 3.0, rel=1e-15)
    assert bill_sharing_bills(net, retail, feed_in).sum() == pytest.approx(
        community_grid_bill(net, retail, feed_in), rel=1e-15
    )


def test_nobody_imports_or_exports() -> None:
    zero = np.zeros((3, 2))
    p_import, p_export = bill_sharing_prices(zero, np.ones(3), np.ones(3))
    assert math.isnan(p_import)
    assert math.isnan(p_export)
    np.testing.assert_array_equal(bill_sharing_bills(zero, np.ones(3), np.ones(3)), [0.0, 0.0])
    # only exports: nobody pays the (undefined) import price
    exporters = np.array([[1.0, 2.0]])
    p_import, p_export = bill_sharing_prices(exporters, [0.3], [0.1])
    assert math.isnan(p_import)
    assert p_export == pytest.approx(0.1)
    np.testing.assert_allclose(bill_sharing_bills(exporters, [0.3], [0.1]), [-0.1, -0.2])


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\(T, P\)"):
        bill_sharing_prices(np.zeros(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"retail_price must be a profile of shape \(3,\)"):
        bill_sharing_bills(np.zeros((3, 2)), 0.3, np.ones(3))
    with pytest.raises(ValueError, match="feed_in_price"):
        community_grid_bill(np.zeros((3, 2)), np.ones(3), np.ones(4))


def test_net_totals_across_block_boundaries() -> None:
    rng = np.random.default_rng(2)
    net = rng.normal(0.0, 1.0, (2 * bill_sharing._CHUNK_SLOTS + 17, 5))
    totals = net_totals(net)
    np.testing.assert_allclose(totals.total_sell_kwh, np.maximum(net, 0).sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(totals.total_buy_kwh, np.maximum(-net, 0).sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(totals.surplus_kwh, np.maximum(net, 0).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(totals.deficit_kwh, np.maximum(-net, 0).sum(axis=0), rtol=1e-12)
    empty = net_totals(np.zeros((0, 4)))
    assert empty.total_sell_kwh.shape == (0,)
    np.testing.assert_array_equal(empty.surplus_kwh, np.zeros(4))


def test_slot_prices_vectorised_and_scalar_agree() -> None:
    rng = np.random.default_rng(9)
    g = np.concatenate([rng.uniform(0.0, 5.0, 500), [0.0, 2.0, 0.0]])
    d = np.concatenate([rng.uniform(0.0, 5.0, 500), [1.0, 0.0, 0.0]])
    retail = rng.uniform(0.2, 0.4, g.size)
    feed_in = rng.uniform(0.0, 0.1, g.size)
    vec = bill_sharing_slot_prices(g, d, retail, feed_in)
    for i in range(g.size):
        scalar = _slot_prices_scalar(float(g[i]), float(d[i]), float(retail[i]), float(feed_in[i]))
        np.testing.assert_equal((vec.import_price[i], vec.export_price[i]), scalar)
    assert np.all((vec.import_price[d > 0] >= 0.0) & (vec.import_price[d > 0] <= retail[d > 0]))
    assert np.all((vec.export_price[g > 0] >= 0.0) & (vec.export_price[g > 0] <= feed_in[g > 0]))


# --- properties --------------------------------------------------------------------------------

kwh = st.one_of(st.just(0.0), st.sampled_from([0.1, -0.2, 0.3, -1.0 / 3.0]), st.floats(-10, 10))


@st.composite
def periods(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_t = draw(st.integers(1, 12))
    n_p = draw(st.integers(1, 8))
    net = draw(hnp.arrays(np.float64, (n_t, n_p), elements=kwh))
    feed_in = draw(hnp.arrays(np.float64, (n_t,), elements=st.floats(0.0, 0.2)))
    spread = draw(hnp.arrays(np.float64, (n_t,), elements=st.floats(0.0, 0.5)))
    return net, feed_in + spread, feed_in


@settings(max_examples=300)
@given(period=periods(), seed=st.integers(0, 2**32 - 1))
def test_budget_balanced_against_the_grid_bill(
    period: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int
) -> None:
    net, retail, feed_in = period
    bills = bill_sharing_bills(net, retail, feed_in)
    assert bills.shape == (net.shape[1],)
    assert bills.sum() == pytest.approx(community_grid_bill(net, retail, feed_in), rel=0, abs=1e-9)
    p_import, p_export = bill_sharing_prices(net, retail, feed_in)
    # prices: from 0 up to the dearest tariff, not bounded below by feed-in
    if not math.isnan(p_import):
        assert 0.0 <= p_import <= retail.max() + 1e-12
    if not math.isnan(p_export):
        assert 0.0 <= p_export <= feed_in.max() + 1e-12
    # a pure buyer never pays more than alone at the period's dearest retail price, a pure seller
    # never earns more than at the best feed-in tariff
    deficit = np.maximum(-net, 0.0).sum(axis=0)
    surplus = np.maximum(net, 0.0).sum(axis=0)
    buyer = surplus == 0.0
    assert np.all(bills[buyer] <= deficit[buyer] * retail.max() + 1e-9)
    seller = deficit == 0.0
    assert np.all(-bills[seller] <= surplus[seller] * feed_in.max() + 1e-9)
    # deterministic; relabelling participants relabels the bills, reordering slots changes nothing
    rng = np.random.default_rng(seed)
    perm_p = rng.permutation(net.shape[1])
    perm_t = rng.permutation(net.shape[0])
    np.testing.assert_array_equal(bill_sharing_bills(net, retail, feed_in), bills)
    np.testing.assert_allclose(
        bill_sharing_bills(net[perm_t][:, perm_p], retail[perm_t], feed_in[perm_t]),
        bills[perm_p],
        rtol=0,
        atol=1e-9,
    )


quantities = st.lists(
    st.one_of(st.just(0.0), st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0]), st.floats(0.0, 20.0)),
    max_size=12,
)
tariffs = st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0)).map(
    lambda t: MarketContext(retail_price=t[0] + t[1], feed_in_price=t[0])
)


@settings(max_examples=300)
@given(buy_kwh=quantities, sell_kwh=quantities, ctx=tariffs)
def test_slot_mechanism_properties(
    buy_kwh: list[float], sell_kwh: list[float], ctx: MarketContext
) -> None:
    n = len(buy_kwh) + len(sell_kwh)
    book = OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=np.array([Side.BUY] * len(buy_kwh) + [Side.SELL] * len(sell_kwh), np.int8),
        quantity_kwh=np.array(buy_kwh + sell_kwh, dtype=np.float64),
        price=np.linspace(-5.0, 99.0, n),  # ignored
    )
    result = BillSharing().clear(book, ctx)
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    assert result.pool
    assert np.all((fill >= 0.0) & (fill <= q))
    assert np.isnan(result.price[fill == 0.0]).all()
    np.testing.assert_array_equal(result.price[fill > 0.0], 0.0)
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
    assert result.operator_surplus == 0.0
    # all-in: each order's cost is q at the single-slot price, and the costs add up to the
    # slot's grid bill
    tbp, tsp = q[is_buy].sum(), q[~is_buy].sum()
    lam_buy, lam_sell = ctx.retail_price, ctx.feed_in_price
    cost = np.where(is_buy, (q - fill) * lam_buy, -(q - fill) * lam_sell)
    if tbp > 0.0:
        assert 0.0 <= result.buy_price <= lam_buy
        np.testing.assert_allclose(cost[is_buy], q[is_buy] * result.buy_price, rtol=0, atol=1e-9)
    if tsp > 0.0:
        assert 0.0 <= result.sell_price <= lam_sell
        np.testing.assert_allclose(
            cost[~is_buy], -q[~is_buy] * result.sell_price, rtol=0, atol=1e-9
        )
    grid_bill = lam_buy * max(tbp - tsp, 0.0) - lam_sell * max(tsp - tbp, 0.0)
    assert cost.sum() == pytest.approx(grid_bill, rel=0, abs=1e-9)
