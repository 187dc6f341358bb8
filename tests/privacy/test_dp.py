"""Differentially private releases: the noise matches its stated scale, the scale matches the
textbook calibration, clipping bounds one household's influence, and the utility curve is right.

Statistical tolerances. OpenDP's sampler cannot be seeded, so the noise tests are statistical.
Every one-sided check uses a tail bound with probability ALPHA = 1e-7 of failing when the code
is right; a test makes at most 7 such checks, so it fails falsely with probability < 1e-6. The
bounds are rigorous (Chernoff, Laurent–Massart, Bernstein), not normal approximations:

- Laplace(b): |X|/b ~ Exp(1), so mean|X|/b is a Gamma mean with the Chernoff rate
  t − ln(1 + t) (upper) and −t − ln(1 − t) (lower); X/b has MGF 1/(1 − λ²) for the mean; the
  second moment (X/b)² has no MGF, so it is truncated at c = ln(n/ALPHA) (no draw exceeds c
  except with probability ALPHA) and bounded with Bernstein (upper, Var ≤ E X⁴ − 4 = 20) and the
  one-sided bound for non-negative variables (lower, E Y² ≤ E X⁴ = 24).
- Gaussian(σ): the mean of n draws of X/σ is N(0, 1/n); Σ(X/σ)² ~ χ²_n with the
  Laurent–Massart bounds n + 2√(nx) + 2x and n − 2√(nx), x = ln(1/ALPHA).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from peergrid.privacy.budget import BudgetExceeded, Mechanism, PrivacyBudget
from peergrid.privacy.dp import (
    DEFAULT_EPSILONS,
    QUANTUM_KWH,
    clipped_total_kwh,
    noise_scale_kwh,
    profile_sensitivity_kwh,
    release_profile,
    release_with_budget,
    slot_sensitivity_kwh,
    utility_curve,
)

ALPHA = 1e-7
LOG_INV_ALPHA = math.log(1.0 / ALPHA)


def _solve_increasing(f: Callable[[float], float], target: float, hi: float) -> float:
    """The t in (0, hi) with f(t) = target, for f increasing from f(0) = 0 (bisection)."""
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return hi


def _laplace_bounds(n: int) -> dict[str, tuple[float, float]]:
    """Acceptance intervals for n draws of Laplace(1) noise: mean|X|, mean X, mean X²."""
    rate = LOG_INV_ALPHA / n
    abs_up = _solve_increasing(lambda t: t - math.log1p(t), rate, hi=10.0)
    abs_down = _solve_increasing(lambda t: -t - math.log1p(-t), rate, hi=1.0 - 1e-12)

    def mean_rate(t: float) -> float:  # sup over λ of λt + ln(1 − λ²), at its optimum λ*
        lam = (math.sqrt(1.0 + t * t) - 1.0) / t
        return lam * t + math.log1p(-lam * lam)

    mean_tol = _solve_increasing(mean_rate, rate, hi=10.0)
    c = math.log(n / ALPHA)
    sq_up = _solve_increasing(lambda t: t * t / (2.0 * (20.0 + c * c * t / 3.0)), rate, hi=1e3)
    sq_down = math.sqrt(2.0 * 24.0 * rate)
    tail_mass = math.exp(-c) * (c * c + 2.0 * c + 2.0)  # E[X²; |X| > c], what truncation drops
    return {
        "abs": (1.0 - abs_down, 1.0 + abs_up),
        "mean": (-mean_tol, mean_tol),
        "square": (2.0 - tail_mass - sq_down, 2.0 + sq_up),
    }


def _gaussian_bounds(n: int) -> dict[str, tuple[float, float]]:
    """Acceptance intervals for n draws of N(0, 1) noise: mean X, mean X²."""
    x = LOG_INV_ALPHA
    mean_tol = math.sqrt(2.0 * x / n)
    return {
        "mean": (-mean_tol, mean_tol),
        "square": ((n - 2.0 * math.sqrt(n * x)) / n, (n + 2.0 * math.sqrt(n * x) + 2.0 * x) / n),
    }


def _noise_samples(mechanism: Mechanism, epsilon: float, delta: float) -> tuple[np.ndarray, float]:
    """Noise (release − exact clipped total) of two releases of a fixed 3-household dataset."""
    n_slots = 16_384
    values = np.tile(np.array([[0.2, 1.7, -0.4]]), (n_slots, 1))  # one value is clipped
    releases = [
        release_profile(
            values,
            epsilon=epsilon,
            delta=delta,
            lower_kwh=0.0,
            upper_kwh=1.0,
            mechanism=mechanism,
        )
        for _ in range(2)
    ]
    truth = clipped_total_kwh(values, 0.0, 1.0)
    assert truth[0] == pytest.approx(1.2, abs=QUANTUM_KWH)
    scales = {r.noise_scale_kwh for r in releases}
    assert len(scales) == 1  # the calibration is deterministic
    noise = np.concatenate([r.total_kwh - truth for r in releases])
    return noise, scales.pop()


def test_laplace_noise_matches_stated_scale() -> None:
    epsilon = 2.0
    noise, b = _noise_samples("laplace", epsilon, 0.0)
    # textbook calibration: b = Δ₁/ε with Δ₁ = T·max(|lower|, |upper|) = T·1 kWh
    assert b == pytest.approx(16_384 * 1.0 / epsilon, rel=1e-12)
    z = noise / b
    bounds = _laplace_bounds(z.size)
    lo, hi = bounds["abs"]
    assert lo <= float(np.mean(np.abs(z))) <= hi  # E|X| = b
    lo, hi = bounds["mean"]
    assert lo <= float(np.mean(z)) <= hi  # unbiased
    lo, hi = bounds["square"]
    # std = √2·b: the empirical std about the known mean 0
    assert (
        math.sqrt(lo / 2.0) <= float(np.sqrt(np.mean(z**2)) / math.sqrt(2.0)) <= math.sqrt(hi / 2.0)
    )


def test_gaussian_noise_matches_stated_scale() -> None:
    epsilon, delta = 1.0, 1e-6
    noise, sigma = _noise_samples("gaussian", epsilon, delta)
    z = noise / sigma
    bounds = _gaussian_bounds(z.size)
    lo, hi = bounds["mean"]
    assert lo <= float(np.mean(z)) <= hi
    lo, hi = bounds["square"]
    assert math.sqrt(lo) <= float(np.sqrt(np.mean(z**2))) <= math.sqrt(hi)  # std = σ


def test_tolerances_are_tight_enough_to_catch_a_wrong_scale() -> None:
    """The acceptance intervals reject the classic slips (b for the std, √2 too much)."""
    lap = _laplace_bounds(32_768)
    assert lap["abs"][1] < 1.05 and lap["square"][1] < 2.0 * 1.25 and lap["square"][0] > 2 * 0.9
    gauss = _gaussian_bounds(32_768)
    assert gauss["square"][1] < 1.05 and gauss["square"][0] > 0.95


def _std_normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _analytic_gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The smallest σ for which the Gaussian mechanism is (ε, δ)-DP (Balle & Wang, ICML 2018,
    Thm 8): δ(σ) = Φ(Δ/2σ − εσ/Δ) − e^ε·Φ(−Δ/2σ − εσ/Δ) decreases in σ; bisect δ(σ) = δ."""

    def delta_of(sigma: float) -> float:
        a, b = sensitivity / (2.0 * sigma), epsilon * sigma / sensitivity
        return _std_normal_cdf(a - b) - math.exp(epsilon) * _std_normal_cdf(-a - b)

    lo, hi = 1e-6 * sensitivity, 1e6 * sensitivity
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(0.1, 1e-6), (0.5, 1e-5), (0.9, 1e-9), (1.0, 1e-6), (5.0, 1e-8)]
)
def test_gaussian_calibration_between_the_exact_optimum_and_the_classical_bound(
    epsilon: float, delta: float
) -> None:
    """σ from OpenDP's zCDP accounting is never below the exact (analytic) optimum — below it
    the release would not be (ε, δ)-DP — and never above the standard zCDP conversion
    ε = ρ + 2√(ρ ln 1/δ), ρ = Δ²/2σ², nor, for ε < 1, above the classical
    σ = Δ·√(2 ln(1.25/δ))/ε."""
    sensitivity = profile_sensitivity_kwh(96, 0.0, 2.5, "gaussian")
    assert sensitivity == pytest.approx(math.sqrt(96) * 2.5, rel=1e-15)
    sigma = noise_scale_kwh(
        sensitivity, n_slots=96, epsilon=epsilon, delta=delta, mechanism="gaussian"
    )
    assert sigma >= _analytic_gaussian_sigma(sensitivity, epsilon, delta) * (1.0 - 1e-9)
    log_inv_delta = math.log(1.0 / delta)
    sqrt_rho = math.sqrt(log_inv_delta + epsilon) - math.sqrt(log_inv_delta)
    assert sigma <= sensitivity / (math.sqrt(2.0) * sqrt_rho)
    if epsilon < 1.0:
        assert sigma <= sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


@pytest.mark.parametrize(
    ("n_slots", "lower", "upper", "epsilon"),
    [(672, 0.0, 4.0, 1.0), (96, -2.5, 2.5, 0.3), (1, 0.0, 0.75, 10.0), (35_040, -1.0, 3.0, 0.1)],
)
def test_laplace_scale_is_textbook(
    n_slots: int, lower: float, upper: float, epsilon: float
) -> None:
    """b = Δ₁/ε with Δ₁ = T·max(|lower|, |upper|) (up to the ulp OpenDP's rounding may add)."""
    sensitivity = profile_sensitivity_kwh(n_slots, lower, upper, "laplace")
    assert sensitivity == n_slots * max(abs(lower), abs(upper))
    b = noise_scale_kwh(sensitivity, n_slots=n_slots, epsilon=epsilon, mechanism="laplace")
    assert b == pytest.approx(sensitivity / epsilon, rel=1e-12)
    assert b >= sensitivity / epsilon


def test_replace_adjacency_doubles_a_symmetric_bound() -> None:
    assert slot_sensitivity_kwh(-2.0, 2.0, "add_remove") == 2.0
    assert slot_sensitivity_kwh(-2.0, 2.0, "replace") == 4.0
    assert slot_sensitivity_kwh(0.0, 3.0, "replace") == 3.0
    assert profile_sensitivity_kwh(10, -2.0, 2.0, "laplace", "replace") == 40.0


@st.composite
def clipping_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, float]:
    n_slots = draw(st.integers(1, 24))
    n_households = draw(st.integers(0, 12))
    finite = st.floats(-1e3, 1e3, allow_nan=False)
    values = draw(hnp.arrays(np.float64, (n_slots, n_households), elements=finite))
    outlier = draw(
        hnp.arrays(
            np.float64,
            (n_slots,),
            elements=st.one_of(finite, st.sampled_from([1e12, -1e12, 1e-300])),
        )
    )
    lower = draw(st.floats(-10.0, 5.0))
    upper = lower + draw(st.floats(1e-3, 10.0))
    return values, outlier, lower, upper


@settings(max_examples=200, deadline=None)
@given(clipping_cases())
def test_one_household_moves_the_clipped_total_by_at_most_the_bound(
    case: tuple[np.ndarray, np.ndarray, float, float],
) -> None:
    """Adding a household (however huge its values) changes each slot's sum by at most
    m = max(|lower|, |upper|), exactly; replacing one by at most upper − lower; hence the
    vector's L1 and L2 changes are within the stated sensitivities."""
    values, outlier, lower, upper = case
    with_outlier = np.column_stack([values, outlier])
    base = clipped_total_kwh(values, lower, upper)
    added = clipped_total_kwh(with_outlier, lower, upper)
    change = np.abs(added - base)
    assert np.all(change <= slot_sensitivity_kwh(lower, upper, "add_remove"))
    n_slots = values.shape[0]
    assert change.sum() <= profile_sensitivity_kwh(n_slots, lower, upper, "laplace")
    assert math.sqrt(float(np.sum(change**2))) <= profile_sensitivity_kwh(
        n_slots, lower, upper, "gaussian"
    )
    if values.shape[1] > 0:
        replaced = with_outlier[:, 1:]  # household 0 replaced by the outlier
        change = np.abs(clipped_total_kwh(replaced, lower, upper) - base)
        assert np.all(change <= slot_sensitivity_kwh(lower, upper, "replace"))
    # and the exact grid sum is the clipped sum to within half a grid step per household
    expected = np.clip(with_outlier, lower, upper).sum(axis=1)
    assert np.allclose(added, expected, rtol=1e-12, atol=with_outlier.shape[1] * QUANTUM_KWH)


def test_a_huge_household_is_clipped_in_the_release() -> None:
    values = np.full((8, 4), 0.5)
    values[:, 0] = 1e6
    release = release_profile(
        values, epsilon=1e6, lower_kwh=0.0, upper_kwh=1.0, mechanism="laplace"
    )
    # noise b = 8/1e6: the release is within a few μWh of the clipped total 1 + 3·0.5
    assert np.allclose(release.total_kwh, 2.5, atol=1e-3)
    assert release.sensitivity_kwh == 8.0
    assert release.n_slots == 8
    assert release.noise_std_kwh == pytest.approx(math.sqrt(2.0) * 8.0 / 1e6)


def test_release_with_budget_spends_first_and_refuses_beyond_it() -> None:
    values = np.ones((4, 12))
    budget = PrivacyBudget(epsilon_total=1.0)
    release, budget = release_with_budget(
        budget,
        values,
        label="community_load_profile",
        epsilon=0.6,
        lower_kwh=0.0,
        upper_kwh=2.0,
        mechanism="laplace",
    )
    assert release.epsilon == 0.6
    assert budget.epsilon_remaining == pytest.approx(0.4)
    before = budget
    # NaN data would fail the release: the refusal comes first, so nothing is computed
    with pytest.raises(BudgetExceeded, match="community_generation_profile"):
        release_with_budget(
            budget,
            np.full((4, 12), np.nan),
            label="community_generation_profile",
            epsilon=0.5,
            lower_kwh=0.0,
            upper_kwh=2.0,
            mechanism="laplace",
        )
    assert budget == before
    with pytest.raises(BudgetExceeded):  # no δ in this budget for a Gaussian release
        release_with_budget(
            budget,
            values,
            label="traded_volume",
            epsilon=0.1,
            delta=1e-6,
            lower_kwh=0.0,
            upper_kwh=2.0,
            mechanism="gaussian",
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mechanism": "laplace", "delta": 1e-6}, "delta must be 0"),
        ({"mechanism": "gaussian", "delta": 0.0}, "delta in"),
        ({"mechanism": "uniform"}, "mechanism"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": float("inf")}, "epsilon"),
        ({"lower_kwh": 2.0, "upper_kwh": 1.0}, "lower_kwh <= upper_kwh"),
        ({"lower_kwh": 0.0, "upper_kwh": 0.0}, "zero sensitivity"),
        ({"adjacency": "event"}, "adjacency"),
    ],
)
def test_release_validation(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "epsilon": 1.0,
        "lower_kwh": 0.0,
        "upper_kwh": 1.0,
        "mechanism": "laplace",
    } | kwargs
    with pytest.raises(ValueError, match=match):
        release_profile(np.ones((3, 2)), **args)  # type: ignore[arg-type]


def _demand_like(n_slots: int, n_households: int, seed: int) -> np.ndarray:
    """Demand-like 15-min data: a daily shape with morning and evening peaks [kWh/slot]."""
    rng = np.random.default_rng(seed)
    hour = (np.arange(n_slots) % 96) / 4.0
    shape = (
        0.25
        + 0.2 * np.exp(-(((hour - 8.0) / 1.5) ** 2))
        + 0.45 * np.exp(-(((hour - 19.0) / 2.0) ** 2))
    )
    size = rng.lognormal(0.0, 0.4, n_households)
    return shape[:, None] * size[None, :] * rng.gamma(2.0, 0.5, (n_slots, n_households))


@pytest.mark.parametrize(("mechanism", "delta"), [("laplace", 0.0), ("gaussian", 1e-6)])
def test_utility_curve_error_falls_as_epsilon_grows(mechanism: Mechanism, delta: float) -> None:
    values = _demand_like(672, 36, seed=1)
    curve = utility_curve(
        values,
        lower_kwh=0.0,
        upper_kwh=1.0,
        mechanism=mechanism,
        delta=delta,
    )
    np.testing.assert_array_equal(curve.epsilon, DEFAULT_EPSILONS)
    for column in (curve.rmse_kwh, curve.mae_kwh, curve.relative_rmse, curve.noise_std_kwh):
        assert np.all(np.diff(column) < 0.0)  # exact expectations: strictly falling
    # the floor is the clipping bias, approached as ε → ∞
    assert np.all(curve.rmse_kwh >= curve.clip_bias_rms_kwh)
    assert curve.clip_bias_rms_kwh > 0.0 and 0.0 < curve.clipped_share < 1.0
    frame = curve.to_frame()
    assert list(frame["epsilon"]) == list(DEFAULT_EPSILONS)
    assert frame.shape == (len(DEFAULT_EPSILONS), 7)


@pytest.mark.parametrize(
    ("mechanism", "delta", "epsilon"), [("laplace", 0.0, 400.0), ("gaussian", 1e-6, 40.0)]
)
def test_utility_curve_matches_actual_releases(
    mechanism: Mechanism, delta: float, epsilon: float
) -> None:
    """The exact expectations agree with the error of real OpenDP releases. ε is chosen so that
    noise and clipping bias are of the same size and both terms are exercised; the 8 % tolerance
    is about 6 standard errors of the Monte Carlo estimates (their relative sd is 1.1-1.3 %,
    measured by simulation); a cross-check, the scale tests above carry the rigorous bounds."""
    values = _demand_like(1024, 20, seed=2)
    curve = utility_curve(
        values, [epsilon], lower_kwh=0.0, upper_kwh=0.6, mechanism=mechanism, delta=delta
    )
    assert 0.3 < curve.clip_bias_rms_kwh / curve.noise_std_kwh[0] < 3.0  # both terms matter
    truth = values.sum(axis=1)
    releases = [
        release_profile(
            values, epsilon=epsilon, delta=delta, lower_kwh=0.0, upper_kwh=0.6, mechanism=mechanism
        )
        for _ in range(4)
    ]
    errors = np.concatenate([r.total_kwh - truth for r in releases])
    assert float(np.sqrt(np.mean(errors**2))) == pytest.approx(curve.rmse_kwh[0], rel=0.08)
    assert float(np.mean(np.abs(errors))) == pytest.approx(curve.mae_kwh[0], rel=0.08)


def test_laplace_utility_curve_without_opendp_equals_the_calibrated_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lean install (no `privacy` extra) still shows the report's Laplace utility curve: the
    textbook scale Δ₁/ε, which is OpenDP's calibration up to an ulp."""
    import sys

    from peergrid.privacy.dp import release_profile, utility_curve

    x = np.random.default_rng(5).uniform(0, 1, (48, 12))
    with_opendp = utility_curve(x, lower_kwh=0.0, upper_kwh=1.0, mechanism="laplace")
    monkeypatch.setitem(sys.modules, "opendp.prelude", None)  # import now fails
    without = utility_curve(x, lower_kwh=0.0, upper_kwh=1.0, mechanism="laplace")
    np.testing.assert_allclose(without.noise_scale_kwh, with_opendp.noise_scale_kwh, rtol=1e-12)
    np.testing.assert_allclose(without.relative_rmse, with_opendp.relative_rmse, rtol=1e-12)
    with pytest.raises(ImportError, match="privacy"):
        release_profile(x, epsilon=1.0, lower_kwh=0.0, upper_kwh=1.0, mechanism="laplace")
    with pytest.raises(ImportError):
        utility_curve(x, lower_kwh=0.0, upper_kwh=1.0, mechanism="gaussian", delta=1e-6)
