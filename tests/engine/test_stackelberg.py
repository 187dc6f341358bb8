"""The Stackelberg market: leader prices, follower EMSs, iterations reported, honest fallback."""

from __future__ import annotations

import numpy as np

from peergrid import simulate
from peergrid.scenario.schema import EmsSpec, MarketSpec

from .conftest import small_scenario
from .test_invariants import check_invariants


def test_game_converges_and_the_run_keeps_every_invariant() -> None:
    # 12 homes: smaller communities answer too lumpily to reach the default tolerance (8 homes
    # stop at a mean residual of 0.006 and fall back, as the next test shows for the fallback)
    sc = small_scenario(n=12, days=2, tou=True)
    result = simulate(sc.model_copy(update={"market": MarketSpec(mechanism="stackelberg")}))
    check_invariants(result)
    assert result.summary["ems"] == "stackelberg"
    assert result.summary["baseline_ems"] == "self-consumption"
    info = result.summary["ems_info"]
    assert info["plans"] == 2 and info["iterations"] >= 2
    assert info["not_converged"] == 0
    assert info["last_mean_residual_per_kwh"] < 5e-3


def test_non_convergence_is_reported_and_falls_back_to_the_tariff() -> None:
    sc = small_scenario(n=6, days=1, tou=True)
    params = {"max_iterations": 1, "tolerance_per_kwh": 1e-12}
    game = simulate(
        sc.model_copy(update={"market": MarketSpec(mechanism="stackelberg", params=params)})
    )
    assert game.summary["ems_info"]["not_converged"] == 1
    # falling back, the followers plan against the retailer's prices: exactly price-aware
    alone = simulate(
        sc.model_copy(
            update={"ems": EmsSpec(policy="price-aware"), "market": MarketSpec(mechanism="sdr")}
        )
    )
    assert np.array_equal(game.series("net_kwh"), alone.series("net_kwh"))
