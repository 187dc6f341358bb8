"""Network charges as product differentiation in the bilateral market: with a distance tariff a
buyer's trades move to the electrically close seller, prices stay individually rational net of
the fee, and the decentralized result agrees with its coordinated optimum."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from peergrid.errors import InputError
from peergrid.markets.base import MarketContext, NetworkView, OrderBook, Side
from peergrid.markets.bilateral.mechanism import BilateralMarket, build_problem, clear_bilateral
from peergrid.markets.bilateral.params import BilateralParams
from peergrid.markets.bilateral.reference import solve_centralised
from peergrid.network.charges import NetworkTariff, electrical_distance, pair_fees_per_kwh
from tests.network.test_charges import substation, tree_feeder

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)
TARIFF = NetworkTariff(kind="distance", fee_per_kwh_per_ohm=0.1)


def view(fee: np.ndarray, bus_of: np.ndarray) -> NetworkView:
    """A network view with pair fees and no monitored buses or branches."""
    n_bus = int(bus_of.max()) + 1
    return NetworkView(
        bus_of=bus_of,
        pair_fee_per_kwh=fee,
        dv_dp_pu_per_kw=np.zeros((0, n_bus)),
        ptdf=np.zeros((0, n_bus)),
        v_base_pu=np.zeros(0),
        flow_base_kw=np.zeros(0),
        rating_kw=np.zeros(0),
        v_min_pu=0.94,
        v_max_pu=1.10,
    )


def book_of(orders: list[tuple[int, Side, float, float]]) -> OrderBook:
    """Orders (participant, side, kWh, price)."""
    return OrderBook(
        id=np.arange(len(orders), dtype=np.int64),
        participant=np.array([o[0] for o in orders], np.int64),
        side=np.array([o[1] for o in orders], np.int8),
        quantity_kwh=np.array([o[2] for o in orders], dtype=np.float64),
        price=np.array([o[3] for o in orders], dtype=np.float64),
    )


def substation_ctx(bus_of: np.ndarray) -> MarketContext:
    fee = pair_fees_per_kwh(TARIFF, electrical_distance(substation(), bus_of))
    return replace(CTX, network=view(fee, bus_of))


# Buyer 0 at the end of cable A (bus 3); seller 1 on cable B (bus 4), seller 2 next door on
# cable A (bus 2). d(0, 2) = 0.08 Ω, d(0, 1) = 0.32 Ω: fees 0.008 and 0.032 per kWh.
BUS_OF = np.array([3, 4, 2])
BOOK = book_of([(0, Side.BUY, 1.0, 0.25), (1, Side.SELL, 1.0, 0.10), (2, Side.SELL, 1.0, 0.10)])


def test_the_fees_of_the_example() -> None:
    fee = substation_ctx(BUS_OF).network.pair_fee_per_kwh  # type: ignore[union-attr]
    assert fee[2, 0] == pytest.approx(0.008)
    assert fee[1, 0] == pytest.approx(0.032)


def test_a_distance_tariff_moves_the_trade_to_the_close_seller() -> None:
    plain = clear_bilateral(BOOK, CTX)
    np.testing.assert_allclose(plain.filled_kwh, [1.0, 0.5, 0.5], atol=1e-4)
    ctx = substation_ctx(BUS_OF)
    charged = clear_bilateral(BOOK, ctx)
    assert charged.info["converged"] == 1.0
    np.testing.assert_allclose(charged.filled_kwh, [1.0, 0.0, 1.0], atol=1e-3)
    # the trade pays its fee: welfare falls by about 0.008 · 1 kWh
    assert charged.info["welfare"] == pytest.approx(plain.info["welfare"] - 0.008, abs=1e-3)
    # switched off, the network is ignored
    off = clear_bilateral(BOOK, ctx, BilateralParams(network_charges_as_cost=False))
    np.testing.assert_array_equal(off.filled_kwh, plain.filled_kwh)


def test_prices_are_individually_rational_net_of_the_fee() -> None:
    # Two buyers want 1 kWh each; both sellers trade, each pair at a price that leaves both
    # sides better off after paying half the pair's fee.
    bus_of = np.array([3, 4, 2, 4])
    book = book_of(
        [
            (0, Side.BUY, 1.0, 0.25),
            (1, Side.SELL, 1.0, 0.10),
            (2, Side.SELL, 1.0, 0.12),
            (3, Side.BUY, 1.0, 0.22),
        ]
    )
    ctx = substation_ctx(bus_of)
    result = clear_bilateral(book, ctx)
    assert result.info["converged"] == 1.0
    fee = ctx.network.pair_fee_per_kwh  # type: ignore[union-attr]
    s, b = book.participant[result.trade_sell], book.participant[result.trade_buy]
    half = 0.5 * fee[s, b]
    assert result.trade_kwh.sum() == pytest.approx(2.0, abs=1e-3)
    # each buyer buys from the seller on its own cable (0: seller 2, 3: seller 1)
    big = result.trade_kwh > 0.5
    assert {(int(i), int(j)) for i, j in zip(s[big], b[big], strict=True)} == {(2, 0), (1, 3)}
    tol = 2e-3  # the curvature shades limit prices by a·q
    assert np.all(result.trade_price - half >= book.price[result.trade_sell] - tol)
    assert np.all(result.trade_price + half <= book.price[result.trade_buy] + tol)


def test_sparse_graph_picks_the_electrically_nearest_partner() -> None:
    bus_of = np.array([3, 4, 2, 4])
    book = book_of(
        [
            (0, Side.BUY, 1.0, 0.25),
            (1, Side.SELL, 1.0, 0.10),
            (2, Side.SELL, 1.0, 0.10),
            (3, Side.BUY, 1.0, 0.25),
        ]
    )
    problem = build_problem(book, substation_ctx(bus_of), BilateralParams(partners_k=1))
    part = problem.participant
    pairs = {
        (int(part[s]), int(part[b]))
        for s, b in zip(problem.pair_seller, problem.pair_buyer, strict=True)
    }
    assert pairs == {(2, 0), (1, 3)}


def test_decentralized_result_matches_the_coordinated_optimum_with_fees() -> None:
    rng = np.random.default_rng(4)
    n = 14
    parent = [int(rng.integers(0, k + 1)) for k in range(10)]
    f = tree_feeder(
        parent, rng.uniform(0.05, 0.5, 10).tolist(), rng.uniform(0.05, 0.5, 10).tolist()
    )
    bus_of = rng.integers(1, f.n_bus, n)
    fee = pair_fees_per_kwh(TARIFF, electrical_distance(f, bus_of))
    ctx = replace(CTX, network=view(fee, bus_of))
    side = np.where(np.arange(n) % 2 == 0, Side.BUY, Side.SELL)
    book = OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=side.astype(np.int8),
        quantity_kwh=rng.uniform(0.5, 3.0, n),
        price=np.where(side == Side.BUY, rng.uniform(0.12, 0.30, n), rng.uniform(0.05, 0.2, n)),
    )
    params = BilateralParams()
    result = BilateralMarket(params).clear(book, ctx)
    assert result.info["converged"] == 1.0
    problem = build_problem(book, ctx, params)
    # the problem carries the fee, half on each side of every pair
    pay = fee[problem.participant[problem.pair_seller], problem.participant[problem.pair_buyer]]
    np.testing.assert_allclose(problem.cost_seller, 0.5 * pay)
    np.testing.assert_allclose(problem.cost_buyer, 0.5 * pay)
    ref = solve_centralised(problem)
    assert result.info["welfare"] == pytest.approx(ref.welfare, rel=1e-3)
    plain = clear_bilateral(book, CTX, params)
    assert result.info["welfare"] < plain.info["welfare"]


def test_bad_network_fees_are_refused() -> None:
    bad = np.zeros((3, 3))
    bad[1, 0] = -0.01
    with pytest.raises(InputError, match=">= 0"):
        clear_bilateral(BOOK, replace(CTX, network=view(bad, BUS_OF)))
    with pytest.raises(InputError, match="cover"):
        clear_bilateral(BOOK, replace(CTX, network=view(np.zeros((2, 2)), BUS_OF)))
