"""The `coordinated` EMS policy: limits in every slot, cost against the rule-based policies,
the internal price as limit prices, purity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid.ems.base import Forecast, SlotInputs
from peergrid.ems.coordinated import Coordinated, CoordinatedParams, CoordinatedState
from peergrid.ems.driver import run_policy
from peergrid.ems.registry import list_policies, make_policy
from peergrid.errors import InputError
from tests.ems.ems_checks import check_all
from tests.ems.ems_community import Community, net_of, no_ev, random_community, run, suburb


def _run(comm: Community, **params: Any) -> dict[str, Any]:
    policy = make_policy(
        "coordinated", params, comm.assets.n_participants, np.random.default_rng(0)
    )
    return run_policy(policy, comm.assets, comm.profiles, comm.retail, comm.feed_in, comm.dt_h)


def community_cost(comm: Community, r: dict[str, Any]) -> float:
    """The community's cost with the retailer when its members net internally (what any
    budget-balanced pool with prices in [feed-in, retail] adds up to) [currency]."""
    g = net_of(r).sum(axis=1)
    return float((np.maximum(-g, 0.0) * comm.retail - np.maximum(g, 0.0) * comm.feed_in).sum())


# --------------------------------------------------------------------------------------------
# every limit, every slot


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 10),
    minutes=st.sampled_from([15, 30, 60]),
    days=st.integers(1, 2),
    ample=st.booleans(),
    extra=st.sampled_from(
        [{}, {"replan_h": 1.0}, {"replan_on_trip": True}, {"shiftable": "milp"}, {"solver": "ipm"}]
    ),
)
def test_limits_hold_in_every_slot(
    seed: int, n: int, minutes: int, days: int, ample: bool, extra: dict[str, Any]
) -> None:
    comm = random_community(seed, n, days, minutes / 60, ample_thermal=ample)
    r = _run(comm, **extra)
    check_all(comm, r, policy="coordinated")


def test_comfort_band_is_checked_and_held() -> None:
    comm = random_community(3, 12, 2, 0.25, ample_thermal=True)
    r = _run(comm)
    assert check_all(comm, r, policy="coordinated") > 100


# --------------------------------------------------------------------------------------------
# cost


@pytest.mark.parametrize("tou", [True, False])
def test_cheaper_than_the_rule_based_policies(tou: bool) -> None:
    """What holds: the LP is the optimum of the same physics up to the runs' relaxation
    (`test_schedule.test_lp_is_a_lower_bound_on_self_consumption`). The executed policy adds
    rounding the runs to blocks, unknown trips (recovered at once) and rolling 24 h plans, so
    its advantage is not a theorem; on the suburb community it is large: below
    self-consumption on both tariffs, and below price-aware on time-of-use."""
    comm = suburb(12, 2, 0.25, tou=tou)
    coordinated = _run(comm)
    check_all(comm, coordinated, policy="coordinated")
    c_co = community_cost(comm, coordinated)
    c_sc = community_cost(comm, run("self-consumption", comm))
    assert c_co < 0.95 * c_sc, (c_co, c_sc)
    if tou:
        c_pa = community_cost(comm, run("price-aware", comm))
        assert c_co < 0.95 * c_pa, (c_co, c_pa)


# --------------------------------------------------------------------------------------------
# the internal price


def test_limit_prices_are_the_clipped_internal_price() -> None:
    comm = suburb(6, 1, 0.25)
    # without EVs (whose trips the forecast does not know) the execution follows the plan
    comm = replace(comm, assets=replace(comm.assets, ev=no_ev(6)))
    r = _run(comm)
    buy, sell = r["buy_limit_price"], r["sell_limit_price"]
    np.testing.assert_array_equal(buy, sell)
    np.testing.assert_array_equal(buy, np.repeat(buy[:, :1], buy.shape[1], axis=1))
    lo = np.minimum(comm.feed_in, comm.retail)
    hi = np.maximum(comm.feed_in, comm.retail)
    assert ((buy[:, 0] >= lo) & (buy[:, 0] <= hi)).all()
    # where the community imports, the internal price is the retail price
    importing = net_of(r).sum(axis=1) < -1e-6
    np.testing.assert_allclose(buy[importing, 0], comm.retail[importing], atol=1e-6)


# --------------------------------------------------------------------------------------------
# interface


def test_registered_with_documented_defaults() -> None:
    info = {i.name: i for i in list_policies()}["coordinated"]
    assert not info.observes_market
    params = {p.name: p.default for p in info.params}
    assert params["horizon_h"] == 24.0 and params["replan_h"] == 6.0
    assert params["shiftable"] == "relaxed"
    with pytest.raises(InputError, match="replan_h must be <= horizon_h"):
        make_policy("coordinated", {"replan_h": 30.0}, 2, np.random.default_rng(0))
    with pytest.raises(InputError, match="shiftable"):
        make_policy("coordinated", {"shiftable": "greedy"}, 2, np.random.default_rng(0))


def test_step_is_pure_and_deterministic() -> None:
    comm = suburb(4, 1, 0.25)
    policy = Coordinated(CoordinatedParams(replan_h=2.0), 4, np.random.default_rng(0))
    state: CoordinatedState = policy.init_state(comm.assets)
    p = comm.profiles
    for t in range(40):
        inputs = SlotInputs(
            t=t,
            dt_h=comm.dt_h,
            base_demand_kwh=p.base_demand_kwh[t],
            pv_kwh=p.pv_kwh[t],
            temp_out_c=float(p.temp_out_c[t]),
            ev_plugged=p.ev_plugged[t],
            ev_trip_kwh=p.ev_trip_kwh[t],
            retail_price=float(comm.retail[t]),
            feed_in_price=float(comm.feed_in[t]),
        )
        forecast = Forecast(
            p.base_demand_kwh[t:],
            p.pv_kwh[t:],
            p.temp_out_c[t:],
            p.ev_plugged[t:],
            comm.retail[t:],
            comm.feed_in[t:],
        )
        before = state.battery_soc_kwh.copy(), state.job_starts.copy()
        new, d1 = policy.step(state, inputs, forecast, comm.assets)
        again, d2 = policy.step(state, inputs, forecast, comm.assets)
        np.testing.assert_array_equal(d1.net_kwh, d2.net_kwh)
        np.testing.assert_array_equal(new.ev_soc_kwh, again.ev_soc_kwh)
        np.testing.assert_array_equal(state.battery_soc_kwh, before[0])
        np.testing.assert_array_equal(state.job_starts, before[1])
        state = new
    assert state.n_plans == 5  # every 8 slots (2 h)
