"""The coordinated market through the simulator: central schedule, baseline, allocation rules."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid import simulate
from peergrid.markets.bill_sharing import community_grid_bill
from peergrid.scenario.schema import MarketSpec

from .conftest import small_scenario
from .test_invariants import check_invariants


def coordinated(allocation: str, n: int = 6) -> object:
    sc = small_scenario(n=n, tou=True)
    return sc.model_copy(
        update={"market": MarketSpec(mechanism="coordinated", params={"allocation": allocation})}
    )


def test_coordinated_run_uses_the_central_schedule_and_the_own_ems_baseline() -> None:
    result = simulate(coordinated("marginal"))  # type: ignore[arg-type]
    check_invariants(result)
    assert result.summary["ems"] == "coordinated"
    assert result.summary["baseline_ems"] == "self-consumption"
    assert result.summary["cost"]["settlement"] == "slot"
    # the optimiser's community bill is no worse than everyone alone with their own EMS
    assert result.summary["cost"]["total"] <= result.summary["cost"]["baseline_total"] + 1e-6


@pytest.mark.parametrize("rule", ["proportional", "shapley"])
def test_period_allocation_rules_share_exactly_the_grid_bill(rule: str) -> None:
    result = simulate(coordinated(rule))  # type: ignore[arg-type]
    assert result.summary["cost"]["settlement"] == "period"
    c = result.community
    grid_bill = community_grid_bill(result.series("net_kwh"), c.retail_price, c.feed_in_price)
    fixed = c.daily_charge * c.grid.days * c.n_participants
    assert abs(result.participants["bill"].sum() - (grid_bill + fixed)) < 1e-6
    net = result.series("net_kwh")
    alone = (
        np.maximum(-net, 0) * c.retail_price[:, None]
        - np.maximum(net, 0) * c.feed_in_price[:, None]
    ).sum(0)
    # everyone pays at most its stand-alone cost of the same dispatch (savings are >= 0 here)
    assert np.all(
        result.participants["bill"].to_numpy() - c.daily_charge * c.grid.days <= alone + 1e-9
    )


@pytest.mark.parametrize("rule", ["marginal", "proportional", "shapley"])
def test_summary_reports_the_core_check(rule: str) -> None:
    from peergrid.markets.coordinated import netting_game
    from peergrid.sharing.games import core_check

    result = simulate(coordinated(rule))  # type: ignore[arg-type]
    core = result.summary["core"]
    assert core["checked"] is True
    c = result.community
    net = result.series("net_kwh")
    fixed = c.daily_charge * c.grid.days
    cost = result.participants["bill"].to_numpy() - fixed
    alone, savings = netting_game(net, c.retail_price, c.feed_in_price)
    direct = core_check(alone - cost, savings, c.n_participants, tol=1e-9 * np.abs(alone).sum())
    assert core["in_core"] == direct.in_core
    assert core["max_violation"] == pytest.approx(direct.max_violation, abs=1e-6)
    if rule != "marginal":  # period rules share exactly the netting game's value
        assert core["efficient"] is True


def test_core_check_is_skipped_for_large_communities() -> None:
    sc = small_scenario(n=5, tou=True).model_copy(
        update={
            "market": MarketSpec(
                mechanism="coordinated",
                params={"allocation": "shapley", "core_check_max_players": 4},
            )
        }
    )
    core = simulate(sc).summary["core"]
    assert core["checked"] is False
