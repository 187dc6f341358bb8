"""Forecast errors: MAE, RMSE, bias and skill against a reference, per participant and community.

For forecasts f and actuals y, (T, P) arrays [kWh per slot]:

- MAE = mean |f − y|, RMSE = sqrt(mean (f − y)²), bias = mean (f − y) (positive: over-forecast),
  over every slot and participant (the participant values are per column);
- the community's RMSE is that of the summed series Σ_p f and Σ_p y (errors of different
  households partly cancel);
- skill against a reference r (persistence by default) = 1 − RMSE(f) / RMSE(r), over every
  slot and participant; NaN when the reference is perfect (RMSE 0) or absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class ForecastErrors:
    """Errors of one forecast series.

    Attributes:
        mae_kwh, rmse_kwh, bias_kwh: over every slot and participant [kWh].
        community_rmse_kwh: RMSE of the community's summed series [kWh].
        skill: 1 − RMSE / RMSE of the reference [-]; NaN without a usable reference.
        participant_mae_kwh, participant_rmse_kwh, participant_bias_kwh: per participant, (P,).
        participant_skill: per participant, (P,) [-].
    """

    mae_kwh: float
    rmse_kwh: float
    bias_kwh: float
    community_rmse_kwh: float
    skill: float
    participant_mae_kwh: FloatArray
    participant_rmse_kwh: FloatArray
    participant_bias_kwh: FloatArray
    participant_skill: FloatArray


def _skill(rmse: FloatArray, reference_rmse: FloatArray) -> FloatArray:
    out: FloatArray = np.divide(
        rmse, reference_rmse, out=np.full(np.shape(rmse), np.nan), where=reference_rmse > 0
    )
    return 1.0 - out


def forecast_errors(
    forecast: FloatArray, actual: FloatArray, reference: FloatArray | None = None
) -> ForecastErrors:
    """Errors of `forecast` against `actual`, and its skill against `reference` (all (T, P))."""
    f = np.asarray(forecast, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    e = f - y
    n_t = max(e.shape[0], 1)
    p_mae = np.abs(e).sum(axis=0) / n_t
    p_rmse = np.sqrt((e * e).sum(axis=0) / n_t)
    p_bias = e.sum(axis=0) / n_t
    rmse = float(np.sqrt(np.mean(e * e))) if e.size else 0.0
    community = e.sum(axis=1)
    community_rmse = float(np.sqrt(np.mean(community * community))) if community.size else 0.0
    if reference is None:
        skill = float("nan")
        p_skill = np.full(e.shape[1], np.nan)
    else:
        r = np.asarray(reference, dtype=np.float64) - y
        ref_rmse = float(np.sqrt(np.mean(r * r))) if r.size else 0.0
        skill = float(_skill(np.asarray(rmse), np.asarray(ref_rmse)))
        p_skill = _skill(p_rmse, np.sqrt((r * r).sum(axis=0) / n_t))
    return ForecastErrors(
        mae_kwh=float(np.mean(np.abs(e))) if e.size else 0.0,
        rmse_kwh=rmse,
        bias_kwh=float(np.mean(e)) if e.size else 0.0,
        community_rmse_kwh=community_rmse,
        skill=skill,
        participant_mae_kwh=p_mae,
        participant_rmse_kwh=p_rmse,
        participant_bias_kwh=p_bias,
        participant_skill=p_skill,
    )
