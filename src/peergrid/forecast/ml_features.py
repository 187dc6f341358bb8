"""Features and targets of the gradient-boosted forecaster (`forecast.ml`), as pure functions.

Every feature is a function of one (base issue, target row, participant) *triple*: it reads
observed data in rows before the base issue `ib` only (the information rule of
`forecast.base`), the weather run latest at ib, and what is known in advance (calendar,
seasonal lags, clear sky). So features can be built for any set of triples at once (many base
issues, any chunk of target rows, a subsample of participants) and each triple's row is the
same bit for bit: `Targets` names the triples, the work that depends on the pair (base issue,
target row) alone (lag chains, the weather run) is done once per pair.

Demand is normalised per participant by its *level*, the mean demand of the `LEVEL_DAYS` days
before ib: one pooled model then serves households of any size (module docstring of `ml`).
PV is modelled as the clear-sky index k = pv / pv_clear of each participant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

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
class FeatureArrays:
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
    daylight: NDArray[np.bool_]
    clear_peak_kwh: FloatArray
    k_obs: FloatArray
    k_last: FloatArray
    has_pv: NDArray[np.bool_]


def feature_arrays(
    data: ForecastData, *, daylight_frac: float, k_last: FloatArray
) -> FeatureArrays:
    """The arrays of `FeatureArrays` (cumulative sums make every trailing mean a gather)."""
    zero = np.zeros((1, data.n_participants))
    peak = data.pv_clearsky_kwh.max(axis=0)
    day = (data.pv_clearsky_kwh >= daylight_frac * peak[None, :]) & (peak[None, :] > 0.0)
    pv_day = np.where(day, data.pv_kwh, 0.0)
    clear_day = np.where(day, data.pv_clearsky_kwh, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k_obs = np.where(day, data.pv_kwh / data.pv_clearsky_kwh, np.nan)
    return FeatureArrays(
        cum_demand=np.concatenate([zero, np.cumsum(data.demand_kwh, axis=0)]),
        cum_pv_day=np.concatenate([zero, np.cumsum(pv_day, axis=0)]),
        cum_clear_day=np.concatenate([zero, np.cumsum(clear_day, axis=0)]),
        daylight=day,
        clear_peak_kwh=peak,
        k_obs=np.clip(k_obs, 0.0, K_CLIP),
        k_last=k_last,
        has_pv=peak > 0.0,
    )


@dataclass(frozen=True, eq=False)
class Targets:
    """The (base issue, target row, participant) triples whose features are built together.

    Attributes:
        base_row: the base issue's row of each pair, (K,).
        row: the target row of each pair, (K,), >= its base row.
        pair: the pair of each triple, (M,) indices into `base_row` and `row`.
        who: the participant (column) of each triple, (M,).
    """

    base_row: IntArray
    row: IntArray
    pair: IntArray
    who: IntArray

    @staticmethod
    def every(base_row: IntArray, row: IntArray, who: IntArray) -> Targets:
        """Every pair with every participant of `who`, in row-major (pair, participant) order."""
        n_pairs, n_who = base_row.shape[0], who.shape[0]
        pair = np.repeat(np.arange(n_pairs, dtype=np.int64), n_who)
        return Targets(base_row, row, pair, np.tile(who.astype(np.int64), n_pairs))

    def select(self, keep: IntArray) -> Targets:
        """The triples `keep` (indices, in the order given), on the same pairs."""
        return Targets(self.base_row, self.row, self.pair[keep], self.who[keep])

    @property
    def n_triples(self) -> int:
        return int(self.pair.shape[0])


def slots_per_day(data: ForecastData) -> int:
    return round(24.0 / data.dt_h)


def trailing_mean(cum: FloatArray, ib: IntArray, n_rows: int, who: IntArray) -> FloatArray:
    """Mean of column `who` over rows [ib − n_rows, ib) (clipped at 0), per element of the
    equal-shaped `ib` and `who`; NaN where that is empty."""
    lo = np.maximum(ib - n_rows, 0)
    mean = (cum[ib, who] - cum[lo, who]) / np.maximum(ib - lo, 1)
    return np.asarray(np.where(ib > lo, mean, np.nan), dtype=np.float64)


def demand_level_kwh(
    data: ForecastData, prep: FeatureArrays, ib: IntArray, who: IntArray
) -> FloatArray:
    """Participant `who`'s mean demand per slot over the `LEVEL_DAYS` days before ib, floored,
    per element [kWh per slot]."""
    level = trailing_mean(prep.cum_demand, ib, LEVEL_DAYS * slots_per_day(data), who)
    return np.maximum(np.nan_to_num(level, nan=0.0), LEVEL_FLOOR_KWH_PER_H * data.dt_h)


def weather_at_base(
    data: ForecastData, ib: IntArray, rows: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Temperature [°C] and clear-sky index [-] forecast for `rows` by the latest run at or
    before each base row `ib` (same shape as `rows`, or a scalar array); NaN past the run's
    reach and where no run exists yet."""
    wf = data.weather
    r = np.searchsorted(wf.run_slot, np.asarray(ib) - data.n_history, side="right") - 1
    rc = np.maximum(r, 0)
    lead = rows - data.n_history - wf.run_slot[rc].astype(np.int64)
    ok = (r >= 0) & (lead >= 0) & (lead < wf.n_leads)
    lc = np.clip(lead, 0, wf.n_leads - 1)
    temp = np.where(ok, wf.temp_out_c[rc, lc], np.nan)
    ghi = np.where(ok, wf.ghi_w_m2[rc, lc], np.nan)
    clear = data.ghi_clearsky_w_m2[np.clip(rows, 0, data.n_rows - 1)]
    k = np.where(clear > 1.0, ghi / np.maximum(clear, 1.0), 0.0)
    k = np.where(r >= 0, k, np.nan)  # no run yet: nothing is known
    return np.asarray(temp, dtype=np.float64), np.asarray(k, dtype=np.float64)


def _nanmean0(stack: FloatArray) -> FloatArray:
    """Mean over axis 0 ignoring NaN; NaN where all are NaN (no warning).

    Summed one row after another, explicitly: numpy's sum takes that order along a strided
    axis but a pairwise one along a contiguous axis, so its result would depend on the memory
    layout of the stack, and a triple's features on how many triples are built with it."""
    nan = np.isnan(stack)
    count = np.sum(~nan, axis=0)
    values = np.where(nan, 0.0, stack)
    total = values[0].copy()
    for row in values[1:]:
        total += row
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _observed(values: FloatArray, rows: IntArray, ib: IntArray, who: IntArray) -> FloatArray:
    """values[rows, who] (rows (..., M)) with NaN where a row is −1 or not before ib."""
    ok = (rows >= 0) & (rows < ib)
    return np.where(ok, values[np.where(ok, rows, 0), who], np.nan)


def demand_features(
    data: ForecastData, prep: FeatureArrays, t: Targets
) -> tuple[FloatArray, FloatArray]:
    """Demand features of the triples, (M, len(DEMAND_FEATURES)), and each triple's level
    (M,) [kWh per slot]; lags are normalised by the level."""
    rows_k, ib_k = t.row, t.base_row
    ib, who = ib_k[t.pair], t.who
    level = demand_level_kwh(data, prep, ib, who)

    def norm(rows_of_pair: IntArray) -> FloatArray:
        """Normalised observed demand at rows given per pair, (..., K) → (..., M)."""
        return _observed(data.demand_kwh, np.take(rows_of_pair, t.pair, axis=-1), ib, who) / level

    temp, k_fc = weather_at_base(data, ib_k, rows_k)
    lag1 = latest_lag_rows(data.prev_day, rows_k, ib_k)
    chain = np.stack([chain_back(data.prev_day, lag1, j) for j in range(PROFILE_DAYS)])
    shifted = np.concatenate([np.where(chain >= 0, chain + s, -1) for s in (-1, 0, 1)])
    wk1 = latest_lag_rows(data.prev_week, rows_k, ib_k)
    weeks = np.stack([chain_back(data.prev_week, wk1, j) for j in range(PROFILE_WEEKS)])
    recent = trailing_mean(prep.cum_demand, ib, slots_per_day(data), who) / level
    rows_c = np.clip(rows_k, 0, data.n_rows - 1)
    per_pair = (
        data.local_minute[rows_c].astype(np.float64),
        data.weekday[rows_c].astype(np.float64),
        data.day_of_year[rows_c].astype(np.float64),
        (rows_k - ib_k).astype(np.float64) * data.dt_h,
        temp,
        k_fc,
        data.ghi_clearsky_w_m2[rows_c],
    )
    x = np.empty((t.n_triples, len(DEMAND_FEATURES)))
    for i, col in enumerate(per_pair):
        x[:, i] = col[t.pair]
    x[:, 7] = level
    x[:, 8] = recent
    x[:, 9] = norm(lag1)
    x[:, 10] = _nanmean0(norm(chain))
    x[:, 11] = _nanmean0(norm(shifted))
    x[:, 12] = _nanmean0(norm(weeks))
    return x, level


def pv_features(data: ForecastData, prep: FeatureArrays, t: Targets) -> FloatArray:
    """PV features of the triples (participants with PV), (M, len(PV_FEATURES))."""
    rows_k, ib_k = t.row, t.base_row
    ib, who = ib_k[t.pair], t.who
    temp, k_fc = weather_at_base(data, ib_k, rows_k)
    hour = max(1, round(1.0 / data.dt_h))
    _, k_before = weather_at_base(data, ib_k, rows_k - hour)
    _, k_after = weather_at_base(data, ib_k, rows_k + hour)
    lo = np.maximum(ib - LEVEL_DAYS * slots_per_day(data), 0)
    den = prep.cum_clear_day[ib, who] - prep.cum_clear_day[lo, who]
    num = prep.cum_pv_day[ib, who] - prep.cum_pv_day[lo, who]
    k_recent = np.where(den > 0.0, num / np.where(den > 0.0, den, 1.0), np.nan)
    lag1 = latest_lag_rows(data.prev_day, rows_k, ib_k)
    rows_c = np.clip(rows_k, 0, data.n_rows - 1)
    per_pair = (
        data.local_minute[rows_c].astype(np.float64),
        data.day_of_year[rows_c].astype(np.float64),
        (rows_k - ib_k).astype(np.float64) * data.dt_h,
        temp,
        k_fc,
        k_before,
        k_after,
        data.ghi_clearsky_w_m2[rows_c],
    )
    x = np.empty((t.n_triples, len(PV_FEATURES)))
    for i, col in enumerate(per_pair):
        x[:, i] = col[t.pair]
    x[:, 8] = data.pv_clearsky_kwh[rows_c[t.pair], who] / prep.clear_peak_kwh[who]
    x[:, 9] = k_recent
    x[:, 10] = prep.k_last[ib, who]
    x[:, 11] = _observed(prep.k_obs, lag1[t.pair], ib, who)
    return x
