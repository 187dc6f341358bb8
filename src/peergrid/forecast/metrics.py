"""Forecast-error metrics, per participant and for the community (the summed series).

Pure functions over (T, P) arrays of forecast and actual values (kWh per slot). The sign
convention of the bias is forecast − actual: a positive bias over-forecasts.

Skill against a reference (by default persistence) is 1 − RMSE / RMSE_reference: 1 is perfect,
0 as good as the reference, negative worse. Where the reference's RMSE is zero the skill is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.forecast.base import FloatArray, ForecastData


@dataclass(frozen=True, eq=False)
class ErrorMetrics:
    """Errors of a forecast against the actuals.

    Attributes:
        mae_kwh: mean absolute error per participant, (P,) [kWh per slot].
        rmse_kwh: root-mean-square error per participant, (P,) [kWh per slot].
        bias_kwh: mean of forecast − actual per participant, (P,) [kWh per slot].
        community_mae_kwh, community_rmse_kwh, community_bias_kwh: the same for the summed
            series (Σ over participants per slot) [kWh per slot].
        mean_actual_kwh: mean actual per participant, (P,) [kWh per slot] (to normalise).
        community_mean_actual_kwh: mean of the summed actual series [kWh per slot].
    """

    mae_kwh: FloatArray
    rmse_kwh: FloatArray
    bias_kwh: FloatArray
    community_mae_kwh: float
    community_rmse_kwh: float
    community_bias_kwh: float
    mean_actual_kwh: FloatArray
    community_mean_actual_kwh: float

    @property
    def mean_rmse_kwh(self) -> float:
        """RMSE over all participants and slots together [kWh per slot]."""
        return float(np.sqrt(np.mean(self.rmse_kwh**2)))

    @property
    def mean_mae_kwh(self) -> float:
        """MAE over all participants and slots together [kWh per slot]."""
        return float(np.mean(self.mae_kwh))


def _check(forecast: FloatArray, actual: FloatArray) -> None:
    if forecast.shape != actual.shape or forecast.ndim != 2:
        raise ValueError(f"forecast {forecast.shape} and actual {actual.shape} must be (T, P)")
    if forecast.shape[0] == 0:
        raise ValueError("no slots to score")


def error_metrics(forecast_kwh: FloatArray, actual_kwh: FloatArray) -> ErrorMetrics:
    """MAE, RMSE and bias per participant and of the community sum, (T, P) inputs."""
    _check(forecast_kwh, actual_kwh)
    err = forecast_kwh - actual_kwh
    com = err.sum(axis=1)
    return ErrorMetrics(
        mae_kwh=np.mean(np.abs(err), axis=0),
        rmse_kwh=np.sqrt(np.mean(err**2, axis=0)),
        bias_kwh=np.mean(err, axis=0),
        community_mae_kwh=float(np.mean(np.abs(com))),
        community_rmse_kwh=float(np.sqrt(np.mean(com**2))),
        community_bias_kwh=float(np.mean(com)),
        mean_actual_kwh=np.mean(actual_kwh, axis=0),
        community_mean_actual_kwh=float(np.mean(actual_kwh.sum(axis=1))),
    )


def skill_score(rmse: float | FloatArray, rmse_reference: float | FloatArray) -> FloatArray:
    """1 − RMSE / RMSE_reference, elementwise; NaN where the reference is 0 [-]."""
    rmse_a = np.asarray(rmse, dtype=np.float64)
    ref = np.asarray(rmse_reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ref > 0.0, 1.0 - rmse_a / np.where(ref > 0.0, ref, 1.0), np.nan)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Skill:
    """Skill of a forecast against a reference (1 − RMSE / RMSE_reference) [-].

    Attributes:
        per_participant: (P,), NaN where the reference is exact.
        pooled: over all participants and slots together.
        community: of the summed series.
    """

    per_participant: FloatArray
    pooled: float
    community: float


def skill(forecast: ErrorMetrics, reference: ErrorMetrics) -> Skill:
    """The skill of `forecast` against `reference` (both from `error_metrics`)."""
    return Skill(
        per_participant=skill_score(forecast.rmse_kwh, reference.rmse_kwh),
        pooled=float(skill_score(forecast.mean_rmse_kwh, reference.mean_rmse_kwh)),
        community=float(skill_score(forecast.community_rmse_kwh, reference.community_rmse_kwh)),
    )


def ghi_day_ahead_rrmse(data: ForecastData, *, lead_h: tuple[float, float] = (24.0, 48.0)) -> float:
    """Relative RMSE of the weather archive's hourly GHI over the run [-].

    Every run is scored on its leads in [lead_h[0], lead_h[1]) (default 24–48 h: the day
    ahead) that fall inside the run: hour means over whole UTC hours (runs start on whole UTC
    hours), daylight hours only (clear-sky GHI > 0), the RMSE over all runs and hours divided by
    the mean observed GHI of the same hours, as Perez et al. (2013) normalise.
    """
    wf = data.weather
    per_hour = round(1.0 / data.dt_h)
    lo, hi = round(lead_h[0] / data.dt_h), round(lead_h[1] / data.dt_h)
    n_h = (hi - lo) // per_hour
    leads = lo + np.arange(n_h * per_hour)
    rows = wf.run_slot[:, None] + data.n_history + leads[None, :]
    inside = (rows >= data.n_history) & (rows < data.n_rows)
    whole = inside.reshape(-1, n_h, per_hour).all(axis=2)
    rc = np.clip(rows, 0, data.n_rows - 1)

    def hours(x: FloatArray) -> FloatArray:
        return np.asarray(x.reshape(-1, n_h, per_hour).mean(axis=2), dtype=np.float64)

    fc = hours(np.where(inside, wf.ghi_w_m2[:, lo : lo + n_h * per_hour], 0.0))
    obs, clear = hours(data.ghi_w_m2[rc]), hours(data.ghi_clearsky_w_m2[rc])
    ok = whole & (clear > 0.0) & np.isfinite(fc)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((fc[ok] - obs[ok]) ** 2)) / np.mean(obs[ok]))
