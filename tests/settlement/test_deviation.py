"""Deviation settlement: worked examples for each rule and money conservation as a property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.markets.base import ClearingResult, OrderBook, Side
from peergrid.settlement.deviation import DEVIATION_RULES, reference_price, settle_deviations
from peergrid.settlement.slot import commit, orders_from_net, settle_slot

RETAIL, FEED_IN = 0.30, 0.08


def test_retail_rule_nets_with_the_own_schedule() -> None:
    """A sold 1 kWh in the community and delivers 0.5 (short 0.5: buys it at retail); B had
    a schedule to import 1 kWh from the retailer and takes 0.5 (long 0.5: it simply imports
    less, no spread lost); C had no position and exports 0.2 (at feed-in)."""
    r = settle_deviations(
        np.array([0.0, -1.0, 0.0]),
        np.array([-0.5, 0.5, 0.2]),
        "retail",
        RETAIL,
        FEED_IN,
        reference_price=0.2,
    )
    np.testing.assert_allclose(r.cost, [0.15, -0.15, -0.016])
    assert r.retailer_revenue == pytest.approx(r.cost.sum())
    assert r.operator_revenue == 0.0 and r.netted_kwh == 0.0


def test_penalty_rule_adds_the_spread_on_every_deviation() -> None:
    r = settle_deviations(
        np.array([0.0, -1.0]),
        np.array([-0.5, 0.5]),
        "penalty",
        RETAIL,
        FEED_IN,
        reference_price=0.2,
        penalty_per_kwh=0.05,
    )
    np.testing.assert_allclose(r.cost, [0.175, -0.125])
    assert r.operator_revenue == pytest.approx(0.05)
    assert r.retailer_revenue == pytest.approx(0.0)


def test_net_then_causer_short_community() -> None:
    """Extra imports 3 and 1 kWh (sellers short on their fills), an extra export of 1 kWh (a
    buyer long): 1 kWh is met inside at p_ref = 0.2, pro rata to the extra imports (0.75 and
    0.25); the residual 3 kWh is imported at 0.30 by the causers."""
    r = settle_deviations(
        np.zeros(3),
        np.array([-3.0, -1.0, 1.0]),
        "net-then-causer",
        RETAIL,
        FEED_IN,
        reference_price=0.2,
    )
    np.testing.assert_allclose(r.cost, [0.75 * 0.2 + 2.25 * 0.3, 0.25 * 0.2 + 0.75 * 0.3, -0.2])
    assert r.retailer_revenue == pytest.approx(0.9)
    assert r.netted_kwh == pytest.approx(1.0)


def test_net_then_causer_long_community() -> None:
    r = settle_deviations(
        np.zeros(3),
        np.array([2.0, 2.0, -1.0]),
        "net-then-causer",
        RETAIL,
        FEED_IN,
        reference_price=0.2,
    )
    np.testing.assert_allclose(r.cost, [-(0.5 * 0.2 + 1.5 * 0.08)] * 2 + [0.2])
    assert r.retailer_revenue == pytest.approx(-0.24)


def test_net_then_causer_leaves_reductions_of_the_own_schedule_at_the_tariff() -> None:
    """B imports 0.5 kWh less than scheduled: that is not energy it can give anyone, so it is
    not netted against A's shortfall; both are settled as under the retail rule."""
    args = (np.array([0.0, -1.0]), np.array([-0.5, 0.5]))
    causer = settle_deviations(*args, "net-then-causer", RETAIL, FEED_IN, reference_price=0.2)
    plain = settle_deviations(*args, "retail", RETAIL, FEED_IN, reference_price=0.2)
    np.testing.assert_allclose(causer.cost, plain.cost)
    assert causer.netted_kwh == 0.0


def test_offsetting_deviations_cost_no_imbalance() -> None:
    r = settle_deviations(
        np.zeros(2),
        np.array([1.5, -1.5]),
        "net-then-causer",
        RETAIL,
        FEED_IN,
        reference_price=0.2,
    )
    np.testing.assert_allclose(r.cost, [-0.3, 0.3])
    assert r.retailer_revenue == 0.0


def test_reference_price_falls_back() -> None:
    assert reference_price(0.21, np.zeros(2), np.full(2, np.nan), RETAIL, FEED_IN) == 0.21
    fills, prices = np.array([1.0, 3.0]), np.array([0.1, 0.2])
    assert reference_price(np.nan, fills, prices, RETAIL, FEED_IN) == pytest.approx(0.175)
    assert reference_price(np.nan, np.zeros(2), prices, RETAIL, FEED_IN) == pytest.approx(0.19)


values = st.floats(-5, 5, allow_nan=False, allow_subnormal=False)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(values, values), min_size=1, max_size=15),
    rule=st.sampled_from(DEVIATION_RULES),
    p_ref=st.floats(0.08, 0.30),
)
def test_money_is_conserved_for_every_rule(
    rows: list[tuple[float, float]], rule: str, p_ref: float
) -> None:
    sched, dev = (np.array(v) for v in zip(*rows, strict=True))
    r = settle_deviations(
        sched,
        dev,
        rule,
        RETAIL,
        FEED_IN,
        reference_price=p_ref,
        penalty_per_kwh=0.04,  # type: ignore[arg-type]
    )
    assert r.cost.sum() == pytest.approx(r.retailer_revenue + r.operator_revenue, abs=1e-9)
    # a deviation never costs more per kWh than the retail price plus the spread, and a long
    # one never pays unless the penalty applies
    assert np.all(r.cost <= np.abs(dev) * (RETAIL + 0.04) + 1e-9)
    if rule != "penalty":
        assert np.all(r.cost[dev > 0] <= 1e-12)
    # netting never makes the community pay more than the retail rule
    plain = settle_deviations(sched, dev, "retail", RETAIL, FEED_IN, reference_price=p_ref)
    if rule == "net-then-causer":
        assert r.cost.sum() <= plain.cost.sum() + 1e-9


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
    if rule == "retail":
        # the retail rule is the fills plus the metered rest at the tariff, per meter
        rest = metered - (s.p2p_sold_kwh - s.p2p_bought_kwh)
        tariff = np.maximum(-rest, 0) * RETAIL - np.maximum(rest, 0) * FEED_IN
        np.testing.assert_allclose(s.cost, tariff + c.p2p_paid - c.p2p_received, atol=1e-9)


def test_several_orders_per_participant() -> None:
    """Participant 0 sells 1 kWh at 0.10 and 1 kWh at 0.25; participant 1 buys 1.5 at 0.30;
    the book fills 1 + 0.5 at 0.2: its commitment is +2, its fills are priced per kWh."""
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
