"""Deviation settlement: worked examples for each rule and money conservation as a property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.markets.base import ClearingResult, Side
from peergrid.settlement.deviation import DEVIATION_RULES, reference_price, settle_deviations
from peergrid.settlement.slot import commit, orders_from_net, settle_slot

RETAIL, FEED_IN = 0.30, 0.08


def test_retail_rule_worked_example() -> None:
    # A short 2 kWh pays 2·0.30; B long 1 kWh receives 1·0.08; the retailer nets 0.52
    r = settle_deviations(
        np.array([-2.0, 1.0, 0.0]), "retail", RETAIL, FEED_IN, reference_price=0.2
    )
    np.testing.assert_allclose(r.cost, [0.60, -0.08, 0.0])
    assert r.retailer_revenue == pytest.approx(0.52)
    assert r.operator_revenue == 0.0 and r.netted_kwh == 0.0


def test_penalty_rule_worked_example() -> None:
    # spread 0.05: short pays 0.35, long receives 0.03; the operator keeps 0.05 per kWh
    r = settle_deviations(
        np.array([-2.0, 1.0]), "penalty", RETAIL, FEED_IN, reference_price=0.2, penalty_per_kwh=0.05
    )
    np.testing.assert_allclose(r.cost, [0.70, -0.03])
    assert r.retailer_revenue == pytest.approx(0.52)
    assert r.operator_revenue == pytest.approx(0.15)


def test_net_then_causer_short_community() -> None:
    # shorts 3 and 1 kWh (S = 4), long 1 kWh (L = 1): 1 kWh netted at p_ref = 0.2, the residual
    # 3 kWh imported at 0.30. Shorts pay (0.2·1 + 0.3·3) = 1.1 pro rata 3:1, the long one
    # receives 0.2.
    r = settle_deviations(
        np.array([-3.0, -1.0, 1.0]), "net-then-causer", RETAIL, FEED_IN, reference_price=0.2
    )
    np.testing.assert_allclose(r.cost, [0.825, 0.275, -0.2])
    assert r.retailer_revenue == pytest.approx(0.9)
    assert r.netted_kwh == pytest.approx(1.0)


def test_net_then_causer_long_community() -> None:
    # long 2 and 2 (L = 4), short 1 (S = 1): 1 kWh netted at 0.2, 3 kWh exported at 0.08; longs
    # receive (0.2·1 + 0.08·3) = 0.44 half each, the short one pays 0.2
    r = settle_deviations(
        np.array([2.0, 2.0, -1.0]), "net-then-causer", RETAIL, FEED_IN, reference_price=0.2
    )
    np.testing.assert_allclose(r.cost, [-0.22, -0.22, 0.2])
    assert r.retailer_revenue == pytest.approx(-0.24)


def test_offsetting_deviations_cost_no_imbalance() -> None:
    r = settle_deviations(
        np.array([1.5, -1.5]), "net-then-causer", RETAIL, FEED_IN, reference_price=0.2
    )
    np.testing.assert_allclose(r.cost, [-0.3, 0.3])
    assert r.retailer_revenue == 0.0


def test_reference_price_falls_back() -> None:
    assert reference_price(0.21, np.zeros(2), np.full(2, np.nan), RETAIL, FEED_IN) == 0.21
    fills, prices = np.array([1.0, 3.0]), np.array([0.1, 0.2])
    assert reference_price(np.nan, fills, prices, RETAIL, FEED_IN) == pytest.approx(0.175)
    assert reference_price(np.nan, np.zeros(2), prices, RETAIL, FEED_IN) == pytest.approx(0.19)


deviations = st.lists(
    st.floats(-5, 5, allow_nan=False, allow_subnormal=False), min_size=1, max_size=15
)


@settings(max_examples=300, deadline=None)
@given(d=deviations, rule=st.sampled_from(DEVIATION_RULES), p_ref=st.floats(0.08, 0.30))
def test_money_is_conserved_for_every_rule(d: list[float], rule: str, p_ref: float) -> None:
    dev = np.array(d)
    r = settle_deviations(dev, rule, RETAIL, FEED_IN, reference_price=p_ref, penalty_per_kwh=0.04)  # type: ignore[arg-type]
    assert r.cost.sum() == pytest.approx(r.retailer_revenue + r.operator_revenue, abs=1e-9)
    # nobody short earns and nobody long pays under the retail and netting rules
    if rule != "penalty":
        assert np.all(r.cost[dev < 0] >= -1e-12) and np.all(r.cost[dev > 0] <= 1e-12)
    # a causer never pays more per kWh than the retail price, never earns less than feed-in
    if rule == "net-then-causer":
        short = dev < 0
        assert np.all(r.cost[short] <= -dev[short] * RETAIL + 1e-9)
        assert np.all(-r.cost[dev > 0] >= dev[dev > 0] * FEED_IN - 1e-9)


@settings(max_examples=200, deadline=None)
@given(
    planned=st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=10),
    noise=st.lists(st.floats(-1, 1, allow_nan=False), min_size=10, max_size=10),
    frac=st.floats(0, 1),
    rule=st.sampled_from(DEVIATION_RULES),
)
def test_slot_settlement_conserves_money_and_energy(
    planned: list[float], noise: list[float], frac: float, rule: str
) -> None:
    """Per slot: what participants pay equals what the retailer and the operator receive, and
    net = committed + deviation = grid export + sold − grid import − bought."""
    net = np.array(planned)
    metered = net + np.array(noise[: net.size])
    book = orders_from_net(net, np.full(net.size, RETAIL), np.full(net.size, FEED_IN))
    buy = book.side == Side.BUY
    tb, ts = book.quantity_kwh[buy].sum(), book.quantity_kwh[~buy].sum()
    traded = frac * min(tb, ts)
    filled = np.where(
        buy,
        book.quantity_kwh * (traded / tb if tb else 0),
        book.quantity_kwh * (traded / ts if ts else 0),
    )
    res = ClearingResult(filled_kwh=filled, price=np.where(filled > 0, 0.2, np.nan))
    c = commit(book, res, net.size, RETAIL, FEED_IN)
    s = settle_slot(c, metered, RETAIL, FEED_IN, rule, 0.04)  # type: ignore[arg-type]
    assert s.cost.sum() == pytest.approx(s.retailer_revenue + s.operator_revenue, abs=1e-9)
    np.testing.assert_allclose(s.committed_kwh + s.deviation_kwh, metered, atol=1e-9, rtol=0)
    flows = s.grid_export_kwh + s.p2p_sold_kwh - s.grid_import_kwh - s.p2p_bought_kwh
    np.testing.assert_allclose(flows, metered, atol=1e-9, rtol=0)
    assert not np.any((s.grid_import_kwh > 0) & (s.grid_export_kwh > 0))


def test_several_orders_per_participant() -> None:
    """Participant 0 sells 1 kWh at 0.10 and 1 kWh at 0.25; participant 1 buys 1.5 at 0.30;
    the book fills 1 + 0.5 at 0.2: its commitment is +2, its fills are priced per kWh."""
    from peergrid.markets.base import OrderBook

    book = OrderBook(
        id=np.array([10, 11, 12]),
        participant=np.array([0, 0, 1]),
        side=np.array([Side.SELL, Side.SELL, Side.BUY], dtype=np.int8),
        quantity_kwh=np.array([1.0, 1.0, 1.5]),
        price=np.array([0.10, 0.25, 0.30]),
    )
    res = ClearingResult(filled_kwh=np.array([1.0, 0.5, 1.5]), price=np.array([0.2, 0.2, 0.2]))
    c = commit(book, res, 2, RETAIL, FEED_IN)
    np.testing.assert_allclose(c.committed_kwh, [2.0, -1.5])
    np.testing.assert_allclose(c.p2p_sold_kwh, [1.5, 0.0])
    np.testing.assert_allclose(c.p2p_sell_price[:1], [0.2])
    np.testing.assert_allclose(c.sell_limit_price[:1], [0.175])
    s = settle_slot(c, np.array([2.0, -1.5]), RETAIL, FEED_IN)
    # 1.5 kWh at 0.2 in the community, the unfilled 0.5 kWh exported at feed-in
    assert s.cost[0] == pytest.approx(-(1.5 * 0.2 + 0.5 * FEED_IN))
    assert s.deviation_kwh.tolist() == [0.0, 0.0]
