"""Synthetic weather anywhere: clear sky times a seeded stochastic cloud process.

Model (source ``"clearsky-stochastic"``):

1. **Clear sky.** Ineichen-Perez clear-sky GHI at the location on 5-minute steps (pvlib), with
   the monthly Linke turbidity from pvlib's bundled global climatology (interpolated to the day)
   and the absolute air mass at the site's pressure.
2. **Daily sky regime.** A three-state Markov chain over days: clear, mixed, overcast. Each day
   the regime persists with probability 0.55, otherwise it is redrawn from a seasonal
   distribution in which overcast days are more frequent in the local winter, the more so the
   farther from the equator (at 52° N about 45 % overcast days in January and 20 % in July).
3. **Clear-sky index.** Each day draws a mean clear-sky index k̄ from its regime (clear
   0.93 ± 0.04, mixed 0.62 ± 0.12, overcast 0.27 ± 0.09). Within the day an AR(1) process on
   5-minute steps (lag-one correlation 0.85, so fluctuations last tens of minutes) adds
   regime-dependent variability (standard deviation 0.03 / 0.25 / 0.08) around k̄; k is clipped
   to [0.03, 1.15] (short cloud-edge enhancement above clear sky is allowed).
   GHI = k · GHI_clear; DNI and DHI come from GHI with the Erbs decomposition.
4. **Air temperature.** Annual mean 27 − 0.0063·lat² − 0.0065·altitude [°C], a seasonal
   sinusoid of amplitude max(1, 0.2·|lat| − 1) K with its minimum on 20 January (20 July in the
   southern hemisphere), a diurnal sinusoid peaking at 15:00 local solar time with an amplitude
   that depends on the regime (clear 6 K, mixed 4 K, overcast 2 K), and a daily anomaly that is
   AR(1) across days (correlation 0.7, standard deviation 2.5 K).
5. **Wind speed.** A daily mean that is log-normal and AR(1) across days (median 3.2 m/s, 0.4 in
   log space, correlation 0.6), stronger in the afternoon (±20 %), with small 5-minute noise.

The parameters are plausible mid-latitude values, not a fit to a particular station: the model
is for studying places without a weather file, and its realism is that of a stochastic weather
generator, not of a measured year.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import NDArray

from peergrid.data._fine import STEPS_PER_HOUR, FineAxis, SunOnAxis
from peergrid.data._typical_year import FineWeather
from peergrid.timegrid import epoch_ns

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_STEPS_PER_DAY = 24 * STEPS_PER_HOUR
_REGIME_PERSISTENCE = 0.55
_K_MEAN = np.array([0.93, 0.62, 0.27])
_K_MEAN_SD = np.array([0.04, 0.12, 0.09])
_K_FLUCT_SD = np.array([0.03, 0.25, 0.08])
_AR_STEP = 0.85
_DIURNAL_AMPLITUDE_K = np.array([6.0, 4.0, 2.0])


def _ar1(rng: np.random.Generator, n: int, phi: float) -> FloatArray:
    """Stationary AR(1) series of unit variance, length n."""
    e = rng.standard_normal(n) * np.sqrt(1.0 - phi * phi)
    out = np.empty(n, dtype=np.float64)
    x = float(rng.standard_normal())
    # A scalar recursion: n is at most ~10^5 steps a year, a few tens of milliseconds.
    for i, ei in enumerate(e.tolist()):
        x = phi * x + ei
        out[i] = x
    return out


def _season(doy: FloatArray, latitude: float) -> FloatArray:
    """+1 in the middle of the local winter (20 Jan north, 20 Jul south), -1 in summer."""
    season = np.cos(2.0 * np.pi * (doy - 20.0) / 365.25)
    return np.asarray(-season if latitude < 0 else season, dtype=np.float64)


def _regimes(rng: np.random.Generator, doy: FloatArray, latitude: float) -> IntArray:
    """Daily sky regime 0 clear / 1 mixed / 2 overcast, a Markov chain over days."""
    s = _season(doy, latitude) * min(abs(latitude) / 50.0, 1.0)
    p_clear = 0.30 - 0.12 * s
    p_over = 0.325 + 0.125 * s
    n = int(doy.shape[0])
    u_keep = rng.random(n)
    u_draw = rng.random(n)
    drawn = np.where(u_draw < p_clear, 0, np.where(u_draw < 1.0 - p_over, 1, 2))
    out = np.empty(n, dtype=np.int64)
    state = int(drawn[0])
    for d in range(n):
        if u_keep[d] >= _REGIME_PERSISTENCE:
            state = int(drawn[d])
        out[d] = state
    return out


def clear_sky_on_axis(
    axis: FineAxis, sun: SunOnAxis, *, latitude: float, longitude: float, altitude_m: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Clear-sky GHI, DNI and DHI on the fine axis [W/m²]: pvlib's Ineichen–Perez model with
    the bundled monthly Linke turbidity climatology; zero with the sun below the horizon."""
    times = axis.mid_utc()
    pressure = float(pvlib.atmosphere.alt2pres(altitude_m))
    # pvlib's formulas divide by cos(zenith): evaluate them with the sun held just above the
    # horizon and zero the result where it is below.
    zen_up = np.minimum(sun.apparent_zenith_deg, 89.5)
    am_rel = pvlib.atmosphere.get_relative_airmass(zen_up)
    am_abs = np.asarray(pvlib.atmosphere.get_absolute_airmass(am_rel, pressure), np.float64)
    linke = np.asarray(
        pvlib.clearsky.lookup_linke_turbidity(times, latitude, longitude), dtype=np.float64
    )
    cs = pvlib.clearsky.ineichen(
        zen_up, am_abs, linke, altitude=altitude_m, dni_extra=sun.dni_extra_w_m2
    )
    up = sun.cos_zenith > 0.0

    def part(name: str) -> FloatArray:
        return np.clip(np.where(up, np.asarray(cs[name], dtype=np.float64), 0.0), 0.0, None)

    return part("ghi"), part("dni"), part("dhi")


def synthetic_on_axis(
    axis: FineAxis,
    sun: SunOnAxis,
    *,
    latitude: float,
    longitude: float,
    altitude_m: float,
    rng: np.random.Generator,
) -> FineWeather:
    """The synthetic weather model (module docstring) on the fine axis."""
    times = axis.mid_utc()
    zen_up = np.minimum(sun.apparent_zenith_deg, 89.5)
    ghi_clear, _, _ = clear_sky_on_axis(
        axis, sun, latitude=latitude, longitude=longitude, altitude_m=altitude_m
    )

    # Local solar days (so that a day's regime covers its whole daylight).
    ns = epoch_ns(times)
    solar_ns = ns + int(longitude / 15.0 * 3_600e9)
    day_ns = 86_400 * 10**9
    solar_day = solar_ns // day_ns
    day_idx = solar_day - solar_day[0]
    n_days = int(day_idx[-1]) + 1
    days = (int(solar_day[0]) + np.arange(n_days, dtype=np.int64)).astype("datetime64[D]")
    doy_days = np.asarray(pd.DatetimeIndex(days).dayofyear, dtype=np.float64)
    regime = _regimes(rng, doy_days, latitude)
    k_day = np.clip(_K_MEAN[regime] + _K_MEAN_SD[regime] * rng.standard_normal(n_days), 0.05, 1.0)
    fluct = _ar1(rng, axis.n_steps, _AR_STEP)
    k = np.clip(k_day[day_idx] + _K_FLUCT_SD[regime][day_idx] * fluct, 0.03, 1.15)
    ghi = k * ghi_clear
    doy_steps = np.asarray(times.dayofyear, dtype=np.float64)
    erbs = pvlib.irradiance.erbs(ghi, zen_up, doy_steps)
    dni = np.clip(np.asarray(erbs["dni"], dtype=np.float64), 0.0, None)
    dni = np.minimum(np.where(sun.cos_zenith > 0.0, dni, 0.0), sun.dni_extra_w_m2)
    dhi = np.clip(ghi - dni * sun.cos_zenith, 0.0, ghi)

    # Temperature.
    t_mean = 27.0 - 0.0063 * latitude**2 - 0.0065 * altitude_m
    amp_season = max(1.0, 0.2 * abs(latitude) - 1.0)
    season = _season(doy_steps, latitude)
    solar_hour = (solar_ns % day_ns) / 3_600e9
    diurnal = np.cos(2.0 * np.pi * (solar_hour - 15.0) / 24.0)
    anomaly = 2.5 * _ar1(rng, n_days, 0.7)
    temp = (
        t_mean
        - amp_season * season
        + _DIURNAL_AMPLITUDE_K[regime][day_idx] * diurnal
        + anomaly[day_idx]
    )

    # Wind.
    wind_day = 3.2 * np.exp(0.4 * _ar1(rng, n_days, 0.6))
    afternoon = 1.0 + 0.2 * np.cos(2.0 * np.pi * (solar_hour - 15.0) / 24.0)
    wind = np.clip(
        wind_day[day_idx] * afternoon * (1.0 + 0.1 * rng.standard_normal(axis.n_steps)), 0.0, None
    )
    return FineWeather(
        ghi_w_m2=np.asarray(ghi, dtype=np.float64),
        dni_w_m2=np.asarray(dni, dtype=np.float64),
        dhi_w_m2=np.asarray(dhi, dtype=np.float64),
        temp_air_c=np.asarray(temp, dtype=np.float64),
        wind_speed_m_s=np.asarray(wind, dtype=np.float64),
    )
