"""`ml`: gradient-boosted trees (LightGBM) on calendar, weather-forecast and lagged features.

Needs the optional extra: ``pip install 'peergrid[ml]'``.

Design (what is computed when, and why it obeys the information rule of `forecast.base`):

1. **Base issues.** Once a local day, at `base_hour` local time (default 12:00, the usual
   day-ahead gate), the forecaster makes a *base forecast* for every participant and every slot
   from there on (computed lazily, as far ahead as asked, and cached per base issue; or all at
   once by `prepare`, below). Every feature reads observations before the base issue only
   (`forecast.ml_features`), and the weather-forecast run latest at it.
2. **Models.** Two pooled models: demand normalised by each participant's level (mean of its
   last 7 days), and the clear-sky index of PV. The model used by a base issue at row b is the
   one trained at the latest *retrain* time τ <= b; retrains happen every `retrain_days`
   base issues. A model trained at τ learns from *virtual base issues* b' in the `train_days`
   before τ (features exactly as in 1., built at b') and their targets in [b', b' +
   `train_horizon_h`) that lie before τ: observed when τ comes. Until `min_train_days` such
   base issues exist, there is no model and every issue falls back to `seasonal-naive` (period
   day); `timings()["fallback_issues"]` counts them.
3. **Issue at gate g.** The base forecast of the latest base issue b <= g, plus an update from
   the latest observed error: the mean error of the base forecasts over the `update_window_h`
   before g (each slot's forecast from the base issue that covered it then), times
   exp(−(t − g + 1)·Δt / τ), so it fades with lead (demand and PV each have their own τ; PV's
   error is a clear-sky-index error, scaled by each target's clear-sky PV). For a day-ahead gate
   at the base hour the update is the only thing newer than b; for 35,000 intraday gates it
   keeps each call to a few array operations on cached base forecasts.
4. **Prepared issues** (`forecast.base.PreparesIssues`). Given every gate of a run, `prepare`
   trains the models the gates need, predicts every base forecast as far as the gates read it
   (many base issues per LightGBM call, PV only on daylight slots) and the update of every
   gate; `issue` then slices. Each of these values is the one the lazy path computes for the
   same key, bit for bit: features are per (base issue, target row, participant), predictions
   per row, and the error of a gate's window is summed in the same order either way.

Why pool across participants. A single household's 15-minute demand is dominated by random
appliance events: a year of one household gives a tree model little to learn from and much to
overfit. Normalised by its level, every household shares the same structure (clock time,
weekday, season, darkness, temperature), while the household's own habits enter through its
normalised lags (its profile of the last 7 days and 3 weeks at the same clock time). One model
for 100 homes also trains 100 times less often than one per home. PV is pooled the same way: the
clear-sky index of every array on the street follows the same clouds.

PV never uses realised irradiance: its features are the weather forecast's clear-sky index
(GHI forecast / clear-sky GHI) around the target, the target's clear-sky PV, and the
participant's observed clear-sky indices before the issue.

Determinism: LightGBM with `deterministic=True`, `force_row_wise`, a fixed `num_threads` and a
seed; training rows are subsampled with a generator seeded by (seed, retrain row), and only the
rows drawn get features. Every cached value is a function of its key alone, so neither call
order nor `prepare` changes an answer.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from peergrid.errors import InputError
from peergrid.forecast.base import FloatArray, ForecastData, ForecastParams, IntArray, Issued
from peergrid.forecast.common import check_request, target_rows, weather_temperature
from peergrid.forecast.ml_features import (
    DEMAND_FEATURES,
    K_CLIP,
    LEVEL_DAYS,
    PV_FEATURES,
    FeatureArrays,
    Targets,
    demand_features,
    demand_level_kwh,
    feature_arrays,
    pv_features,
    slots_per_day,
    weather_at_base,
)
from peergrid.forecast.persistence import smart_persistence_index
from peergrid.forecast.seasonal_naive import seasonal_naive_rows

if TYPE_CHECKING:
    import lightgbm

INSTALL_HINT = "pip install 'peergrid[ml]'"
#: Base forecasts are extended in chunks of this many hours (lazy path).
_CHUNK_H = 6.0
#: Base forecasts kept in memory by the lazy path (older ones are recomputed if asked again).
_CACHE_BASES = 8
#: (target, participant) triples predicted per LightGBM call by `prepare`: bounds its working
#: memory (the demand features of one triple take about 0.5 kB while they are built).
_BATCH_TRIPLES = 150_000
#: Gates whose updates `prepare` computes at once (working memory: a few (n, window, P) arrays).
_BATCH_GATES = 2_048


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - the dev install has the extra
        raise InputError(
            f"forecast.method: 'ml' needs LightGBM; install it with {INSTALL_HINT}"
        ) from exc
    return lightgbm


class MlParams(ForecastParams):
    base_hour: float = Field(
        12.0, ge=0.0, lt=24.0, description="local clock time of the daily base issue [h]"
    )
    retrain_days: int = Field(7, ge=1, le=366, description="base issues between retrains")
    train_days: int = Field(
        28, ge=2, le=366, description="base issues before a retrain that it learns from"
    )
    min_train_days: int = Field(
        7, ge=1, le=366, description="fewest such base issues for a model (else fallback)"
    )
    train_horizon_h: float = Field(
        48.0, ge=1.0, le=120.0, description="leads learnt from each virtual base issue [h]"
    )
    max_train_rows: int = Field(
        40_000, ge=1_000, le=5_000_000, description="training rows per model (subsampled)"
    )
    n_estimators: int = Field(60, ge=1, le=5_000, description="boosting rounds")
    learning_rate: float = Field(0.15, gt=0.0, le=1.0, description="shrinkage per round")
    num_leaves: int = Field(31, ge=2, le=1_024, description="leaves per tree")
    min_child_samples: int = Field(50, ge=1, le=100_000, description="rows per leaf, at least")
    num_threads: int = Field(1, ge=1, le=64, description="LightGBM threads (fixed: reproducible)")
    daylight_frac: float = Field(
        0.05, gt=0.0, lt=1.0, description="PV rows learnt: clear-sky PV >= this share of peak"
    )
    update_window_h: float = Field(
        1.0, gt=0.0, le=24.0, description="observed error that updates a base forecast [h]"
    )
    demand_update_tau_h: float = Field(
        1.0, gt=0.0, le=48.0, description="e-folding lead of the demand update [h]"
    )
    pv_update_tau_h: float = Field(
        6.0, gt=0.0, le=48.0, description="e-folding lead of the PV update [h]"
    )


@dataclass(frozen=True, eq=False)
class Models:
    """The two boosters trained at one retrain time (None: not enough history)."""

    demand: Any
    pv: Any


@dataclass(frozen=True, eq=False)
class PreparedBases:
    """Base forecasts computed by `prepare`, one block of rows per base issue.

    Attributes:
        demand_kwh, pv_kwh: the blocks one after another, (S, P) each [kWh].
        offset: first row in the blocks of each base issue, (B,), −1 where not prepared.
        n_rows: rows of each base issue's block (from its base row on), (B,).
    """

    demand_kwh: FloatArray
    pv_kwh: FloatArray
    offset: IntArray
    n_rows: IntArray

    def of(self, base_index: int) -> tuple[FloatArray, FloatArray] | None:
        """The block of one base issue (views), None where not prepared."""
        start = int(self.offset[base_index])
        if start < 0:
            return None
        stop = start + int(self.n_rows[base_index])
        return self.demand_kwh[start:stop], self.pv_kwh[start:stop]


def _booster_params(p: MlParams, seed: int) -> dict[str, Any]:
    return {
        "objective": "regression",
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves,
        "min_data_in_leaf": p.min_child_samples,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": p.num_threads,
        "seed": seed,
        "verbosity": -1,
    }


def train_booster(
    features: FloatArray, target: FloatArray, names: tuple[str, ...], p: MlParams, seed: int
) -> lightgbm.Booster:
    """A LightGBM regressor (L2) on (features, target)."""
    lgb = _lightgbm()
    ds = lgb.Dataset(features, label=target, feature_name=list(names), free_raw_data=True)
    booster: lightgbm.Booster = lgb.train(
        _booster_params(p, seed), ds, num_boost_round=p.n_estimators
    )
    return booster


def row_pairs(first: IntArray, stop: IntArray) -> tuple[IntArray, IntArray]:
    """(base row, target row) pairs for the target rows [first[i], stop[i]) of every base row
    first[i], in order, (K,) each."""
    n = np.maximum(stop - first, 0)
    base = np.repeat(first, n)
    within = np.arange(base.shape[0], dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    return base, base + within


def _sum_window(x: FloatArray) -> FloatArray:
    """Sum over axis −2, one row after the other (the order numpy's sum over a leading axis
    takes), so a window's sum does not depend on how many windows are summed at once."""
    total = x[..., 0, :].copy()
    for k in range(1, x.shape[-2]):
        total += x[..., k, :]
    return total


def window_errors(
    data: ForecastData, prep: FeatureArrays, rows: IntArray, fc_dem: FloatArray, fc_pv: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Mean demand error [kWh] and PV clear-sky-index error [-] of the forecasts `fc_dem`,
    `fc_pv` (..., w, P) of the observed rows `rows` (..., w), (..., P) each: demand observed −
    forecast, and Σ (pv − forecast) / Σ clear-sky PV over daylight slots (0 without any)."""
    e_dem = _sum_window(data.demand_kwh[rows] - fc_dem) / rows.shape[-1]
    day = prep.daylight[rows]
    den = _sum_window(data.pv_clearsky_kwh[rows] * day)
    num = _sum_window((data.pv_kwh[rows] - fc_pv) * day)
    e_k = np.where(den > 0.0, num / np.where(den > 0.0, den, 1.0), 0.0)
    return np.asarray(e_dem, np.float64), np.asarray(e_k, np.float64)


class GradientBoosting:
    """Pooled LightGBM models on daily base issues plus a decaying error update per gate."""

    name: ClassVar[str] = "ml"
    description: ClassVar[str] = (
        "LightGBM pooled over participants (calendar, weather forecast, lags), retrained on a "
        "rolling schedule, updated at each gate from the latest error"
    )
    Params: ClassVar[type[ForecastParams]] = MlParams

    def __init__(self, params: MlParams, data: ForecastData, *, seed: int) -> None:
        _lightgbm()
        self._params = params
        self._data = data
        self._seed = seed
        self._base_rows: IntArray = np.flatnonzero(
            data.local_minute == round(params.base_hour * 60.0)
        ).astype(np.int64)
        if self._base_rows.size == 0:
            raise InputError(
                f"forecast.params.base_hour: {params.base_hour} h is not the start of any slot"
            )
        self._base_list: list[int] = self._base_rows.tolist()
        k_last = smart_persistence_index(
            data.pv_kwh, data.pv_clearsky_kwh, window=max(1, round(1.0 / data.dt_h)),
            daylight_frac=0.1,
        )  # fmt: skip
        self._prep: FeatureArrays = feature_arrays(
            data, daylight_frac=params.daylight_frac, k_last=k_last
        )
        self._pv_cols: IntArray = np.flatnonzero(self._prep.has_pv).astype(np.int64)
        # the gate update reads rows of clear-sky PV: row-major, whatever the data's layout
        self._clear_rows: FloatArray = np.ascontiguousarray(data.pv_clearsky_kwh)
        self._models: dict[int, Models] = {}
        self._bases: OrderedDict[int, tuple[FloatArray, FloatArray]] = OrderedDict()
        self._prepared: PreparedBases | None = None
        # the update of each prepared gate: its row → index into the (G, P) arrays
        self._update_at: dict[int, int] = {}
        self._e_dem: FloatArray = np.zeros((0, data.n_participants))
        self._e_k: FloatArray = np.zeros((0, data.n_participants))
        self._chunk = max(1, round(_CHUNK_H / data.dt_h))
        self._window = max(1, round(params.update_window_h / data.dt_h))
        self._fallback_issues = 0
        self._lazy_predictions = 0
        steps = np.arange(1, data.n_rows + 1, dtype=np.float64) * data.dt_h
        self._decay_dem = np.exp(-steps / params.demand_update_tau_h)
        self._decay_pv = np.exp(-steps / params.pv_update_tau_h)
        self._clock: dict[str, float] = {
            "features_s": 0.0, "train_s": 0.0, "predict_s": 0.0, "prepare_s": 0.0,
            "issue_s": 0.0,
        }  # fmt: skip

    @property
    def params(self) -> ForecastParams:
        return self._params

    # ---- schedule -------------------------------------------------------------------------

    def _base_of(self, row: int) -> int:
        """Index into base rows of the latest base issue at or before `row` (−1: none)."""
        return bisect.bisect_right(self._base_list, row) - 1

    def _retrain_of(self, base_index: int) -> int:
        """The retrain row that serves base issue `base_index`."""
        return self._base_list[base_index - base_index % self._params.retrain_days]

    def _virtual_bases(self, tau: int) -> IntArray:
        """Base rows the model of retrain row tau learns from: the `train_days` before tau
        with `LEVEL_DAYS` of data before them."""
        day = slots_per_day(self._data)
        b = self._base_rows
        sel = (b < tau) & (b >= tau - self._params.train_days * day) & (b >= LEVEL_DAYS * day)
        return b[sel]

    def _modelled(self) -> NDArray[np.bool_]:
        """(B,) bool: whether each base issue has a model (without training one)."""
        taus = {self._retrain_of(j) for j in range(len(self._base_list))}
        ok = {t: self._virtual_bases(t).size >= self._params.min_train_days for t in taus}
        return np.array(
            [ok[self._retrain_of(j)] for j in range(len(self._base_list))], dtype=np.bool_
        )

    # ---- training -------------------------------------------------------------------------

    def _models_at(self, tau: int) -> Models:
        if tau in self._models:
            return self._models[tau]
        p, d, prep = self._params, self._data, self._prep
        bases = self._virtual_bases(tau)
        if bases.size < p.min_train_days:
            models = Models(None, None)
            self._models[tau] = models
            return models
        t0 = time.perf_counter()
        # every virtual base issue's targets in the training horizon observed by tau, in
        # (base, row, participant) order; features only for the rows drawn
        horizon = max(1, round(p.train_horizon_h / d.dt_h))
        base_row, row = row_pairs(bases, np.minimum(bases + horizon, min(d.n_rows, tau)))
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, tau]))
        every = Targets.every(base_row, row, np.arange(d.n_participants, dtype=np.int64))
        level = demand_level_kwh(d, prep, base_row[every.pair], every.who)
        y = d.demand_kwh[row[every.pair], every.who] / level
        keep = self._subsample(y, rng)
        x, _ = demand_features(d, prep, every.select(keep))
        y_dem = y[keep]
        x_pv: FloatArray | None = None
        y_pv = np.zeros(0)
        if self._pv_cols.size:
            every_pv = Targets.every(base_row, row, self._pv_cols)
            lit = every_pv.select(np.flatnonzero(prep.daylight[row[every_pv.pair], every_pv.who]))
            y_lit = prep.k_obs[row[lit.pair], lit.who]
            if y_lit.size:
                keep_pv = self._subsample(y_lit, rng)
                x_pv = pv_features(d, prep, lit.select(keep_pv))
                y_pv = y_lit[keep_pv]
        t1 = time.perf_counter()
        demand = train_booster(x, y_dem, DEMAND_FEATURES, p, self._seed)
        pv = None if x_pv is None else train_booster(x_pv, y_pv, PV_FEATURES, p, self._seed)
        t2 = time.perf_counter()
        self._clock["features_s"] += t1 - t0
        self._clock["train_s"] += t2 - t1
        models = Models(demand, pv)
        self._models[tau] = models
        return models

    def _subsample(self, y: FloatArray, rng: np.random.Generator) -> IntArray:
        """Indices of the finite targets, at most `max_train_rows` of them drawn at random
        (in their order)."""
        keep = np.flatnonzero(np.isfinite(y))
        limit = self._params.max_train_rows
        if keep.size > limit:
            keep = keep[np.sort(rng.choice(keep.size, limit, replace=False))]
        return keep.astype(np.int64)

    # ---- base forecasts -------------------------------------------------------------------

    def _predict(
        self, models: Models, base_row: IntArray, rows: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Base demand and PV forecasts (K, P) [kWh] of the (base row, target row) pairs, all
        served by `models`."""
        d, prep = self._data, self._prep
        n, p = rows.shape[0], d.n_participants
        t0 = time.perf_counter()
        x, level = demand_features(
            d, prep, Targets.every(base_row, rows, np.arange(p, dtype=np.int64))
        )
        cols = self._pv_cols
        rows_c = np.clip(rows, 0, d.n_rows - 1)
        day = prep.daylight[np.ix_(rows_c, cols)]
        lit = np.flatnonzero(day)  # PV is predicted on daylight slots only
        xpv = None
        if models.pv is not None and lit.size:
            xpv = pv_features(d, prep, Targets.every(base_row, rows, cols).select(lit))
        t1 = time.perf_counter()
        y = models.demand.predict(x, num_threads=self._params.num_threads)
        demand = np.maximum(np.asarray(y, dtype=np.float64).reshape(n, p), 0.0)
        demand *= level.reshape(n, p)
        pv = np.zeros((n, p), dtype=np.float64)
        if cols.size:
            clear = d.pv_clearsky_kwh[np.ix_(rows_c, cols)]
            _, k_fc = weather_at_base(d, base_row, rows)
            k = np.broadcast_to(np.nan_to_num(k_fc, nan=1.0)[:, None], day.shape).copy()
            if xpv is not None:
                k_model = models.pv.predict(xpv, num_threads=self._params.num_threads)
                k.ravel()[lit] = np.asarray(k_model, dtype=np.float64)
            pv[:, cols] = np.clip(k, 0.0, K_CLIP) * clear
        t2 = time.perf_counter()
        self._clock["features_s"] += t1 - t0
        self._clock["predict_s"] += t2 - t1
        return demand, pv

    def _base_forecast(self, base_index: int, upto_row: int) -> tuple[FloatArray, FloatArray]:
        """The base forecast of base issue `base_index`, covering at least the rows
        [ib, upto_row); rows are relative to ib. None-model bases are never asked for."""
        ib = self._base_list[base_index]
        need = min(upto_row, self._data.n_rows) - ib
        cached = self._bases.get(ib)
        if cached is None and self._prepared is not None:
            cached = self._prepared.of(base_index)
            if cached is not None and cached[0].shape[0] >= need:
                return cached
        have = 0 if cached is None else cached[0].shape[0]
        if have < need:
            models = self._models_at(self._retrain_of(base_index))
            end = min(ib + max(need, have + self._chunk), self._data.n_rows)
            # round the extension to whole chunks from ib so chunking never depends on asks
            end = min(ib + -(-(end - ib) // self._chunk) * self._chunk, self._data.n_rows)
            rows = np.arange(ib + have, end, dtype=np.int64)
            self._lazy_predictions += 1
            dem, pv = self._predict(models, np.full(rows.shape[0], ib, dtype=np.int64), rows)
            if cached is not None:
                dem = np.concatenate([cached[0], dem])
                pv = np.concatenate([cached[1], pv])
            cached = (dem, pv)
        assert cached is not None
        self._bases[ib] = cached
        self._bases.move_to_end(ib)
        while len(self._bases) > _CACHE_BASES:
            self._bases.popitem(last=False)
        return cached

    def _has_model(self, base_index: int) -> bool:
        if base_index < 0:
            return False
        return self._models_at(self._retrain_of(base_index)).demand is not None

    # ---- prepare --------------------------------------------------------------------------

    def prepare(self, issue_slots: IntArray, horizon_slots: int) -> None:
        """Train the models, predict the base forecasts and compute the updates of issues at
        `issue_slots` for targets up to `horizon_slots` after each (`PreparesIssues`).

        A later call replaces what an earlier one prepared. Memory: the base forecasts, two
        float64 (rows, P) arrays with about (1 day + horizon) rows per base issue, and two
        (issues, P) arrays of updates."""
        t0 = time.perf_counter()
        d = self._data
        rows = np.unique(np.asarray(issue_slots, dtype=np.int64)) + d.n_history
        rows = rows[(rows >= 1) & (rows < d.n_rows)]  # other issue slots raise in `issue`
        self._prepared, self._update_at = None, {}
        self._e_dem, self._e_k = self._e_dem[:0], self._e_k[:0]
        if rows.size and horizon_slots >= 1:
            modelled = self._modelled()
            stop = self._read_until(rows, horizon_slots, modelled)
            self._prepared = self._prepare_bases(stop)
            self._prepare_updates(rows, modelled)
        self._clock["prepare_s"] += time.perf_counter() - t0

    def _read_until(
        self, ig: IntArray, horizon_slots: int, modelled: NDArray[np.bool_]
    ) -> IntArray:
        """One past the last row of each base forecast that the issues at rows `ig` read: their
        targets, and the update windows before them (their rows' own base issues), (B,) rows;
        the base row itself where none is read or the base issue has no model."""
        b = self._base_rows
        stop = b.copy()
        own = np.searchsorted(b, ig, side="right") - 1
        ok = own >= 0
        np.maximum.at(stop, own[ok], np.minimum(ig[ok] + horizon_slots, self._data.n_rows))
        for k in range(1, self._window + 1):
            r = ig - k
            owner = np.searchsorted(b, r, side="right") - 1
            ok = (r >= 0) & (owner >= 0)
            np.maximum.at(stop, owner[ok], r[ok] + 1)
        return np.where(modelled, stop, b)

    def _prepare_bases(self, stop: IntArray) -> PreparedBases:
        """Every base forecast up to `stop` (B,): the base issues that share a model together,
        in LightGBM calls of at most `_BATCH_TRIPLES` triples."""
        b, p = self._base_rows, self._data.n_participants
        n_rows = stop - b
        chosen = np.flatnonzero(n_rows > 0)
        offset = np.full(b.shape[0], -1, dtype=np.int64)
        offset[chosen] = np.cumsum(n_rows[chosen]) - n_rows[chosen]
        total = int(n_rows[chosen].sum())
        out = PreparedBases(np.empty((total, p)), np.empty((total, p)), offset, n_rows)
        taus = np.array([self._retrain_of(j) for j in chosen.tolist()], dtype=np.int64)
        chunk = max(1, _BATCH_TRIPLES // p)
        for tau in dict.fromkeys(taus.tolist()):  # in order; a model's bases are consecutive
            group = chosen[taus == tau]
            base_row, rows = row_pairs(b[group], stop[group])
            start = int(offset[group[0]])
            models = self._models_at(tau)
            for s in range(0, rows.shape[0], chunk):
                dem, pv = self._predict(models, base_row[s : s + chunk], rows[s : s + chunk])
                out.demand_kwh[start + s : start + s + dem.shape[0]] = dem
                out.pv_kwh[start + s : start + s + dem.shape[0]] = pv
        return out

    def _prepare_updates(self, ig: IntArray, modelled: NDArray[np.bool_]) -> None:
        """The update (mean errors over the window) of every issue row in `ig` whose base issue
        has a model, from the prepared base forecasts."""
        d, prep, pre, w = self._data, self._prep, self._prepared, self._window
        assert pre is not None
        b = self._base_rows
        own = np.searchsorted(b, ig, side="right") - 1
        ig = ig[(own >= 0) & (ig >= w)]
        ig = ig[modelled[np.searchsorted(b, ig, side="right") - 1]]
        p = d.n_participants
        e_dem, e_k = np.zeros((ig.shape[0], p)), np.zeros((ig.shape[0], p))
        for s in range(0, ig.shape[0], _BATCH_GATES):
            rows = ig[s : s + _BATCH_GATES, None] - w + np.arange(w, dtype=np.int64)[None, :]
            owner = np.searchsorted(b, rows, side="right") - 1
            owner_c = np.maximum(owner, 0)
            known: NDArray[np.bool_] = np.all((owner >= 0) & modelled[owner_c], axis=1)
            at = np.where(known[:, None], pre.offset[owner_c] + rows - b[owner_c], 0)
            ed, ek = window_errors(d, prep, rows, pre.demand_kwh[at], pre.pv_kwh[at])
            e_dem[s : s + _BATCH_GATES] = np.where(known[:, None], ed, 0.0)
            e_k[s : s + _BATCH_GATES] = np.where(known[:, None], ek, 0.0)
        self._e_dem, self._e_k = e_dem, e_k
        self._update_at = {r: i for i, r in enumerate(ig.tolist())}

    # ---- issue ----------------------------------------------------------------------------

    def _recent_error(
        self, ig: int, ib: int, dem: FloatArray, pv: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Mean demand error [kWh] and PV clear-sky-index error [-] of the operational base
        forecasts over the update window before row ig, (P,) each (0 where unknown); `dem`
        and `pv` are the base forecasts of the latest base issue ib <= ig."""
        at = self._update_at.get(ig)
        if at is not None:
            return self._e_dem[at], self._e_k[at]
        p = self._data.n_participants
        lo = max(ig - self._window, 0)
        rows = np.arange(lo, ig, dtype=np.int64)
        if lo >= ib:  # the common case: one base issue covers the whole window
            return window_errors(
                self._data, self._prep, rows, dem[lo - ib : ig - ib], pv[lo - ib : ig - ib]
            )
        fc_dem = np.full((rows.size, p), np.nan)
        fc_pv = np.full((rows.size, p), np.nan)
        owner = np.searchsorted(self._base_rows, rows, side="right") - 1
        for j in np.unique(owner).tolist():
            if not self._has_model(j):
                continue
            sel = owner == j
            ib = self._base_list[j]
            dem, pv = self._base_forecast(j, int(rows[sel][-1]) + 1)
            fc_dem[sel] = dem[rows[sel] - ib]
            fc_pv[sel] = pv[rows[sel] - ib]
        if np.isnan(fc_dem[:, 0]).any():  # a base issue without a model: no update
            return np.zeros(p), np.zeros(p)
        return window_errors(self._data, self._prep, rows, fc_dem, fc_pv)

    def issue(self, issue_slot: int, first_slot: int, n_slots: int) -> Issued:
        t0 = time.perf_counter()
        d = self._data
        check_request(d, issue_slot, first_slot, n_slots)
        ig = issue_slot + d.n_history
        temp = weather_temperature(d, issue_slot, first_slot, n_slots)
        j = self._base_of(ig)
        if not self._has_model(j):
            self._fallback_issues += 1
            src = seasonal_naive_rows(d.prev_day, target_rows(d, first_slot, n_slots), ig)
            out = Issued(issue_slot, first_slot, d.demand_kwh[src], d.pv_kwh[src], temp)
            self._clock["issue_s"] += time.perf_counter() - t0
            return out
        ib = self._base_list[j]
        a = first_slot + d.n_history
        b = a + n_slots
        dem, pv = self._base_forecast(j, b)
        e_dem, e_k = self._recent_error(ig, ib, dem, pv)
        # decay of the update with lead: weight exp(−(t − g + 1)·Δt / τ), tabulated once
        w_dem = self._decay_dem[a - ig : b - ig, None]
        w_pv = self._decay_pv[a - ig : b - ig, None]
        # in place on fresh arrays: few allocations, this runs 35,000 times a simulated year
        demand = np.multiply(w_dem, e_dem)
        demand += dem[a - ib : b - ib]
        np.maximum(demand, 0.0, out=demand)
        pv_fc = np.multiply(w_pv, e_k)
        pv_fc *= self._clear_rows[a:b]
        pv_fc += pv[a - ib : b - ib]
        np.maximum(pv_fc, 0.0, out=pv_fc)
        self._clock["issue_s"] += time.perf_counter() - t0
        return Issued(issue_slot, first_slot, demand, pv_fc, temp)

    def timings(self) -> dict[str, float]:
        """Seconds by phase: features, train and predict wherever they ran; prepare_s the wall
        time of `prepare` (which includes them when prepared), issue_s of `issue` (which
        includes them for lazily computed base forecasts); the models trained, the issues that
        fell back, and the base forecasts computed (or extended) lazily."""
        trained = sum(1 for m in self._models.values() if m.demand is not None)
        return {
            **self._clock,
            "models": float(trained),
            "fallback_issues": float(self._fallback_issues),
            "lazy_predictions": float(self._lazy_predictions),
        }
