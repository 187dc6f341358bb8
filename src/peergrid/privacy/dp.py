"""Differentially private releases of community profiles, with OpenDP.

A *profile* is the community total of a per-household series in every slot: for `values_tp` of
shape (T, P), the T-vector s_t = Σ_h clip(x_th). It is released as s + noise, where the noise is
calibrated by OpenDP so that the release of the whole T-vector is (ε, δ)-differentially private
about each household's *whole* series (user-level privacy):

- Neighbouring datasets (`adjacency`): "add_remove" (default) — one household joins or leaves,
  so one column of `values_tp` appears or disappears; "replace" — one household's column is
  replaced by any other. Event-level DP (one reading) would protect far less: a household's
  week is T readings.
- Clipping bounds the contribution: each value is clipped to [`lower_kwh`, `upper_kwh`], e.g.
  [0, P_max·Δt] for demand with P_max the connection capacity. With m the most one household
  can change a slot's sum (max(|lower|, |upper|) for add_remove, upper − lower for replace),
  the sensitivity of the T-vector is Δ₁ = T·m in the L1 norm (Laplace) and Δ₂ = √T·m in the
  L2 norm (Gaussian).
- Laplace: s + Lap(b)^T with b = Δ₁/ε, pure ε-DP (OpenDP `make_laplace` over a float vector with
  the L1 distance). Gaussian: s + N(0, σ²)^T, (ε, δ)-DP via zero-concentrated DP
  (`make_gaussian` gives ρ = Δ₂²/(2σ²); `make_zCDP_to_approxDP` and `make_fix_delta` turn it into
  (ε, δ)); σ is the smallest OpenDP accepts for (ε, δ), found with `binary_search_param`. This
  is tighter than the classical σ = Δ₂·√(2 ln(1.25/δ))/ε (valid only for ε < 1).
- The exact sum. The households' values are rounded to a grid of `QUANTUM_KWH` (2⁻²⁰ kWh ≈ 1 mWh)
  and summed as integers, so s is computed exactly and one household changes it by at most m,
  exactly. A floating-point sum could change by slightly more than m (rounding depends on the
  other terms), which breaks the sensitivity that the noise is calibrated for (Mironov, CCS
  2012; Casacuberta et al., CCS 2022). OpenDP then accounts for its own float arithmetic.

OpenDP draws noise from its own cryptographically secure generator; it cannot be seeded, which is
what a release needs (a seeded RNG is predictable). OpenDP's "contrib" features are switched on
(process-wide, idempotent) when a measurement is built, not at import.

Budget: every release spends from the run's `PrivacyBudget` (basic sequential composition,
`peergrid.privacy.budget`); `release_with_budget` spends before it draws any noise, so a release
that would exceed the budget is refused and nothing is published. `utility_curve` is analysis, not
a release: it spends nothing (see its docstring and docs/privacy.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from peergrid.privacy.budget import BudgetExceeded, Mechanism, PrivacyBudget


def _opendp() -> Any:
    """OpenDP's prelude (the `privacy` extra); imported when a measurement is built."""
    try:
        import opendp.prelude as dp
    except ImportError as exc:
        raise ImportError(
            "peergrid.privacy.dp needs OpenDP for releases: install peergrid with the "
            "'privacy' extra"
        ) from exc
    return dp


FloatArray = NDArray[np.float64]

Adjacency = Literal["add_remove", "replace"]
ADJACENCIES: Final[tuple[str, ...]] = get_args(Adjacency)

#: Grid the households' clipped values are rounded to before the exact integer sum [kWh].
QUANTUM_KWH: Final = 2.0**-20

#: The ε sweep of the utility curve (0.1 to 10, as in the energy-DP literature) [-].
DEFAULT_EPSILONS: Final[tuple[float, ...]] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

_EXACT_INT: Final = 2**53  # integers below this are exact in float64


def _check_mechanism(mechanism: str, delta: float) -> None:
    if mechanism == "laplace":
        if delta != 0.0:
            raise ValueError(f"the Laplace mechanism is pure ε-DP: delta must be 0, got {delta!r}")
    elif mechanism == "gaussian":
        if not 0.0 < delta < 1.0:
            raise ValueError(f"the Gaussian mechanism needs delta in (0, 1), got {delta!r}")
    else:
        raise ValueError(f"mechanism must be 'laplace' or 'gaussian', got {mechanism!r}")


def _check_epsilon(epsilon: float) -> None:
    if isinstance(epsilon, bool) or not (math.isfinite(epsilon) and epsilon > 0.0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")


def _bound_units(lower_kwh: float, upper_kwh: float) -> tuple[int, int]:
    """The clip bounds on the `QUANTUM_KWH` grid, as integers."""
    if not (math.isfinite(lower_kwh) and math.isfinite(upper_kwh)) or lower_kwh > upper_kwh:
        raise ValueError(
            f"clip bounds must be finite with lower_kwh <= upper_kwh, got "
            f"[{lower_kwh!r}, {upper_kwh!r}]"
        )
    lo, hi = round(lower_kwh / QUANTUM_KWH), round(upper_kwh / QUANTUM_KWH)
    if max(abs(lo), abs(hi)) >= _EXACT_INT:
        raise ValueError(f"clip bounds [{lower_kwh!r}, {upper_kwh!r}] kWh are too large")
    return lo, hi


def _slot_sensitivity_units(lower_kwh: float, upper_kwh: float, adjacency: Adjacency) -> int:
    lo, hi = _bound_units(lower_kwh, upper_kwh)
    if adjacency == "add_remove":
        m = max(abs(lo), abs(hi))
    elif adjacency == "replace":
        m = hi - lo
    else:
        raise ValueError(f"adjacency must be one of {ADJACENCIES}, got {adjacency!r}")
    if m == 0:
        raise ValueError(
            f"clip bounds [{lower_kwh!r}, {upper_kwh!r}] kWh leave nothing to release "
            "(zero sensitivity)"
        )
    return m


def slot_sensitivity_kwh(
    lower_kwh: float, upper_kwh: float, adjacency: Adjacency = "add_remove"
) -> float:
    """The most one household can change one slot's clipped community total [kWh]:
    max(|lower|, |upper|) for add_remove, upper − lower for replace (bounds on the grid)."""
    return _slot_sensitivity_units(lower_kwh, upper_kwh, adjacency) * QUANTUM_KWH


def profile_sensitivity_kwh(
    n_slots: int,
    lower_kwh: float,
    upper_kwh: float,
    mechanism: Mechanism,
    adjacency: Adjacency = "add_remove",
) -> float:
    """Sensitivity of the clipped T-vector of community totals [kWh]: Δ₁ = T·m for Laplace
    (L1 norm), Δ₂ = √T·m for Gaussian (L2 norm), m from `slot_sensitivity_kwh`; rounded up."""
    if isinstance(n_slots, bool) or not isinstance(n_slots, int) or n_slots < 1:
        raise ValueError(f"n_slots must be an integer >= 1, got {n_slots!r}")
    m_units = _slot_sensitivity_units(lower_kwh, upper_kwh, adjacency)
    if mechanism == "laplace":
        l1_units = n_slots * m_units
        if l1_units >= _EXACT_INT:
            raise ValueError("T × clip bound is too large for an exact L1 sensitivity")
        return l1_units * QUANTUM_KWH  # exact
    if mechanism == "gaussian":
        # √T and the product each round by at most half an ulp: step up twice to stay above
        l2 = math.sqrt(n_slots) * (m_units * QUANTUM_KWH)
        return math.nextafter(math.nextafter(l2, math.inf), math.inf)
    raise ValueError(f"mechanism must be 'laplace' or 'gaussian', got {mechanism!r}")


def clipped_total_kwh(values_tp: ArrayLike, lower_kwh: float, upper_kwh: float) -> FloatArray:
    """Per-slot community total of the clipped values, summed exactly on the `QUANTUM_KWH` grid.

    Args:
        values_tp: (T, P) per-household series [kWh], finite.
        lower_kwh, upper_kwh: clip bounds [kWh], lower <= upper.

    Returns:
        (T,) Σ_h clip(x_th) with each clipped value rounded to the nearest multiple of
        `QUANTUM_KWH` [kWh]; adding or removing one household changes it by at most
        `slot_sensitivity_kwh(lower_kwh, upper_kwh)` in every slot, exactly.
    """
    x = np.asarray(values_tp, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values_tp must be a (T, P) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values_tp must be finite (no NaN or inf)")
    lo, hi = _bound_units(lower_kwh, upper_kwh)
    if x.shape[1] * max(abs(lo), abs(hi)) >= _EXACT_INT:
        raise ValueError("households × clip bound is too large for an exact sum")
    # rounding is monotone, so the grid values stay within [lo, hi] units
    units = np.rint(np.clip(x, lower_kwh, upper_kwh) / QUANTUM_KWH).astype(np.int64)
    total: FloatArray = units.sum(axis=1).astype(np.float64) * QUANTUM_KWH
    return total


def _measurement(n_slots: int, scale: float, mechanism: Mechanism, delta: float) -> Any:
    """OpenDP measurement adding noise of `scale` to a float T-vector; its map takes the
    sensitivity to ε (Laplace) or to (ε, δ) (Gaussian at fixed δ)."""
    dp = _opendp()
    dp.enable_features("contrib")
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=n_slots)
    if mechanism == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=scale)
    gaussian = dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=scale)
    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta=delta)


def _within(privacy_loss: Any, epsilon: float, delta: float, mechanism: Mechanism) -> bool:
    if mechanism == "laplace":
        return float(privacy_loss) <= epsilon
    eps_out, delta_out = privacy_loss
    return float(eps_out) <= epsilon and float(delta_out) <= delta


def noise_scale_kwh(
    sensitivity_kwh: float,
    *,
    n_slots: int,
    epsilon: float,
    delta: float = 0.0,
    mechanism: Mechanism,
) -> float:
    """The smallest noise scale OpenDP accepts for an (ε, δ)-DP release [kWh].

    Laplace: the scale b (std √2·b), equal to Δ₁/ε up to an ulp. Gaussian: the std σ.

    Args:
        sensitivity_kwh: Δ₁ (Laplace) or Δ₂ (Gaussian) of the T-vector [kWh], from
            `profile_sensitivity_kwh`.
        n_slots: T, the length of the released vector.
        epsilon: ε [-], > 0.
        delta: δ [-]: 0 for Laplace, in (0, 1) for Gaussian.
        mechanism: "laplace" or "gaussian".
    """
    _check_epsilon(epsilon)
    _check_mechanism(mechanism, delta)
    d_out: float | tuple[float, float] = epsilon if mechanism == "laplace" else (epsilon, delta)
    dp = _opendp()
    scale = float(
        dp.binary_search_param(
            lambda s: _measurement(n_slots, s, mechanism, delta),
            d_in=sensitivity_kwh,
            d_out=d_out,
            T=float,
        )
    )
    loss = _measurement(n_slots, scale, mechanism, delta).map(sensitivity_kwh)
    if not _within(loss, epsilon, delta, mechanism):  # pragma: no cover - OpenDP's promise
        raise RuntimeError(f"OpenDP calibration failed: loss {loss!r} > ({epsilon}, {delta})")
    return scale


@dataclass(frozen=True, eq=False)
class DpRelease:
    """A differentially private community profile, ready to publish.

    Attributes:
        total_kwh: (T,) noisy community total per slot [kWh]; may be negative even for a
            non-negative series (noise is not post-processed away).
        mechanism: "laplace" or "gaussian".
        epsilon: ε of the release [-].
        delta: δ of the release [-] (0 for Laplace).
        noise_scale_kwh: Laplace scale b or Gaussian standard deviation σ [kWh].
        sensitivity_kwh: Δ₁ (Laplace) or Δ₂ (Gaussian) of the T-vector [kWh].
        lower_kwh, upper_kwh: the clip bounds of each household's value [kWh].
        adjacency: the neighbouring relation the guarantee is stated for.
    """

    total_kwh: FloatArray
    mechanism: Mechanism
    epsilon: float
    delta: float
    noise_scale_kwh: float
    sensitivity_kwh: float
    lower_kwh: float
    upper_kwh: float
    adjacency: Adjacency

    @property
    def noise_std_kwh(self) -> float:
        """Standard deviation of the noise in each slot [kWh]: √2·b or σ."""
        return noise_std_kwh(self.noise_scale_kwh, self.mechanism)

    @property
    def n_slots(self) -> int:
        return int(self.total_kwh.shape[0])

    def describe(self) -> dict[str, object]:
        """The release's parameters, JSON-ready (what privacy.json records of it)."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "mechanism": self.mechanism,
            "noise_std_kwh": self.noise_std_kwh,
            "sensitivity_kwh": self.sensitivity_kwh,
            "clip_kwh": [self.lower_kwh, self.upper_kwh],
            "adjacency": self.adjacency,
        }


def noise_std_kwh(noise_scale_kwh: float, mechanism: Mechanism) -> float:
    """Standard deviation of the noise of one slot [kWh]: √2·b for Laplace, σ for Gaussian."""
    return math.sqrt(2.0) * noise_scale_kwh if mechanism == "laplace" else noise_scale_kwh


def release_profile(
    values_tp: ArrayLike,
    *,
    epsilon: float,
    delta: float = 0.0,
    lower_kwh: float,
    upper_kwh: float,
    mechanism: Mechanism,
    adjacency: Adjacency = "add_remove",
) -> DpRelease:
    """Release the per-slot community total of a (T, P) series with (ε, δ)-DP (user-level).

    This is the mechanism alone; it does not consult a budget. A run releases through
    `release_with_budget`, which spends from the run's budget first.

    Args:
        values_tp: (T, P) per-household series, e.g. `demand_kwh` [kWh], finite.
        epsilon: ε of this release [-], > 0.
        delta: δ [-]: 0 for Laplace, in (0, 1) for Gaussian (well below 1/P).
        lower_kwh, upper_kwh: clip bounds of each household's value per slot [kWh], e.g.
            [0, P_max·Δt] for a non-negative series, [−P_max·Δt, P_max·Δt] for `net_kwh`.
        mechanism: "laplace" (pure ε-DP) or "gaussian" ((ε, δ)-DP).
        adjacency: "add_remove" (default) or "replace"; see the module docstring.
    """
    x = np.asarray(values_tp, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"values_tp must be a (T, P) array with T >= 1, got shape {x.shape}")
    _check_epsilon(epsilon)
    _check_mechanism(mechanism, delta)
    n_slots = int(x.shape[0])
    total = clipped_total_kwh(x, lower_kwh, upper_kwh)
    sensitivity = profile_sensitivity_kwh(n_slots, lower_kwh, upper_kwh, mechanism, adjacency)
    scale = noise_scale_kwh(
        sensitivity, n_slots=n_slots, epsilon=epsilon, delta=delta, mechanism=mechanism
    )
    measurement = _measurement(n_slots, scale, mechanism, delta)
    noisy = np.asarray(measurement(total.tolist()), dtype=np.float64)
    return DpRelease(
        total_kwh=noisy,
        mechanism=mechanism,
        epsilon=float(epsilon),
        delta=float(delta),
        noise_scale_kwh=scale,
        sensitivity_kwh=sensitivity,
        lower_kwh=float(lower_kwh),
        upper_kwh=float(upper_kwh),
        adjacency=adjacency,
    )


def release_with_budget(
    budget: PrivacyBudget,
    values_tp: ArrayLike,
    *,
    label: str,
    epsilon: float,
    delta: float = 0.0,
    lower_kwh: float,
    upper_kwh: float,
    mechanism: Mechanism,
    adjacency: Adjacency = "add_remove",
) -> tuple[DpRelease, PrivacyBudget]:
    """Spend (ε, δ) from `budget`, then release; returns the release and the new budget.

    Raises:
        BudgetExceeded: the release would exceed the budget; no noise is drawn, nothing is
            released and `budget` is unchanged.
    """
    spent = budget.spend(epsilon, delta, label=label, mechanism=mechanism)
    release = release_profile(
        values_tp,
        epsilon=epsilon,
        delta=delta,
        lower_kwh=lower_kwh,
        upper_kwh=upper_kwh,
        mechanism=mechanism,
        adjacency=adjacency,
    )
    return release, spent


@dataclass(frozen=True, eq=False)
class UtilityCurve:
    """Expected error of a DP profile against the true one, per ε (one row per ε).

    Attributes:
        epsilon: (E,) ε of each row [-], ascending as given.
        noise_scale_kwh: (E,) Laplace b or Gaussian σ [kWh]; depends on public parameters only.
        noise_std_kwh: (E,) standard deviation of one slot's noise [kWh]; public parameters only.
        rmse_kwh: (E,) root of the expected mean squared error over slots [kWh]:
            √(mean_t bias_t² + std²).
        mae_kwh: (E,) expected mean absolute error over slots [kWh].
        relative_rmse: (E,) rmse_kwh / mean_t |true total| [-] (NaN if that mean is 0).
        relative_mae: (E,) mae_kwh / mean_t |true total| [-].
        mean_abs_total_kwh: mean_t |true total| [kWh], the normaliser.
        clip_bias_rms_kwh: RMS over slots of the clipped minus the true total [kWh]: the error
            that remains at ε → ∞.
        clipped_share: share of household values changed by clipping [-].
        mechanism, delta, lower_kwh, upper_kwh, adjacency: the release parameters.
    """

    epsilon: FloatArray
    noise_scale_kwh: FloatArray
    noise_std_kwh: FloatArray
    rmse_kwh: FloatArray
    mae_kwh: FloatArray
    relative_rmse: FloatArray
    relative_mae: FloatArray
    mean_abs_total_kwh: float
    clip_bias_rms_kwh: float
    clipped_share: float
    mechanism: Mechanism
    delta: float
    lower_kwh: float
    upper_kwh: float
    adjacency: Adjacency

    def to_frame(self) -> pd.DataFrame:
        """The table for a report: one row per ε."""
        return pd.DataFrame(
            {
                "epsilon": self.epsilon,
                "noise_scale_kwh": self.noise_scale_kwh,
                "noise_std_kwh": self.noise_std_kwh,
                "rmse_kwh": self.rmse_kwh,
                "mae_kwh": self.mae_kwh,
                "relative_rmse": self.relative_rmse,
                "relative_mae": self.relative_mae,
            }
        )


_erf = np.frompyfunc(math.erf, 1, 1)


def _expected_abs_error(bias: FloatArray, scale: float, mechanism: Mechanism) -> FloatArray:
    """E|a + noise| per slot for a fixed bias a [kWh].

    Laplace(b): |a| + b·exp(−|a|/b). Gaussian(σ): σ·√(2/π)·exp(−a²/2σ²) + a·erf(a/(σ√2)), the
    mean of a folded normal.
    """
    a = np.abs(bias)
    if mechanism == "laplace":
        return a + scale * np.exp(-a / scale)
    z = a / (scale * math.sqrt(2.0))
    erf_z = np.asarray(_erf(z), dtype=np.float64)
    return scale * math.sqrt(2.0 / math.pi) * np.exp(-(z**2)) + a * erf_z


def _curve_scale(
    sensitivity_kwh: float, n_slots: int, epsilon: float, delta: float, mechanism: Mechanism
) -> float:
    """The noise scale of a release, for the utility curve: OpenDP's calibration, or without
    OpenDP installed the textbook Laplace scale Δ₁/ε, which OpenDP's equals up to an ulp
    (tested). Gaussian needs OpenDP."""
    try:
        return noise_scale_kwh(
            sensitivity_kwh, n_slots=n_slots, epsilon=epsilon, delta=delta, mechanism=mechanism
        )
    except ImportError:
        if mechanism != "laplace":
            raise
        return sensitivity_kwh / epsilon


def utility_curve(
    values_tp: ArrayLike,
    epsilons: ArrayLike = DEFAULT_EPSILONS,
    *,
    lower_kwh: float,
    upper_kwh: float,
    mechanism: Mechanism,
    delta: float = 0.0,
    adjacency: Adjacency = "add_remove",
) -> UtilityCurve:
    """Expected error of `release_profile` against the true community profile, per ε.

    The errors are exact expectations, not Monte Carlo averages: the release error in slot t
    is bias_t + noise_t with bias_t = clipped total − true total (fixed) and noise_t of known
    distribution (Laplace(b) or N(0, σ²), scale from the same OpenDP calibration as a release),
    so E[MSE] = mean_t bias_t² + std² and E|bias_t + noise_t| has a closed form. No noise is
    drawn, so the curve is reproducible and nothing is released: it spends no privacy budget.

    The curve reads the true data (through the clipping bias and the normaliser), so it belongs
    to the operator's section of the report; `noise_std_kwh` depends on public parameters only.
    docs/privacy.md explains when the whole curve may be shown publicly.

    Args:
        values_tp: (T, P) per-household series [kWh], finite.
        epsilons: ε values to evaluate [-], each > 0; default 0.1 … 10.
        lower_kwh, upper_kwh, mechanism, delta, adjacency: as for `release_profile` (δ is held
            fixed across the sweep for Gaussian).
    """
    x = np.asarray(values_tp, dtype=np.float64)
    eps = np.asarray(epsilons, dtype=np.float64).reshape(-1)
    if eps.size == 0:
        raise ValueError("epsilons must not be empty")
    for e in eps:
        _check_epsilon(float(e))
    _check_mechanism(mechanism, delta)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"values_tp must be a (T, P) array with T >= 1, got shape {x.shape}")
    n_slots = int(x.shape[0])
    clipped = clipped_total_kwh(x, lower_kwh, upper_kwh)
    true_total = x.sum(axis=1)
    bias = clipped - true_total
    sensitivity = profile_sensitivity_kwh(n_slots, lower_kwh, upper_kwh, mechanism, adjacency)
    scales = np.array([_curve_scale(sensitivity, n_slots, float(e), delta, mechanism) for e in eps])
    stds = np.array([noise_std_kwh(float(s), mechanism) for s in scales])
    bias_ms = float(np.mean(bias**2))
    rmse = np.sqrt(bias_ms + stds**2)
    mae = np.array([float(np.mean(_expected_abs_error(bias, float(s), mechanism))) for s in scales])
    mean_abs_total = float(np.mean(np.abs(true_total)))
    normaliser = mean_abs_total if mean_abs_total > 0.0 else np.nan
    changed = (x < lower_kwh) | (x > upper_kwh)
    return UtilityCurve(
        epsilon=eps,
        noise_scale_kwh=scales,
        noise_std_kwh=stds,
        rmse_kwh=rmse,
        mae_kwh=mae,
        relative_rmse=rmse / normaliser,
        relative_mae=mae / normaliser,
        mean_abs_total_kwh=mean_abs_total,
        clip_bias_rms_kwh=math.sqrt(bias_ms),
        clipped_share=float(np.mean(changed)) if changed.size else 0.0,
        mechanism=mechanism,
        delta=float(delta),
        lower_kwh=float(lower_kwh),
        upper_kwh=float(upper_kwh),
        adjacency=adjacency,
    )


__all__ = [
    "ADJACENCIES",
    "DEFAULT_EPSILONS",
    "QUANTUM_KWH",
    "Adjacency",
    "BudgetExceeded",
    "DpRelease",
    "Mechanism",
    "PrivacyBudget",
    "UtilityCurve",
    "clipped_total_kwh",
    "noise_scale_kwh",
    "noise_std_kwh",
    "profile_sensitivity_kwh",
    "release_profile",
    "release_with_budget",
    "slot_sensitivity_kwh",
    "utility_curve",
]
