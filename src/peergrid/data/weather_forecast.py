"""Weather forecasts: an archive of forecast runs, as a weather service would deliver them.

A forecast *run* is issued at one slot and covers the slots from there on (`lead` 0 .. L − 1).
At a gate closure the EMS and the forecasters use the latest run issued at or before the gate;
a run never changes after it is issued, so a forecast made at a gate can only use what was
known then.

Time axis as in `forecast.base.ForecastData`: run slots count from the first slot of the run,
history slots are negative; arrays here are indexed by run and lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class WeatherForecasts:
    """An archive of forecast runs.

    Attributes:
        run_slot: the slot at which each run is issued, ascending, (R,) int.
        temp_out_c: forecast outdoor temperature of run r for slot run_slot[r] + lead,
            (R, L) [°C].
        ghi_w_m2: forecast global horizontal irradiance, (R, L) [W/m²].
        description: what produced the archive (a model name, or the synthetic error model
            and its calibration), for summaries.
    """

    run_slot: IntArray
    temp_out_c: FloatArray
    ghi_w_m2: FloatArray
    description: str

    @property
    def n_leads(self) -> int:
        return int(self.temp_out_c.shape[1])

    def latest_run(self, issue_slot: int) -> int:
        """Index of the latest run issued at or before `issue_slot`.

        Raises:
            ValueError: no run was issued by then.
        """
        r = int(np.searchsorted(self.run_slot, issue_slot, side="right")) - 1
        if r < 0:
            raise ValueError(f"no weather forecast run issued by slot {issue_slot}")
        return r

    def at(self, issue_slot: int, first_slot: int, n_slots: int) -> tuple[FloatArray, FloatArray]:
        """Temperature [°C] and GHI [W/m²] for slots [first_slot, first_slot + n_slots), from
        the latest run issued at or before `issue_slot`, each (n_slots,).

        Raises:
            ValueError: no run by then, or the run does not reach that far.
        """
        r = self.latest_run(issue_slot)
        lead0 = first_slot - int(self.run_slot[r])
        if lead0 < 0 or lead0 + n_slots > self.n_leads:
            raise ValueError(
                f"the weather forecast run of slot {int(self.run_slot[r])} covers leads "
                f"0..{self.n_leads - 1}; slots {first_slot}..{first_slot + n_slots - 1} need "
                f"{lead0}..{lead0 + n_slots - 1}"
            )
        return (
            self.temp_out_c[r, lead0 : lead0 + n_slots],
            self.ghi_w_m2[r, lead0 : lead0 + n_slots],
        )


class WeatherForecastParams(BaseModel):
    """The synthetic archive's schedule and error model (`synthetic_weather_forecasts`).

    The defaults are the calibration described in that function's docstring.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_hours_utc: tuple[int, ...] = Field(
        (0, 12), description="UTC hours at which runs are issued (whole hours 0..23)"
    )
    horizon_h: float = Field(
        108.0, ge=96.0, le=240.0, description="how far each run reaches [h] (at least 4 days)"
    )
    smooth_h: float = Field(
        1.0,
        ge=0.0,
        le=6.0,
        description="window of the running mean of the observed clear-sky index that the "
        "forecast scatters around [h]: a weather model does not resolve passing clouds",
    )
    ghi_sd0: float = Field(
        0.7, ge=0.0, le=3.0, description="error std of the clear-sky index at lead 0 [logit]"
    )
    ghi_sd_per_day: float = Field(
        0.25, ge=0.0, le=2.0, description="growth of that std per day of lead [logit/day]"
    )
    ghi_tau_h: float = Field(
        4.0, gt=0.0, le=96.0, description="e-folding time of the error in target time [h]"
    )
    ghi_run_corr: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="share (in amplitude) of the error common to all runs for the same "
        "target: successive runs err alike",
    )
    temp_sd0_c: float = Field(
        1.0, ge=0.0, le=10.0, description="temperature error std at lead 0 [K]"
    )
    temp_sd_per_day_c: float = Field(
        0.4, ge=0.0, le=5.0, description="growth of that std per day of lead [K/day]"
    )
    temp_tau_h: float = Field(
        12.0, gt=0.0, le=240.0, description="e-folding time of the temperature error [h]"
    )
    temp_run_corr: float = Field(
        0.7, ge=0.0, le=1.0, description="share of the temperature error common to all runs"
    )

    @field_validator("run_hours_utc")
    @classmethod
    def _hours(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("needs at least one hour")
        if any(h < 0 or h > 23 for h in v) or len(set(v)) != len(v):
            raise ValueError(f"hours must be distinct whole hours 0..23 (got {v})")
        return tuple(sorted(v))


#: The clear-sky index lives in (0, K_MAX) in the error model (logit of k / K_MAX).
K_MAX = 1.25
_K_EPS = 0.01
#: Below this clear-sky irradiance [W/m²] the clear-sky index is not resolved (dawn, dusk).
_GHI_CS_MIN_W_M2 = 1.0


def _ar1_rows(rng: np.random.Generator, n: int, phi: float) -> FloatArray:
    """A stationary AR(1) series of unit variance, length n, lag-one correlation phi."""
    e = rng.standard_normal(n)
    out = np.empty(n, dtype=np.float64)
    x = float(e[0])
    s = float(np.sqrt(1.0 - phi * phi))
    # A scalar recursion: ~10^5 rows for a year of 5-minute slots, tens of milliseconds.
    out[0] = x
    for i, ei in enumerate(e[1:].tolist(), start=1):
        x = phi * x + s * ei
        out[i] = x
    return out


def _ar1_leads(rng: np.random.Generator, n_runs: int, n_leads: int, phi: float) -> FloatArray:
    """(n_runs, n_leads) independent stationary AR(1) rows of unit variance along the leads."""
    e = rng.standard_normal((n_runs, n_leads))
    out = np.empty_like(e)
    out[:, 0] = e[:, 0]
    s = np.sqrt(1.0 - phi * phi)
    for j in range(1, n_leads):
        out[:, j] = phi * out[:, j - 1] + s * e[:, j]
    return out


def smoothed_clear_sky_index(
    ghi_w_m2: FloatArray, ghi_clearsky_w_m2: FloatArray, window: int
) -> FloatArray:
    """Clear-sky index k = Σ GHI / Σ GHI_clear over a centred window of `window` slots [-],
    (N,); 0 where the sun is down (no clear-sky irradiance in the window)."""
    if window > 1:
        kernel = np.ones(window)
        num = np.convolve(ghi_w_m2, kernel, mode="same")
        den = np.convolve(ghi_clearsky_w_m2, kernel, mode="same")
    else:
        num, den = ghi_w_m2, ghi_clearsky_w_m2
    return np.where(den > _GHI_CS_MIN_W_M2, num / np.maximum(den, _GHI_CS_MIN_W_M2), 0.0)


def synthetic_weather_forecasts(
    *,
    first_slot: int,
    dt_h: float,
    utc_hour: FloatArray,
    temp_out_c: FloatArray,
    ghi_w_m2: FloatArray,
    ghi_clearsky_w_m2: FloatArray,
    rng: np.random.Generator,
    params: WeatherForecastParams | None = None,
) -> WeatherForecasts:
    """A synthetic archive of weather-forecast runs: the observed weather plus a calibrated,
    autocorrelated error that grows with lead.

    Inputs are on the extended axis, row i ↔ slot `first_slot` + i, all (N,): `utc_hour` the
    UTC clock time of each slot's start [h], the observed `temp_out_c` [°C] and `ghi_w_m2`
    [W/m²], and the clear-sky `ghi_clearsky_w_m2` [W/m²].

    Schedule. A run is issued at the start of every slot whose UTC clock time is one of
    `params.run_hours_utc` (default 00 and 12 UTC, the main synoptic runs of global models)
    and reaches `horizon_h` ahead (default 108 h: from the 00 UTC run a day-ahead gate at 12:00
    local still sees the end of the day after next). The run is available at its issue slot
    (no delivery delay). Leads past the end of the data are NaN; no target asks for them.

    GHI error. With k the observed clear-sky index, smoothed over `smooth_h` (a weather model
    does not resolve passing clouds), a run issued at slot s forecasts for slot s + l

        k̂ = K_MAX · σ(logit(k_s / K_MAX) + sd(l) · z),   sd(l) = ghi_sd0 + ghi_sd_per_day · l_days,
        GHI_fc = k̂ · GHI_clear,

    σ the logistic function, K_MAX = 1.25. z has unit variance: z = a · c(t) + √(1 − a²) · u_s(l),
    c an AR(1) process in target time t shared by all runs (successive runs err alike for the
    same hour, `ghi_run_corr` = a) and u_s an AR(1) process along the run's own leads, both with
    e-folding time `ghi_tau_h`. The logit keeps k̂ in (0, K_MAX) without clipping: on clear or
    fully overcast days the error is small, on broken-cloud days large, as observed.

    Temperature error. Additive, T_fc = T + sd_T(l) · z_T, built the same way (its own
    processes, `temp_*` parameters); about 1.5 K at a lead of two days.

    Calibration. The defaults (clear-sky-index error 0.7 + 0.25 per day of lead in logit
    units; 1 h smoothing; e-folding 4 h; 70 % of the error shared between runs) were chosen on
    a year of ``dwd-try-2010:4`` (Potsdam, 15-min slots) so that hourly day-ahead GHI has the
    error level of raw global-model (ECMWF) forecasts at central European stations:

    - measured (benchmarks/bench_forecast.py, suburb-100-year, 2023): rRMSE of hourly GHI,
      daylight hours, RMSE / mean observed GHI, 0.43 for leads of 24–48 h (all runs), 0.35 for
      0–24 h; 0.40–0.41 for the 00 UTC run's next day; skill against 24-h clear-sky-index
      persistence about 0.4 on that next day;
    - Perez et al., "Comparison of numerical weather prediction solar irradiance forecasts in
      the US, Canada and Europe", Solar Energy 94 (2013) 305–326. Checked against the source
      text (title page and abstract, and the publisher's highlights): the best models reach a
      skill of about 50 % against persistence, and global models (ECMWF) beat mesoscale ones.
      The per-site rRMSE tables of that paper were NOT read here; the 0.4 level for German
      sites on the next day is our recollection of its European results, not a checked figure.
    - temperature: about 1.5 K RMSE on the next day (measured 1.57–1.61 K), the order of raw
      2-m temperature errors of global models at European stations in the first days; no
      verification source was checked for this number.
    """
    p = params if params is not None else WeatherForecastParams()
    n = int(ghi_w_m2.shape[0])
    for name, arr in (
        ("utc_hour", utc_hour),
        ("temp_out_c", temp_out_c),
        ("ghi_clearsky_w_m2", ghi_clearsky_w_m2),
    ):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, ghi_w_m2 ({n},)")
    minute = np.round(np.asarray(utc_hour, dtype=np.float64) * 60.0).astype(np.int64)
    run_rows = np.flatnonzero(np.isin(minute, np.asarray(p.run_hours_utc, dtype=np.int64) * 60))
    n_runs = int(run_rows.shape[0])
    n_leads = int(np.ceil(p.horizon_h / dt_h - 1e-9))
    idx = run_rows[:, None] + np.arange(n_leads, dtype=np.int64)[None, :]
    valid = idx < n
    idx_c = np.minimum(idx, n - 1)
    lead_days = np.arange(n_leads, dtype=np.float64) * dt_h / 24.0

    def error(tau_h: float, corr: float) -> FloatArray:
        phi = float(np.exp(-dt_h / tau_h))
        common = _ar1_rows(rng, n, phi)
        own = _ar1_leads(rng, n_runs, n_leads, phi)
        return np.asarray(corr * common[idx_c] + np.sqrt(1.0 - corr * corr) * own, np.float64)

    z_ghi = error(p.ghi_tau_h, p.ghi_run_corr)
    z_temp = error(p.temp_tau_h, p.temp_run_corr)

    window = max(1, round(p.smooth_h / dt_h))
    k = smoothed_clear_sky_index(ghi_w_m2, ghi_clearsky_w_m2, window)
    u = np.clip(k / K_MAX, _K_EPS, 1.0 - _K_EPS)
    logit = np.log(u / (1.0 - u))
    sd_ghi = p.ghi_sd0 + p.ghi_sd_per_day * lead_days
    k_fc = K_MAX / (1.0 + np.exp(-(logit[idx_c] + sd_ghi[None, :] * z_ghi)))
    ghi_fc = np.where(valid, k_fc * ghi_clearsky_w_m2[idx_c], np.nan)
    sd_temp = p.temp_sd0_c + p.temp_sd_per_day_c * lead_days
    temp_fc = np.where(valid, temp_out_c[idx_c] + sd_temp[None, :] * z_temp, np.nan)
    hours = ",".join(f"{h:02d}" for h in p.run_hours_utc)
    return WeatherForecasts(
        run_slot=(run_rows + first_slot).astype(np.int64),
        temp_out_c=np.asarray(temp_fc, dtype=np.float64),
        ghi_w_m2=np.asarray(ghi_fc, dtype=np.float64),
        description=(
            f"synthetic: observed weather + autocorrelated error (runs {hours} UTC, "
            f"{p.horizon_h:g} h; clear-sky-index error {p.ghi_sd0:g} + "
            f"{p.ghi_sd_per_day:g}/day logit, temperature {p.temp_sd0_c:g} + "
            f"{p.temp_sd_per_day_c:g} K/day)"
        ),
    )
