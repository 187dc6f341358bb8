"""The policy registry, parameter validation and the bidding factors."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid.ems.base import EmsParams
from peergrid.ems.bidding import BiddingParams, draw_factors, limit_prices
from peergrid.ems.price_aware import PriceAwareParams
from peergrid.ems.registry import list_policies, make_policy, policy_names
from peergrid.ems.self_consumption import SelfConsumptionParams
from peergrid.errors import InputError


def test_list_policies() -> None:
    assert policy_names() == ["coordinated", "price-aware", "self-consumption", "stackelberg"]
    infos = list_policies()
    assert [i.name for i in infos] == policy_names()
    assert all(i.description and not i.observes_market for i in infos)
    pa = {p.name: p for p in infos[1].params}
    assert pa["horizon_h"].default == 24.0
    assert pa["replan_h"].default is None
    assert pa["bid_buy_low"].description


@pytest.mark.parametrize("name", ["self-consumption", "price-aware"])
def test_make_policy_defaults(name: str) -> None:
    policy = make_policy(name, None, 4, np.random.default_rng(0))
    assert policy.name == name
    assert policy.horizon_h == 24.0
    assert policy.observes_market is False
    assert issubclass(policy.Params, EmsParams)


def test_documented_defaults() -> None:
    sc = SelfConsumptionParams()
    assert (sc.horizon_h, sc.comfort_margin_k) == (24.0, 0.5)
    assert (sc.bid_buy_low, sc.bid_buy_high, sc.bid_sell_low, sc.bid_sell_high) == (
        0.5,
        1.0,
        0.0,
        0.5,
    )
    pa = PriceAwareParams()
    assert (pa.replan_h, pa.min_spread_per_kwh, pa.thermal_cheap_fraction) == (None, 0.0, 0.25)


def test_unknown_policy() -> None:
    with pytest.raises(InputError, match=r"unknown policy 'greedy'.*price-aware"):
        make_policy("greedy", None, 3, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("self-consumption", {"horizon": 12}, r"horizon: unknown parameter"),
        ("price-aware", {"horizon_h": -1.0}, r"horizon_h: Input should be greater than 0"),
        ("price-aware", {"bid_buy_low": 1.5}, r"bid_buy_low: Input should be less than or equal"),
        ("price-aware", {"bid_buy_low": 0.9, "bid_buy_high": 0.6}, r"bid_buy_low must be <="),
        ("self-consumption", {"bid_sell_low": 0.4, "bid_sell_high": 0.1}, r"bid_sell_low must"),
        ("price-aware", {"replan_h": 30.0}, r"replan_h must be <= horizon_h"),
        ("price-aware", {"thermal_cheap_fraction": 2}, r"thermal_cheap_fraction"),
        ("price-aware", {"comfort_margin_k": "warm"}, r"comfort_margin_k"),
    ],
)
def test_bad_params_name_the_parameter(name: str, params: dict[str, object], pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        make_policy(name, params, 3, np.random.default_rng(0))


def test_bad_participant_count() -> None:
    with pytest.raises(InputError, match="at least one participant"):
        make_policy("price-aware", None, 0, np.random.default_rng(0))


def test_bid_factors_in_range_and_reproducible() -> None:
    params = BiddingParams(bid_buy_low=0.6, bid_buy_high=0.8, bid_sell_low=0.1, bid_sell_high=0.2)
    f1 = draw_factors(params, 500, np.random.default_rng(5))
    f2 = draw_factors(params, 500, np.random.default_rng(5))
    np.testing.assert_array_equal(f1.buy, f2.buy)
    np.testing.assert_array_equal(f1.sell, f2.sell)
    assert ((f1.buy >= 0.6) & (f1.buy <= 0.8)).all()
    assert ((f1.sell >= 0.1) & (f1.sell <= 0.2)).all()
    assert f1.buy.std() > 0.0


def test_limit_prices_formula() -> None:
    params = BiddingParams(bid_buy_low=1.0, bid_buy_high=1.0, bid_sell_low=0.0, bid_sell_high=0.0)
    f = draw_factors(params, 2, np.random.default_rng(0))
    buy, sell = limit_prices(f, 0.30, 0.08)
    np.testing.assert_allclose(buy, [0.30, 0.30])
    np.testing.assert_allclose(sell, [0.08, 0.08])
    params = BiddingParams(bid_buy_low=0.5, bid_buy_high=0.5, bid_sell_low=0.25, bid_sell_high=0.25)
    buy, sell = limit_prices(draw_factors(params, 1, np.random.default_rng(0)), 0.30, 0.10)
    np.testing.assert_allclose(buy, [0.20])  # 0.10 + 0.5·0.20
    np.testing.assert_allclose(sell, [0.15])  # 0.10 + 0.25·0.20


def test_policy_bids_are_drawn_once_from_rng() -> None:
    a = make_policy("self-consumption", None, 6, np.random.default_rng(11))
    b = make_policy("self-consumption", None, 6, np.random.default_rng(11))
    c = make_policy("self-consumption", None, 6, np.random.default_rng(12))
    assert np.array_equal(a.factors.buy, b.factors.buy)  # type: ignore[attr-defined]
    assert not np.array_equal(a.factors.buy, c.factors.buy)  # type: ignore[attr-defined]
