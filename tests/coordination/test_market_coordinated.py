"""The `coordinated` mechanism: a pool at the coordinator's internal price; end to end with the
coordinated EMS in the engine."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid.markets.base import MarketContext, OrderBook, Side
from peergrid.markets.coordinated import CoordinatedMarket, CoordinatedMarketParams, pool_price
from peergrid.markets.registry import get_mechanism, list_mechanisms

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)
B, S = int(Side.BUY), int(Side.SELL)


def _book(sides: list[int], q: list[float], p: list[float]) -> OrderBook:
    n = len(sides)
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=np.array(sides, dtype=np.int8),
        quantity_kwh=np.array(q, dtype=float),
        price=np.array(p, dtype=float),
    )


def test_pool_at_the_internal_price() -> None:
    """All limits at λ = 0.2: buyers want 1 + 2 kWh, a seller offers 1.5 kWh: the seller fills
    fully, the buyers pro rata (0.5 and 1.0), everything at 0.2."""
    book = _book([B, B, S], [1.0, 2.0, 1.5], [0.2, 0.2, 0.2])
    r = get_mechanism("coordinated").clear(book, CTX)
    np.testing.assert_allclose(r.filled_kwh, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(r.price, [0.2, 0.2, 0.2])
    assert r.clearing_price == r.buy_price == r.sell_price == 0.2
    assert r.pool and r.operator_surplus == 0.0
    assert r.traded_kwh == pytest.approx(1.5)
    assert r.info["uniform_limits"] == 1.0 and r.info["provisional"] == 0.0


def test_long_sellers_fill_pro_rata() -> None:
    book = _book([B, S, S], [1.0, 1.0, 3.0], [0.1, 0.1, 0.1])
    r = CoordinatedMarket().clear(book, CTX)
    np.testing.assert_allclose(r.filled_kwh, [1.0, 0.25, 0.75])


def test_mixed_limits_use_the_volume_weighted_midpoint() -> None:
    """Buys 1 kWh @ 0.25 and 3 kWh @ 0.15 (mean 0.175), sells 2 @ 0.10 and 2 @ 0.20 (mean
    0.15): p = 0.1625. Only orders that accept p trade (the buyer at 0.15 and the seller at 0.20
    do not), so nobody trades against its limit: 1 kWh at 0.1625."""
    book = _book([B, B, S, S], [1.0, 3.0, 2.0, 2.0], [0.25, 0.15, 0.10, 0.20])
    assert pool_price(book, CTX) == pytest.approx(0.1625)
    r = CoordinatedMarket().clear(book, CTX)
    np.testing.assert_allclose(r.filled_kwh, [1.0, 0.0, 1.0, 0.0])
    assert np.isnan(r.price[[1, 3]]).all()
    assert r.clearing_price == pytest.approx(0.1625)
    assert r.info["uniform_limits"] == 0.0


def test_price_clipped_to_the_retail_band_and_one_sided_books() -> None:
    above = _book([B, S], [1.0, 1.0], [0.5, 0.5])
    assert CoordinatedMarket().clear(above, CTX).clearing_price == pytest.approx(0.30)
    below = _book([B, S], [1.0, 1.0], [0.01, 0.01])
    assert CoordinatedMarket().clear(below, CTX).clearing_price == pytest.approx(0.05)
    buyers_only = _book([B, B], [1.0, 3.0], [0.2, 0.1])
    r = CoordinatedMarket().clear(buyers_only, CTX)
    assert r.clearing_price == pytest.approx(0.125)
    assert (r.filled_kwh == 0.0).all() and np.isnan(r.price).all()
    empty = CoordinatedMarket().clear(OrderBook.empty(), CTX)
    assert np.isnan(empty.clearing_price) and empty.filled_kwh.size == 0


def test_registered_with_its_allocation_rule() -> None:
    info = {i.name: i for i in list_mechanisms()}["coordinated"]
    assert (info.family, info.uses_net_positions) == ("coordinated", False)
    rule, samples, core = info.params
    assert (rule.name, rule.default) == ("allocation", "marginal")
    assert (samples.name, samples.default) == ("shapley_samples", 200)
    assert (core.name, core.default) == ("core_check_max_players", 12)
    mech = get_mechanism("coordinated", {"allocation": "shapley"})
    assert isinstance(mech.params, CoordinatedMarketParams)
    r = mech.clear(_book([B, S], [1.0, 1.0], [0.2, 0.2]), CTX)
    assert (r.info["allocation"], r.info["provisional"]) == (2.0, 1.0)
    np.testing.assert_allclose(r.price, [0.2, 0.2])  # the slot's fills stay at λ


def test_end_to_end_with_the_coordinated_ems() -> None:
    """The engine runs the coordinated EMS and market on the demo community with perfect
    forecasts: the pool trades at the internal price, which stays within [feed-in, retail],
    money balances and nobody is worse off."""
    from peergrid import load_scenario, simulate
    from peergrid.scenario.schema import EmsSpec

    scenario = load_scenario("demo")
    scenario = scenario.model_copy(
        update={
            "time": scenario.time.model_copy(update={"days": 1}),
            "ems": EmsSpec(policy="coordinated", params={}),
        }
    )
    result = simulate(scenario, market="coordinated", forecast="perfect")
    summary = result.summary
    assert (summary["ems"], summary["market"]) == ("coordinated", "coordinated")
    assert summary["cost"]["operator_surplus"] == pytest.approx(0.0, abs=1e-9)
    assert summary["energy"]["p2p_traded_kwh"] > 0.0
    assert summary["market_info"]["uniform_limits"]["mean"] == 1.0
    assert summary["kpi"]["participants_worse_off"] == 0
