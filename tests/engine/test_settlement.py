import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.markets.base import ClearingResult, Side
from peergrid.settlement.slot import commit, orders_from_net, retailer_only_cost, settle_slot


def test_orders_one_per_non_zero_participant() -> None:
    net = np.array([0.0, -1.5, 2.0, 1e-15])
    book = orders_from_net(net, np.full(4, 0.3), np.full(4, 0.1))
    assert list(book.participant) == [1, 2]
    assert list(book.side) == [Side.BUY, Side.SELL]
    assert list(book.quantity_kwh) == [1.5, 2.0]
    assert list(book.price) == [0.3, 0.1]


@settings(max_examples=200, deadline=None)
@given(
    net=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=12),
    frac=st.floats(0, 1),
    retail=st.floats(0.1, 0.5),
)
def test_settlement_identity_and_money(net: list[float], frac: float, retail: float) -> None:
    n = np.array(net)
    feed_in = retail / 4
    book = orders_from_net(n, np.full(n.size, retail), np.full(n.size, feed_in))
    buy = book.side == Side.BUY
    tb, ts = book.quantity_kwh[buy].sum(), book.quantity_kwh[~buy].sum()
    traded = frac * min(tb, ts)
    filled = np.where(
        buy,
        book.quantity_kwh * (traded / tb if tb else 0),
        book.quantity_kwh * (traded / ts if ts else 0),
    )
    price = np.where(filled > 0, (retail + feed_in) / 2, np.nan)
    res = ClearingResult(filled_kwh=filled, price=price)
    s = settle_slot(commit(book, res, n.size, retail, feed_in), n, retail, feed_in)
    lhs = s.grid_export_kwh + s.p2p_sold_kwh - s.grid_import_kwh - s.p2p_bought_kwh
    assert np.allclose(lhs, n, atol=1e-9, rtol=0)
    assert abs(s.p2p_bought_kwh.sum() - s.p2p_sold_kwh.sum()) < 1e-9
    # with a price between feed-in and retail nobody pays more than alone
    alone = retailer_only_cost(n, retail, feed_in)
    assert np.all(s.cost <= alone + 1e-12)
