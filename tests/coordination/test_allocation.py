"""Revenue allocation: Shapley (exact and sampled), the core, and the rules on a community."""

from __future__ import annotations

import numpy as np
import pytest

from peergrid.coordination.game import CommunityGame, community_value, restrict
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import net_kwh_of
from peergrid.coordination.schedule import schedule
from peergrid.sharing.games import core_check, least_core, shapley_value
from peergrid.sharing.rules import (
    marginal_allocation,
    proportional_allocation,
    shapley_allocation,
    traded_volume_kwh,
)
from tests.ems.ems_community import suburb

# --------------------------------------------------------------------------------------------
# Shapley value


def test_textbook_three_player_game() -> None:
    """v(1) = v(2) = v(3) = 0, v(12) = 90, v(13) = 80, v(23) = 70, v(123) = 120. By hand:
    φ1 = 90/6 + 80/6 + (120 − 70)/3 = 45, φ2 = 90/6 + 70/6 + (120 − 80)/3 = 40,
    φ3 = 80/6 + 70/6 + (120 − 90)/3 = 35."""
    table = {
        frozenset({0, 1}): 90.0,
        frozenset({0, 2}): 80.0,
        frozenset({1, 2}): 70.0,
        frozenset({0, 1, 2}): 120.0,
    }
    phi = shapley_value(lambda s: table.get(s, 0.0), 3)
    assert phi.exact and phi.n_evaluations == 8
    np.testing.assert_allclose(phi.value, [45.0, 40.0, 35.0])
    np.testing.assert_array_equal(phi.std_error, 0.0)


def test_airport_cost_game() -> None:
    """Littlechild & Owen's airport game with runway costs 1, 2, 3: c(S) = max cost in S;
    φ = (1/3, 1/3 + 1/2, 1/3 + 1/2 + 1). Concave, so the Shapley value is in the (cost) core."""
    costs = [1.0, 2.0, 3.0]

    def c(s: frozenset[int]) -> float:
        return max((costs[i] for i in s), default=0.0)

    phi = shapley_value(c, 3).value
    np.testing.assert_allclose(phi, [1 / 3, 5 / 6, 11 / 6])
    assert core_check(phi, c, 3, kind="cost").in_core
    # in the profit direction the same numbers fail: the direction matters
    assert not core_check(phi, c, 3, kind="profit").in_core


def test_efficiency_symmetry_and_dummy() -> None:
    """v(S) = (Σ_{i∈S} w_i)² with players 0 and 1 identical (w = 2) and player 4 a dummy
    (w = 0 contributes nothing to any coalition)."""
    w = np.array([2.0, 2.0, 1.0, 3.0, 0.0, 5.0])

    def v(s: frozenset[int]) -> float:
        return float(sum(w[i] for i in s)) ** 2

    phi = shapley_value(v, 6).value
    assert phi.sum() == pytest.approx(v(frozenset(range(6))))
    assert phi[0] == pytest.approx(phi[1])
    assert phi[4] == pytest.approx(0.0, abs=1e-12)


def test_sampled_within_a_few_standard_errors_of_exact() -> None:
    w = np.arange(1.0, 9.0)

    def v(s: frozenset[int]) -> float:
        return float(w[sorted(s)].sum() ** 1.5) + (5.0 if {0, 7} <= s else 0.0)

    exact = shapley_value(v, 8)
    sampled = shapley_value(v, 8, max_exact=4, n_samples=1500, rng=np.random.default_rng(7))
    assert not sampled.exact and sampled.n_samples == 1500
    assert (sampled.std_error > 0).all()
    z = (sampled.value - exact.value) / sampled.std_error
    assert np.abs(z).max() < 4.0, z
    # every permutation's contributions add up to v(N): the estimate is exactly efficient
    assert sampled.value.sum() == pytest.approx(v(frozenset(range(8))))


def test_beyond_fifteen_players_the_value_is_sampled() -> None:
    def v(s: frozenset[int]) -> float:
        return 3.0 * len(s) + (1.0 if len(s) == 16 else 0.0)

    phi = shapley_value(v, 16, n_samples=200)
    assert not phi.exact and phi.n_samples == 200
    assert phi.value.sum() == pytest.approx(49.0)
    # the last player of each permutation gets the bonus: 3 + 1/16 on average
    np.testing.assert_allclose(phi.value, 3.0 + 1 / 16, atol=4 * phi.std_error.max())


# --------------------------------------------------------------------------------------------
# core


def test_convex_game_has_shapley_in_the_core() -> None:
    def v(s: frozenset[int]) -> float:
        return float(len(s)) ** 2  # supermodular

    phi = shapley_value(v, 4).value
    check = core_check(phi, v, 4)
    assert check.in_core and check.efficient and check.max_violation < 0
    eps, _ = least_core(v, 4)
    assert eps <= 0.0


def test_majority_game_has_an_empty_core() -> None:
    """Three players, v(S) = 1 for |S| >= 2: any two can take everything, so no allocation is
    stable; the least core needs ε = 1/3."""

    def v(s: frozenset[int]) -> float:
        return 1.0 if len(s) >= 2 else 0.0

    phi = shapley_value(v, 3).value
    check = core_check(phi, v, 3)
    assert check.efficient and not check.in_core
    assert check.max_violation == pytest.approx(1 / 3)
    assert len(check.worst_coalition) == 2
    eps, x = least_core(v, 3)
    assert eps == pytest.approx(1 / 3)
    np.testing.assert_allclose(x, 1 / 3)


# --------------------------------------------------------------------------------------------
# rules


def test_proportional_and_its_guard() -> None:
    baseline = np.array([10.0, -4.0, 6.0])  # a net producer's bill is negative
    a = proportional_allocation(baseline, 9.0, np.array([1.0, 2.0, 1.0]))
    np.testing.assert_allclose(a.savings, [0.75, 1.5, 0.75])  # savings 12 − 9 = 3
    assert a.residual == pytest.approx(0.0, abs=1e-12)
    equal = proportional_allocation(baseline, 9.0, np.zeros(3))
    np.testing.assert_allclose(equal.savings, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        proportional_allocation(baseline, 9.0, np.array([1.0, -1.0, 1.0]))
    np.testing.assert_allclose(traded_volume_kwh(np.array([[1.0, -2.0], [-1.0, 0.5]])), [2, 2.5])


@pytest.fixture(scope="module")
def small_community() -> tuple[ScheduleProblem, ScheduleOptions]:
    comm = suburb(4, 1, 0.5)
    problem = ScheduleProblem.from_profiles(
        comm.assets, comm.profiles, comm.retail, comm.feed_in, comm.dt_h, start=12, stop=36
    )
    return problem, ScheduleOptions(wear_per_kwh=0.0)


def test_community_game_and_the_rules(
    small_community: tuple[ScheduleProblem, ScheduleOptions],
) -> None:
    """On a 4-household, 12-hour coordinated day: coordination saves (v(N) >= 0, v({i}) = 0),
    the marginal allocation (net positions at λ, plus each one's own wear and penalties) is
    budget balanced and in the core of the cost game (duality), Shapley is efficient."""
    problem, opts = small_community
    savings = CommunityGame(problem, opts)
    cost = CommunityGame(problem, opts, kind="cost")
    everyone = frozenset(range(4))
    assert savings(frozenset({2})) == pytest.approx(0.0)
    assert savings(everyone) > 0.0
    assert community_value(problem, everyone, kind="cost", options=opts) == pytest.approx(
        cost(everyone)
    )

    s = schedule(problem, opts)
    baseline = cost.baseline_cost()
    marginal = marginal_allocation(
        net_kwh_of(problem, s), s.marginal_price, baseline, s.objective, s.own_cost
    )
    assert marginal.residual == pytest.approx(0.0, abs=1e-6)
    assert core_check(marginal.cost, cost, 4, kind="cost", tol=1e-6).in_core
    assert (marginal.savings >= -1e-6).all()  # individually rational

    phi = shapley_value(savings, 4)
    shares = shapley_allocation(phi, baseline)
    assert shares.cost.sum() == pytest.approx(s.objective, rel=1e-6)
    assert shares.savings.sum() == pytest.approx(savings(everyone), rel=1e-9)
    assert savings.n_solves == 16 - 1


def test_restrict_renumbers_members(
    small_community: tuple[ScheduleProblem, ScheduleOptions],
) -> None:
    problem, _ = small_community
    sub = restrict(problem, np.array([3, 1]))
    assert sub.n_participants == 2
    np.testing.assert_array_equal(sub.pv_kwh, problem.pv_kwh[:, [3, 1]])
    assert sub.assets.battery.capacity_kwh[0] == problem.assets.battery.capacity_kwh[3]
    jobs = problem.assets.jobs
    assert sub.assets.jobs.n_jobs == int(np.isin(jobs.participant, [1, 3]).sum())
    assert set(sub.assets.jobs.participant.tolist()) <= {0, 1}
