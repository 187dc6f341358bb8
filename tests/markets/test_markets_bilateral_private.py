"""The differentially private bilateral market ("bilateral-dp"): the noise calibration, the
privacy accounting, the sensitivity argument, feasibility of the committed trades on random books,
the limit ε → ∞ and the welfare cost of privacy.

Statistical tests use fixed seeds (so they are deterministic) and tolerances at which a correct
implementation would fail with probability below 1e-6 on a fresh seed.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from peergrid.errors import InputError
from peergrid.markets.base import FloatArray, MarketContext, OrderBook, Side
from peergrid.markets.bilateral.admm import LocalProblems, run_admm, solve_local
from peergrid.markets.bilateral.mechanism import build_problem, clear_bilateral
from peergrid.markets.bilateral.params import BilateralParams
from peergrid.markets.bilateral.private import (
    BudgetSplit,
    commit_trades,
    fit_boxes,
    iteration_epsilons,
    laplace_message_noise,
    laplace_scale_kwh,
    laplace_total_noise,
    noise_rng,
    project_to_totals,
    run_private_admm,
)
from peergrid.markets.bilateral.private_mechanism import (
    PrivateBilateralMarket,
    PrivateBilateralParams,
    build_private_problem,
    clear_private_bilateral,
    private_iterations,
    welfare_vs_epsilon,
)
from peergrid.markets.registry import get_mechanism
from tests.markets.test_markets_bilateral import (
    CTX,
    books,
    check_invariants,
    make_book,
    random_book,
)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

#: |Z| > 5.5 for a standard normal has probability 3.8e-8: the z-score bound of the tests below.
Z_MAX = 5.5
#: A KS p-value below this rejects; under a correct calibration that happens with probability 1e-7.
P_MIN = 1e-7


# --- calibration -------------------------------------------------------------------------------


def test_per_round_scale_is_the_sensitivity_over_the_round_budget() -> None:
    eps_k = iteration_epsilons(1.0, 5, "uniform")
    np.testing.assert_allclose(laplace_scale_kwh(2.0, eps_k), 10.0, rtol=1e-12)
    # ε_k ∝ k: the first round is the noisiest (Σ k = 15, so ε_1 = 1/15 and the scale is 30 kWh).
    scale = laplace_scale_kwh(2.0, iteration_epsilons(1.0, 5, "increasing"))
    np.testing.assert_allclose(scale, 2.0 * 15.0 / np.arange(1, 6), rtol=1e-12)
    assert laplace_scale_kwh(2.0, np.array([math.inf]))[0] == 0.0


@pytest.mark.parametrize("draw", [laplace_total_noise, laplace_message_noise])
def test_noise_is_laplace_with_the_stated_scale(
    draw: Callable[[int, float, np.random.Generator], FloatArray],
) -> None:
    n, scale = 200_000, 10.0
    noise = draw(n, scale, np.random.default_rng(11))
    # E|X| = b and sd|X| = b for Laplace(0, b): the mean absolute noise is within Z_MAX standard
    # errors of the scale.
    assert abs(np.abs(noise).mean() / scale - 1.0) < Z_MAX / math.sqrt(n)
    assert abs(noise.mean()) < Z_MAX * math.sqrt(2.0) * scale / math.sqrt(n)
    assert stats.kstest(noise, stats.laplace(scale=scale).cdf).pvalue > P_MIN
    # The test has the power to see a factor-2 miscalibration (e.g. sensitivity 2q̄).
    assert stats.kstest(noise, stats.laplace(scale=2.0 * scale).cdf).pvalue < P_MIN
    assert not draw(5, 0.0, np.random.default_rng(0)).any()


def _disjoint_pairs(n: int, quantity_kwh: float) -> LocalProblems:
    """n sellers (ask 0.10) and n buyers (bid 0.25), pair i = (seller i, buyer i)."""
    owner = np.arange(2 * n, dtype=np.int64)
    signed = np.concatenate((np.full(n, 0.10), np.full(n, -0.25)))
    return LocalProblems(
        owner=owner,
        signed_price=signed,
        curvature=np.full(2 * n, 1e-4),
        quantity_kwh=np.full(2 * n, quantity_kwh),
    )


def test_a_released_message_is_the_clipped_laplace_perturbation_of_the_proposal() -> None:
    # 100,000 independent pairs, one round at ε = 1 with q̄ = 2 kWh: every peer has one partner,
    # so its message is its total, released as clip(t + Lap(2 kWh), 0, 2).
    n, clip, eps = 100_000, 2.0, 1.0
    problems = _disjoint_pairs(n, clip)

    def one_round(epsilon: float, seed: int) -> FloatArray:
        zero = np.zeros(n)
        it = run_private_admm(
            problems,
            zero,
            zero,
            rho=0.1,
            initial_price=0.175,
            epsilon_per_iteration=np.array([epsilon]),
            clip_kwh=clip,
            rng=noise_rng(seed, 0),
        )
        return it.seller_kwh

    exact = one_round(math.inf, 0)
    proposal = float(exact[0])
    assert 0.5 < proposal < 1.0  # (ρ·u − s)/(ρ + a) with u = λ⁰/ρ: 0.075/0.1001 kWh
    np.testing.assert_allclose(exact, proposal, rtol=1e-12)
    b = clip / eps
    message = one_round(eps, 5)
    # Point masses of the clip: P(0) = ½·exp(−t/b), P(q̄) = ½·exp(−(q̄ − t)/b).
    for mass, p in (
        (message == 0.0, 0.5 * math.exp(-proposal / b)),
        (message == clip, 0.5 * math.exp(-(clip - proposal) / b)),
    ):
        assert abs(mass.mean() - p) < Z_MAX * math.sqrt(p * (1.0 - p) / n)
    # Between the clips, message − proposal is Laplace(b) truncated to (−t, q̄ − t).
    inside = message[(message > 0.0) & (message < clip)] - proposal
    lap = stats.laplace(scale=b)
    lo, hi = lap.cdf(-proposal), lap.cdf(clip - proposal)
    assert stats.kstest(inside, lambda x: (lap.cdf(x) - lo) / (hi - lo)).pvalue > P_MIN


# --- sensitivity -------------------------------------------------------------------------------


@settings(deadline=None, max_examples=80)
@given(
    seed=st.integers(0, 2**32 - 1),
    degree=st.integers(1, 8),
    clip=st.sampled_from([0.5, 2.0]),
)
def test_a_rounds_messages_move_along_one_curve_with_l1_change_at_most_the_bound(
    seed: int, degree: int, clip: float
) -> None:
    # Two neighbouring data sets of one peer (any price, any quantity within [0, q̄]) and the same
    # public targets: the messages differ by |T − T′| ≤ q̄ in L1 norm, and each is the
    # projection of the targets onto its total.
    rng = np.random.default_rng(seed)
    owner = np.zeros(degree, dtype=np.int64)
    u = rng.normal(0.5, 2.0, degree)
    rho = float(rng.uniform(0.01, 1.0))
    solutions = []
    for _ in range(2):
        problems = LocalProblems(
            owner=owner,
            signed_price=np.array([rng.normal(0.0, 0.3)]),
            curvature=np.array([1e-4]),
            quantity_kwh=np.array([rng.uniform(0.0, clip)]),
        )
        layout = problems.layout()
        t = solve_local(u, rho, problems, layout)
        total = np.array([t.sum()])
        np.testing.assert_allclose(project_to_totals(u, total, problems, layout), t, atol=1e-12)
        solutions.append(t)
    change = np.abs(solutions[0] - solutions[1]).sum()
    assert change == pytest.approx(abs(solutions[0].sum() - solutions[1].sum()), abs=1e-12)
    assert change <= clip + 1e-12


def test_without_noise_the_rounds_are_those_of_the_non_private_admm() -> None:
    problem = build_problem(random_book(24, np.random.default_rng(2)), CTX, BilateralParams())
    local = problem.local_problems()
    k = 40
    private = run_private_admm(
        local,
        problem.cost_seller,
        problem.cost_buyer,
        rho=0.1,
        initial_price=problem.initial_price,
        epsilon_per_iteration=np.full(k, math.inf),
        clip_kwh=2.0,  # every quantity of random_book is below 2 kWh
        rng=noise_rng(0, 0),
    )
    plain = run_admm(
        local,
        problem.cost_seller,
        problem.cost_buyer,
        rho=0.1,
        initial_price=problem.initial_price,
        max_iterations=k,
        primal_tol_kwh=1e-300,
        dual_tol_per_kwh=1e-300,
    )
    assert plain.iterations == k
    np.testing.assert_allclose(private.seller_kwh, plain.seller_kwh, atol=1e-12)
    np.testing.assert_allclose(private.buyer_kwh, plain.buyer_kwh, atol=1e-12)
    np.testing.assert_allclose(private.price, plain.price, atol=1e-12)


def test_the_graph_and_the_noise_stream_depend_on_public_data_only() -> None:
    # Neighbouring books: order 3 changes its limit price (to one that cannot trade) and its
    # quantity. Peers, pairs and costs stay the same; only the boxes differ.
    book = random_book(12, np.random.default_rng(4))
    price = book.price.copy()
    quantity = book.quantity_kwh.copy()
    price[3] = 0.0 if book.side[3] == Side.BUY else 1.0
    quantity[3] = 0.0
    other = OrderBook(book.id, book.participant, book.side, quantity, price)
    for partners_k in (None, 2):
        params = PrivateBilateralParams(partners_k=partners_k)
        a = build_private_problem(book, CTX, params)
        b = build_private_problem(other, CTX, params)
        np.testing.assert_array_equal(a.peer_order, np.arange(12))
        for field in ("peer_order", "pair_seller", "pair_buyer", "cost_seller", "cost_buyer"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert b.quantity_kwh[3] == 0.0
    # The noise draws are one per peer and round whatever the data: the same generator state
    # after both runs.
    params = PrivateBilateralParams()
    rng_a, rng_b = noise_rng(0, 0), noise_rng(0, 0)
    private_iterations(build_private_problem(book, CTX, params), params, rng_a)
    private_iterations(build_private_problem(other, CTX, params), params, rng_b)
    assert rng_a.random() == rng_b.random()


# --- accounting --------------------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(
    epsilon=st.floats(1e-3, 1e3),
    iterations=st.integers(1, 500),
    split=st.sampled_from(["uniform", "increasing"]),
)
def test_per_round_budgets_compose_to_at_most_the_total(
    epsilon: float, iterations: int, split: BudgetSplit
) -> None:
    eps_k = iteration_epsilons(epsilon, iterations, split)
    assert eps_k.shape == (iterations,)
    assert np.all(eps_k > 0.0)
    assert math.fsum(eps_k.tolist()) <= epsilon
    assert math.fsum(eps_k.tolist()) >= epsilon * (1.0 - 1e-12)
    if split == "increasing":
        assert np.all(np.diff(eps_k) > 0.0)


def test_invalid_budgets_are_errors() -> None:
    with pytest.raises(ValueError, match="iterations"):
        iteration_epsilons(1.0, 0)
    with pytest.raises(ValueError, match="epsilon"):
        iteration_epsilons(0.0, 3)


class _CountingRng:
    """A generator that counts the Laplace draws (one call = one round of releases)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.calls: list[int] = []

    def laplace(self, loc: float, scale: float, size: int) -> np.ndarray:
        self.calls.append(size)
        return self.rng.laplace(loc, scale, size)


@pytest.mark.parametrize("iterations", [1, 4, 25])
def test_exactly_k_rounds_are_released_whatever_the_data(iterations: int) -> None:
    # The one-pair book converges (non-private) in a few iterations, a 30-peer book needs
    # hundreds: both release exactly K rounds, one noisy total per peer each.
    params = PrivateBilateralParams(iterations=iterations, epsilon=0.7)
    for book in (
        make_book([(0.25, 1.0)], [(0.10, 1.0)]),
        random_book(30, np.random.default_rng(1)),
    ):
        problem = build_private_problem(book, CTX, params)
        spy = _CountingRng()
        it = private_iterations(problem, params, cast(np.random.Generator, spy))
        n_peers = problem.limit_price.size
        assert spy.calls == [n_peers] * iterations
        assert it.released_total_kwh.shape == (iterations, n_peers)
        assert it.iterations == iterations
        result = clear_private_bilateral(book, CTX, params)
        assert result.info["iterations"] == result.info["releases"] == iterations
        assert result.info["epsilon_spent"] <= result.info["epsilon"] == 0.7
        assert result.info["epsilon_spent"] == pytest.approx(0.7, rel=1e-12)


def test_nothing_is_released_when_no_pair_can_trade() -> None:
    for book in (OrderBook.empty(), make_book([(0.2, 1.0)], []), make_book([], [(0.1, 1.0)])):
        result = get_mechanism("bilateral-dp").clear(book, CTX)
        assert result.traded_kwh == 0.0
        assert result.info["releases"] == result.info["epsilon_spent"] == 0.0
        assert np.isnan(result.info["welfare_gap"])


# --- feasibility of the committed trades ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    book=books(),
    epsilon=st.sampled_from([0.1, 1.0, 10.0, 1e6]),
    iterations=st.sampled_from([1, 3, 8]),
    partners_k=st.sampled_from([None, 1, 2]),
    clip=st.sampled_from([0.5, 2.0]),
    slot=st.integers(0, 3),
)
def test_committed_trades_are_reciprocal_within_every_box_and_balanced(
    book: OrderBook, epsilon: float, iterations: int, partners_k: int | None, clip: float, slot: int
) -> None:
    params = PrivateBilateralParams(
        epsilon=epsilon, iterations=iterations, partners_k=partners_k, clip_kwh=clip
    )
    ctx = MarketContext(retail_price=CTX.retail_price, feed_in_price=CTX.feed_in_price, slot=slot)
    result = clear_private_bilateral(book, ctx, params)
    # Reciprocity (each trade is one volume for both sides), volume and money balance, IR and the
    # price band (`check_invariants`), and the boxes exactly: no tolerance on q or on q̄.
    check_invariants(book, result, ctx)
    assert np.all(result.filled_kwh <= book.quantity_kwh)
    assert np.all(result.filled_kwh <= clip)
    per_order = np.bincount(result.trade_buy, result.trade_kwh, book.n_orders) + np.bincount(
        result.trade_sell, result.trade_kwh, book.n_orders
    )
    assert np.all(per_order <= np.minimum(book.quantity_kwh, clip))
    assert all(isinstance(v, float) for v in result.info.values())


@pytest.mark.parametrize("epsilon", [0.5, 5.0, 50.0])
def test_committed_trades_on_larger_books_are_feasible_and_do_trade(epsilon: float) -> None:
    # The random books above are small; these trade in every slot, so the invariants are
    # checked on real trades (the guard below).
    rng = np.random.default_rng(17)
    traded = 0.0
    for slot in range(10):
        book = random_book(int(rng.integers(10, 40)), rng)
        ctx = MarketContext(retail_price=0.30, feed_in_price=0.05, slot=slot)
        params = PrivateBilateralParams(epsilon=epsilon, partners_k=None if slot % 2 else 3)
        result = clear_private_bilateral(book, ctx, params)
        check_invariants(book, result, ctx)
        assert np.all(result.filled_kwh <= np.minimum(book.quantity_kwh, params.clip_kwh))
        traded += result.traded_kwh
    assert traded > 1.0


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), owners=st.integers(1, 6))
def test_fit_boxes_is_exact(seed: int, n: int, owners: int) -> None:
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, owners, n).astype(np.int64)
    volume = rng.uniform(0.0, 3.0, n) * (rng.random(n) < 0.8)
    box = rng.uniform(0.0, 2.0, owners) * (rng.random(owners) < 0.9)
    fitted = fit_boxes(volume, owner, box)
    assert np.all(np.bincount(owner, fitted, owners) <= box)
    assert np.all((fitted >= 0.0) & (fitted <= volume))
    within = np.bincount(owner, volume, owners) <= box
    np.testing.assert_array_equal(fitted[within[owner]], volume[within[owner]])


def test_a_side_refuses_a_price_outside_its_limit() -> None:
    # Seller 0 (ask 0.10, 1 kWh) and buyer 1 (bid 0.25, 0.4 kWh); offers of 0.8 kWh.
    limit = np.array([0.10, 0.25])
    quantity = np.array([1.0, 0.4])
    seller, buyer = np.array([0]), np.array([1])
    for price, expected in ((0.20, 0.4), (0.05, 0.0), (0.28, 0.0)):
        s, b = commit_trades(np.array([0.8]), np.array([price]), seller, buyer, limit, quantity)
        assert min(s[0], b[0]) == pytest.approx(expected, abs=1e-15)
        assert s[0] <= quantity[0] and b[0] <= quantity[1]


# --- welfare ------------------------------------------------------------------------------------


def test_large_epsilon_approaches_the_non_private_market() -> None:
    # With many rounds and a budget so large that the noise is negligible (scale 2/(10⁹/3000) =
    # 6e-6 kWh per round), the private market's welfare is that of "bilateral" within 0.1 %.
    book = random_book(20, np.random.default_rng(7))
    params = PrivateBilateralParams(epsilon=1e9, iterations=3000, budget_split="uniform")
    private = clear_private_bilateral(book, CTX, params)
    plain = clear_bilateral(book, CTX)
    assert plain.info["welfare"] > 0.1
    assert private.info["welfare"] == pytest.approx(plain.info["welfare"], rel=1e-3)
    assert private.info["welfare_gap"] < 1e-3
    assert private.traded_kwh == pytest.approx(plain.traded_kwh, rel=1e-2)


def test_welfare_loss_is_larger_at_small_epsilon() -> None:
    # Per noise draw the loss has a standard deviation of about 8 points on this book; over 20
    # draws the difference of the means (about 27 points) has a standard error of about 2.5, so a
    # margin of 10 points fails with probability far below 1e-6.
    book = random_book(36, np.random.default_rng(3))
    rows = welfare_vs_epsilon(book, CTX, epsilons=(0.1, 10.0), repeats=20)
    small, large, noise_free, plain = rows
    assert (small.kind, large.kind, noise_free.kind, plain.kind) == (
        "private",
        "private",
        "noise-free",
        "non-private",
    )
    assert small.welfare_loss_pct > large.welfare_loss_pct + 10.0
    assert large.welfare_loss_pct > noise_free.welfare_loss_pct
    assert small.traded_kwh < large.traded_kwh
    assert abs(plain.welfare_loss_pct) < 0.1
    assert math.isinf(plain.epsilon) and plain.iterations > noise_free.iterations
    assert small.repeats == 20 and noise_free.repeats == 1


def test_welfare_gap_is_reported_against_the_coordinated_optimum() -> None:
    book = random_book(20, np.random.default_rng(5))
    result = get_mechanism("bilateral-dp", {"epsilon": 2.0}).clear(book, CTX)
    info = result.info
    assert info["welfare_optimum"] > 0.0
    assert info["welfare_gap"] == pytest.approx(
        (info["welfare_optimum"] - info["welfare"]) / info["welfare_optimum"], rel=1e-12
    )
    assert 0.0 < info["welfare_gap"] <= 1.0


# --- the mechanism -----------------------------------------------------------------------------


def test_registered_and_configured_through_the_registry() -> None:
    mechanism = get_mechanism(
        "bilateral-dp",
        {"epsilon": 0.5, "iterations": 7, "noise": "laplace", "clip_kwh": 1.5, "partners_k": 3},
    )
    assert isinstance(mechanism, PrivateBilateralMarket)
    assert mechanism.family == "decentralized"
    params = mechanism.params
    assert isinstance(params, PrivateBilateralParams)
    assert (params.epsilon, params.iterations, params.clip_kwh) == (0.5, 7, 1.5)
    book = random_book(16, np.random.default_rng(0))
    result = mechanism.clear(book, CTX)
    check_invariants(book, result)
    assert result.info["iterations"] == 7.0
    assert result.info["epsilon_spent"] <= 0.5


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ({"epsilon": 0}, "epsilon"),
        ({"epsilon": float("inf")}, "epsilon"),
        ({"iterations": 0}, "iterations"),
        ({"noise": "gaussian"}, "noise"),
        ({"clip_kwh": -1.0}, "clip_kwh"),
        ({"algorithm": "consensus-innovation"}, "consensus ADMM only"),
        ({"max_iterations": 100}, "max_iterations"),
        ({"beta": 0.2}, "beta"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_parameters_are_input_errors(raw: dict[str, object], pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        get_mechanism("bilateral-dp", raw)


def test_parameters_survive_a_dump_and_validate_round_trip() -> None:
    # The scenario layer dumps every field and validates the dump again.
    params = PrivateBilateralParams(epsilon=0.3, partners_k=2)
    again = get_mechanism("bilateral-dp", params.model_dump()).params
    assert again == params


def test_reproducible_per_slot_and_fresh_noise_in_every_slot() -> None:
    book = random_book(30, np.random.default_rng(9))
    mechanism = get_mechanism("bilateral-dp", {"epsilon": 5.0})
    a = mechanism.clear(book, CTX)
    b = get_mechanism("bilateral-dp", {"epsilon": 5.0}).clear(book, CTX)
    for field in ("filled_kwh", "price", "trade_buy", "trade_sell", "trade_kwh", "trade_price"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    later = MarketContext(retail_price=CTX.retail_price, feed_in_price=CTX.feed_in_price, slot=1)
    c = mechanism.clear(book, later)
    assert not np.array_equal(a.filled_kwh, c.filled_kwh)


def test_orders_above_the_bound_are_curtailed() -> None:
    book = make_book([(0.25, 3.0)], [(0.10, 5.0)])
    result = clear_private_bilateral(book, CTX, PrivateBilateralParams(clip_kwh=2.0))
    assert result.info["curtailed_kwh"] == pytest.approx(1.0 + 3.0)
    assert np.all(result.filled_kwh <= 2.0)


# --- benchmark ---------------------------------------------------------------------------------


def test_benchmark_quick_mode() -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_private_bilateral", BENCH / "bench_private_bilateral.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_private_bilateral"] = bench
    spec.loader.exec_module(bench)
    figures = bench.run(quick=True)
    table = figures["table"]
    assert [row.kind for row in table] == ["private"] * 7 + ["noise-free", "non-private"]
    assert abs(table[-1].welfare_loss_pct) < 0.1
    for key in ("private_negotiation_s", "private_clear_s", "non_private_clear_s"):
        assert figures[key] > 0.0
    assert figures["sweep"] == []
