"""PV generation per slot from weather: a PVWatts-style chain built from pvlib functions.

For every slot (solar position at the slot mid-point, `grid.mid_utc`):

1. plane-of-array irradiance with the Perez 1990 transposition (albedo 0.2);
2. beam reflection losses with the physical incidence-angle model (PVWatts' air-glass
   defaults); diffuse light is taken as is;
3. cell temperature with the Faiman model (u0 = 25 W/(m²K), u1 = 6.84 W s/(m³K));
4. PVWatts DC power, temperature coefficient -0.4 %/K, times (1 - loss_frac) for system losses
   (soiling, shading, mismatch, wiring, ... ; PVWatts' default is 14 %);
5. PVWatts inverter (nominal efficiency 96 %) rated at kWp / dc_ac_ratio AC, so high DC power is
   clipped.

Energy per slot is the AC power so obtained (a slot-mean power, since the weather holds slot
means) times `dt_h`. The chain runs once per distinct (tilt, azimuth) for 1 kWp and is scaled by
each system's kWp.

Orientation convention (pvlib's): tilt from horizontal, 0 = flat, 90 = vertical; azimuth of the
direction the modules face, in degrees clockwise from north: 90 = east, 180 = south, 270 = west.
"""

from __future__ import annotations

import numpy as np
import pvlib
from numpy.typing import NDArray

from peergrid.data.weather import Weather
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]

ALBEDO = 0.2
GAMMA_PDC_PER_K = -0.004
FAIMAN_U0 = 25.0
FAIMAN_U1 = 6.84


def _check(name: str, x: FloatArray, lo: float, hi: float, hi_open: bool = False) -> None:
    bad = ~np.isfinite(x) | (x < lo) | ((x >= hi) if hi_open else (x > hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        bracket = ")" if hi_open else "]"
        raise InputError(f"pv.{name}[{i}]: must lie in [{lo}, {hi}{bracket} (got {x[i]})")


def pv_generation_kwh(
    grid: SlotGrid,
    weather: Weather,
    latitude: float,
    longitude: float,
    altitude_m: float,
    *,
    kwp: FloatArray,
    tilt_deg: FloatArray,
    azimuth_deg: FloatArray,
    loss_frac: float = 0.14,
    dc_ac_ratio: float = 1.1,
    inverter_efficiency: float = 0.96,
) -> FloatArray:
    """AC energy of P PV systems per slot [kWh], array (T, P), >= 0.

    Args:
        grid: the run's slot grid.
        weather: slot-mean weather on `grid` (`load_weather`).
        latitude, longitude: [deg], north and east positive.
        altitude_m: [m] above sea level.
        kwp: DC peak power (STC) of each system [kWp], (P,), >= 0.
        tilt_deg: module tilt from horizontal [deg], (P,), 0..90.
        azimuth_deg: direction the modules face, clockwise from north [deg], (P,), 0 <= a < 360
            (180 = south).
        loss_frac: DC system losses [-], 0..1.
        dc_ac_ratio: kWp per kW of inverter AC rating [-].
        inverter_efficiency: nominal inverter efficiency [-].
    """
    kwp = np.asarray(kwp, dtype=np.float64)
    tilt = np.asarray(tilt_deg, dtype=np.float64)
    azimuth = np.asarray(azimuth_deg, dtype=np.float64)
    if not (kwp.ndim == 1 and kwp.shape == tilt.shape == azimuth.shape):
        raise InputError(
            f"pv: kwp {kwp.shape}, tilt_deg {tilt.shape} and azimuth_deg {azimuth.shape} "
            "must be 1-D arrays of the same length"
        )
    _check("kwp", kwp, 0.0, np.inf)
    _check("tilt_deg", tilt, 0.0, 90.0)
    _check("azimuth_deg", azimuth, 0.0, 360.0, hi_open=True)
    if not 0.0 <= loss_frac < 1.0:
        raise InputError(f"pv.loss_frac: must lie in [0, 1) (got {loss_frac})")
    if weather.ghi_w_m2.shape != (grid.n_slots,):
        raise InputError(
            f"pv: weather has {weather.ghi_w_m2.shape[0]} slots, the grid {grid.n_slots}"
        )

    pos = pvlib.solarposition.get_solarposition(grid.mid_utc, latitude, longitude, altitude_m)
    # Below the horizon the weather holds no irradiance; clipping the zenith keeps pvlib's
    # formulas (which divide by cos z) finite.
    zenith = np.minimum(np.asarray(pos["apparent_zenith"], dtype=np.float64), 90.0)
    sun_azimuth = np.asarray(pos["azimuth"], dtype=np.float64)
    dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(grid.mid_utc), dtype=np.float64)
    airmass = np.asarray(
        pvlib.atmosphere.get_relative_airmass(np.minimum(zenith, 89.5)), dtype=np.float64
    )

    has_diffuse = weather.dhi_w_m2 > 0.0
    orient = np.stack([tilt, azimuth], axis=1)
    unique, inverse = np.unique(orient, axis=0, return_inverse=True)
    per_kwp = np.empty((grid.n_slots, unique.shape[0]), dtype=np.float64)
    inv_pdc0 = 1.0 / dc_ac_ratio / inverter_efficiency
    for u, (t, a) in enumerate(unique):
        poa = pvlib.irradiance.get_total_irradiance(
            t, a, zenith, sun_azimuth,
            weather.dni_w_m2, weather.ghi_w_m2, weather.dhi_w_m2,
            dni_extra=dni_extra, airmass=airmass, albedo=ALBEDO, model="perez",
        )  # fmt: skip
        aoi = pvlib.irradiance.aoi(t, a, zenith, sun_azimuth)
        direct = np.asarray(poa["poa_direct"], dtype=np.float64)
        # Perez divides by DHI: without diffuse light its sky term is 0/0, so set it to zero.
        sky = np.where(has_diffuse, np.asarray(poa["poa_sky_diffuse"], dtype=np.float64), 0.0)
        diffuse = sky + np.asarray(poa["poa_ground_diffuse"], dtype=np.float64)
        effective = np.clip(direct * pvlib.iam.physical(aoi) + diffuse, 0.0, None)
        t_cell = pvlib.temperature.faiman(
            direct + diffuse, weather.temp_air_c, weather.wind_speed_m_s, FAIMAN_U0, FAIMAN_U1
        )
        dc_kw = pvlib.pvsystem.pvwatts_dc(effective, t_cell, 1.0, GAMMA_PDC_PER_K)
        dc_kw = np.clip(np.asarray(dc_kw, dtype=np.float64) * (1.0 - loss_frac), 0.0, None)
        per_kwp[:, u] = pvlib.inverter.pvwatts(dc_kw, inv_pdc0, inverter_efficiency)
    # row-major (T, P): the engine reads one slot's row at a time (fancy indexing along axis 1
    # would hand back a column-major array, each row's values a page apart)
    out = np.ascontiguousarray(per_kwp[:, inverse.ravel()])
    out *= kwp[None, :] * grid.dt_h
    return out
