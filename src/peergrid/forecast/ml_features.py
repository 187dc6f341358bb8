"""Features and targets of the gradient-boosted forecaster (`forecast.ml`), as pure functions.

Everything here is computed for a *base issue* at row `ib` and target rows `rows` >= ib, and
reads observed data in rows < ib only (the information rule of `forecast.base`), the weather run
latest at ib, and what is known in advance (calendar, seasonal lags, clear sky). Every feature of
a target row depends on (ib, that row) alone, so predictions can be made in any chunks.

Demand is normalised per participant by its *level*, the mean demand of the `LEVEL_DAYS` days
before ib: one pooled model then serves households of any size (module docstring of `ml`).
PV is modelled as the clear-sky index k = pv / pv_clear of each participant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.forecast.base import FloatArray, ForecastData, IntArray
from peergrid.forecast.common import chain_back, latest_lag_rows

LEVEL_DAYS = 7
PROFILE_DAYS = 7
PROFILE_WEEKS = 3
#: Floor of a participant's level [kWh per hour], so an empty house does not divide by zero.
LEVEL_FLOOR_KWH_PER_H = 0.01
K_CLIP = 1.5

DEMAND_FEATURES = (
    "minute", "weekday", "day_of_year", "lead_h", "temp_fc_c", "k_fc", "ghi_clear_w_m2",
    "level_kwh", "recent24", "lag_day", "profile7", "profile7_smooth", "profile_week",
)  # fmt: skip
PV_FEATURES = (
    "minute", "day_of_year", "lead_h", "temp_fc_c", "k_fc", "k_fc_before", "k_fc_after",
    "ghi_clear_w_m2", "clear_rel", "k_recent", "k_last", "k_lag_day",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Prepared:
    """Per-run arrays the features gather from, computed once from `ForecastData`.

    Attributes:
        cum_demand: cumulative demand, (N + 1, P) [kWh]; row i sums rows < i.
        cum_pv_day, cum_clear_day: cumulative PV and clear-sky PV over daylight slots only,
            (N + 1, P) [kWh].
        daylight: (N, P) bool, clear-sky PV >= `daylight_frac` × the participant's peak.
        clear_peak_kwh: each participant's largest clear-sky slot, (P,) [kWh].
        k_obs: observed clear-sky index of PV, NaN outside daylight, (N, P) [-].
        k_last: smart-persistence index before each row, (N + 1, P) [-].
        has_pv: (P,) bool.
    """

    cum_demand: FloatArray
    cum_pv_day: FloatArray
    cum_clear_day: FloatArray
    daylight: np.ndarray
    clear_peak_kwh: FloatArray
    k_obs: FloatArray
    k_last: FloatArray
    has_pv: np.ndarray


def prepare(data: ForecastData, *, daylight_frac: float, k_last: FloatArray) -> Prepared:
    """The arrays of `Prepared` (cumulative sums make every trailing mean a gather)."""
    zero = np.zeros((1, data.n_participants))
    peak = data.pv_clearsky_kwh.max(axis=0)
    day = (data.pv_clearsky_kwh >= daylight_frac * peak[None, :]) & (peak[None, :] > 0.0)
    pv_day = np.where(day, data.pv_kwh, 0.0)
    clear_day = np.where(day, data.pv_clearsky_kwh, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k_obs = np.where(day, data.pv_kwh / data.pv_clearsky_kwh, np.nan)
    return Prepared(
        cum_demand=np.concatenate([zero, np.cumsum(data.demand_kwh, axis=0)]),
        cum_pv_day=np.concatenate([zero, np.cumsum(pv_day, axis=0)]),
        cum_clear_day=np.concatenate([zero, np.cumsum(clear_day, axis=0)]),
        daylight=day,
        clear_peak_kwh=peak,
        k_obs=np.clip(k_obs, 0.0, K_CLIP),
        k_last=k_last,
        has_pv=peak > 0.0,
    )


def slots_per_day(data: ForecastData) -> int:
    return round(24.0 / data.dt_h)


def trailing_mean(cum: FloatArray, ib: int, n_rows: int) -> FloatArray:
    """Mean per column over rows [ib − n_rows, ib) (clipped at 0), (P,); NaN if empty."""
    lo = max(ib - n_rows, 0)
    if ib <= lo:
        return np.full(cum.shape[1], np.nan)
    return np.asarray((cum[ib] - cum[lo]) / (ib - lo), dtype=np.float64)


def demand_level_kwh(data: ForecastData, prep: Prepared, ib: int) -> FloatArray:
    """Each participant's mean demand per slot over the `LEVEL_DAYS` days before ib, floored,
    (P,) [kWh per slot]."""
    level = trailing_mean(prep.cum_demand, ib, LEVEL_DAYS * slots_per_day(data))
    return np.maximum(np.nan_to_num(level, nan=0.0), LEVEL_FLOOR_KWH_PER_H * data.dt_h)


def weather_at_base(data: ForecastData, ib: int, rows: IntArray) -> tuple[FloatArray, FloatArray]:
    """Temperature [°C] and clear-sky index [-] forecast for `rows` by the latest run at or
    before ib; NaN past the run's reach (and where no run exists yet), (n,) each."""
    wf = data.weather
    slot = ib - data.n_history
    r = int(np.searchsorted(wf.run_slot, slot, side="right")) - 1
    n = rows.shape[0]
    if r < 0:
        return np.full(n, np.nan), np.full(n, np.nan)
    lead = rows - data.n_history - int(wf.run_slot[r])
    ok = (lead >= 0) & (lead < wf.n_leads)
    lc = np.clip(lead, 0, wf.n_leads - 1)
    temp = np.where(ok, wf.temp_out_c[r, lc], np.nan)
    ghi = np.where(ok, wf.ghi_w_m2[r, lc], np.nan)
    clear = data.ghi_clearsky_w_m2[np.clip(rows, 0, data.n_rows - 1)]
    k = np.where(clear > 1.0, ghi / np.maximum(clear, 1.0), 0.0)
    return temp, np.asarray(k, dtype=np.float64)


def _gather(values: FloatArray, rows: IntArray, ib: int) -> FloatArray:
    """values[rows] (rows (..., n) → (..., n, P)) with NaN where a row is −1 or not before ib."""
    ok = (rows >= 0) & (rows < ib)
    out = values[np.where(ok, rows, 0)]
    return np.where(ok[..., None], out, np.nan)


def _nanmean0(stack: FloatArray) -> FloatArray:
    """Mean over axis 0 ignoring NaN; NaN where all are NaN (no warning)."""
    count = np.sum(~np.isnan(stack), axis=0)
    total = np.nansum(stack, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def demand_features(
    data: ForecastData, prep: Prepared, ib: int, rows: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Demand features for base ib and target rows, (n × P, len(DEMAND_FEATURES)) in
    row-major (target, participant) order, and the level (P,) [kWh per slot]."""
    n, p = rows.shape[0], data.n_participants
    day = slots_per_day(data)
    level = demand_level_kwh(data, prep, ib)
    norm = data.demand_kwh / level[None, :]
    temp, k_fc = weather_at_base(data, ib, rows)
    lag1 = latest_lag_rows(data.prev_day, rows, ib)
    chain = np.stack([chain_back(data.prev_day, lag1, j) for j in range(PROFILE_DAYS)])
    profile = _nanmean0(_gather(norm, chain, ib))
    smooth = _nanmean0(
        np.concatenate([_gather(norm, np.where(chain >= 0, chain + s, -1), ib) for s in (-1, 0, 1)])
    )
    wk1 = latest_lag_rows(data.prev_week, rows, ib)
    weeks = np.stack([chain_back(data.prev_week, wk1, j) for j in range(PROFILE_WEEKS)])
    profile_week = _nanmean0(_gather(norm, weeks, ib))
    recent = trailing_mean(prep.cum_demand, ib, day) / level

    def per_row(x: FloatArray) -> FloatArray:
        return np.broadcast_to(x[:, None], (n, p))

    def per_participant(x: FloatArray) -> FloatArray:
        return np.broadcast_to(x[None, :], (n, p))

    rows_c = np.clip(rows, 0, data.n_rows - 1)
    cols = [
        per_row(data.local_minute[rows_c].astype(np.float64)),
        per_row(data.weekday[rows_c].astype(np.float64)),
        per_row(data.day_of_year[rows_c].astype(np.float64)),
        per_row((rows - ib).astype(np.float64) * data.dt_h),
        per_row(temp),
        per_row(k_fc),
        per_row(data.ghi_clearsky_w_m2[rows_c]),
        per_participant(level),
        per_participant(recent),
        _gather(norm, lag1, ib),
        profile,
        smooth,
        profile_week,
    ]
    return np.stack(cols, axis=-1).reshape(n * p, len(cols)), level


def pv_features(
    data: ForecastData, prep: Prepared, ib: int, rows: IntArray, cols_p: IntArray
) -> FloatArray:
    """PV features for base ib, target rows and the participants `cols_p` (with PV),
    (n × len(cols_p), len(PV_FEATURES)) in row-major (target, participant) order."""
    n, p = rows.shape[0], cols_p.shape[0]
    day = slots_per_day(data)
    temp, k_fc = weather_at_base(data, ib, rows)
    hour = max(1, round(1.0 / data.dt_h))
    _, k_before = weather_at_base(data, ib, rows - hour)
    _, k_after = weather_at_base(data, ib, rows + hour)
    lo = max(ib - LEVEL_DAYS * day, 0)
    den = prep.cum_clear_day[ib, cols_p] - prep.cum_clear_day[lo, cols_p]
    num = prep.cum_pv_day[ib, cols_p] - prep.cum_pv_day[lo, cols_p]
    k_recent = np.where(den > 0.0, num / np.where(den > 0.0, den, 1.0), np.nan)
    lag1 = latest_lag_rows(data.prev_day, rows, ib)
    k_lag = _gather(prep.k_obs[:, cols_p], lag1, ib)
    rows_c = np.clip(rows, 0, data.n_rows - 1)
    clear_rel = data.pv_clearsky_kwh[np.ix_(rows_c, cols_p)] / prep.clear_peak_kwh[cols_p]

    def per_row(x: FloatArray) -> FloatArray:
        return np.broadcast_to(x[:, None], (n, p))

    def per_participant(x: FloatArray) -> FloatArray:
        return np.broadcast_to(x[None, :], (n, p))

    cols = [
        per_row(data.local_minute[rows_c].astype(np.float64)),
        per_row(data.day_of_year[rows_c].astype(np.float64)),
        per_row((rows - ib).astype(np.float64) * data.dt_h),
        per_row(temp),
        per_row(k_fc),
        per_row(k_before),
        per_row(k_after),
        per_row(data.ghi_clearsky_w_m2[rows_c]),
        clear_rel,
        per_participant(k_recent),
        per_participant(prep.k_last[ib, cols_p]),
        k_lag,
    ]
    return np.stack(cols, axis=-1).reshape(n * p, len(cols))
