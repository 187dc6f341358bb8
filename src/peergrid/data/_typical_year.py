"""Typical-year weather files and their mapping onto a run's slot grid.

A typical (test reference) year has 8760 hourly rows in the station's fixed standard time (no
daylight saving). Row r covers [r, r + 1) hours after 1 January 00:00 of a 365-day year:
irradiances are means over that hour; air temperature and wind speed are read as the values at
the end of the hour (all three files are "hour-ending").

Onto a run's dates the rows are mapped by (month, day, hour) in the file's standard time, so a
run in any year sees the same weather on the same calendar day (29 February takes 28 February).
The run's UTC instants are converted to the file's fixed offset first, so a run in a daylight-
saving time zone gets the weather of the right hour.

Hourly means become slot means through 5-minute steps: an hour's irradiance is spread over its
steps in proportion to the cosine of the apparent solar zenith at the run's location, which
conserves each hour's (and so each day's) energy, puts nothing where the sun is below the horizon
and gives a constant beam normal irradiance within the hour. An hour with irradiance in the file
but no sun at the location (time-stamp or twilight effects at sunrise and sunset) hands its
energy to the neighbouring hour with sun. Temperature and wind are interpolated linearly between
the hour ends.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import NDArray

from peergrid.data._fine import STEPS_PER_HOUR, FineAxis, SunOnAxis

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

HOURS_PER_YEAR = 8760
_CUM_DAYS = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class YearTable:
    """One typical year, 8760 rows in the file's fixed standard time.

    Attributes:
        ghi_w_m2: global horizontal irradiance, hour mean [W/m²].
        dhi_w_m2: diffuse horizontal irradiance, hour mean [W/m²].
        dni_w_m2: direct normal irradiance, hour mean [W/m²]; None when the file gives the direct
            irradiance on the horizontal plane only (DWD), then DNI is derived as B / cos(zenith).
        temp_air_c: air temperature at the end of the hour [°C].
        wind_speed_m_s: wind speed at the end of the hour [m/s].
        utc_offset_h: the file's fixed offset from UTC [h].
    """

    ghi_w_m2: FloatArray
    dhi_w_m2: FloatArray
    dni_w_m2: FloatArray | None
    temp_air_c: FloatArray
    wind_speed_m_s: FloatArray
    utc_offset_h: int


def row_of(month: IntArray, day: IntArray, hour: IntArray) -> IntArray:
    """Row of a 365-day year for (month 1..12, day 1..31, hour 0..23); 29 Feb takes 28 Feb."""
    day = np.where((month == 2) & (day == 29), 28, day)
    return np.asarray((_CUM_DAYS[month - 1] + day - 1) * 24 + hour, dtype=np.int64)


def _table_from_rows(
    rows: IntArray, values: dict[str, FloatArray], utc_offset_h: int, source: str
) -> YearTable:
    order = np.argsort(rows)
    if not np.array_equal(rows[order], np.arange(HOURS_PER_YEAR)):
        raise RuntimeError(f"{source}: expected one row for each of the {HOURS_PER_YEAR} hours")
    cols = {k: np.ascontiguousarray(v[order], dtype=np.float64) for k, v in values.items()}
    dni = cols.get("dni")
    return YearTable(
        ghi_w_m2=np.clip(cols["ghi"], 0.0, None),
        dhi_w_m2=np.clip(np.minimum(cols["dhi"], cols["ghi"]), 0.0, None),
        dni_w_m2=None if dni is None else np.clip(dni, 0.0, None),
        temp_air_c=cols["temp"],
        wind_speed_m_s=np.clip(cols["wind"], 0.0, None),
        utc_offset_h=utc_offset_h,
    )


# ---------------------------------------------------------------------------------------------
# DWD test reference years 2010 (shipped with demandlib)


def dwd_try_2010_path(region: int) -> Path:
    """Path of the DWD TRY 2010 file of climate region `region` (1..15) inside demandlib."""
    res = importlib.resources.files("demandlib").joinpath(
        "vdi", "resources_weather", f"TRY2010_{region:02d}_Jahr.dat"
    )
    return Path(str(res))


@dataclass(frozen=True)
class DwdHeader:
    """Station data from a DWD TRY 2010 file header."""

    region_name: str
    station: str
    latitude: float
    longitude: float
    altitude_m: float


_LAGE = re.compile(r"Lage:\s*(\d+)°(\d+)'([NS]).*?(\d+)°(\d+)'([OWE]).*?(-?\d+)\s*Meter")


def read_dwd_header(path: Path) -> DwdHeader:
    """Region name, station and its position from the first lines of a TRY 2010 file."""
    lines = path.read_text(encoding="utf-8").splitlines()[:3]
    region_name = lines[0][8:].split("(")[0].strip()
    station = lines[1].split("Station:")[1].split("WMO")[0].strip()
    m = _LAGE.search(lines[2])
    if m is None:
        raise RuntimeError(f"{path}: cannot read the station position from {lines[2]!r}")
    lat = (int(m[1]) + int(m[2]) / 60.0) * (1 if m[3] == "N" else -1)
    lon = (int(m[4]) + int(m[5]) / 60.0) * (-1 if m[6] == "W" else 1)
    return DwdHeader(region_name, station, lat, lon, float(m[7]))


def read_dwd_try_2010(region: int) -> YearTable:
    """Read a DWD TRY 2010 file (format documented in its header).

    Columns used: MM month, DD day, HH hour 1..24 (MEZ = UTC+1, hour-ending), WG wind speed
    10 m [m/s], t air temperature 2 m [°C], B direct irradiance on the horizontal plane [W/m²],
    D diffuse horizontal irradiance [W/m²]. GHI = B + D. DNI is left to the mapping (B/cos z).
    """
    path = dwd_try_2010_path(region)
    text = path.read_text(encoding="utf-8")
    body = text.split("***", 1)[1]
    data = np.loadtxt(body.splitlines()[1:], dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 19:
        raise RuntimeError(f"{path}: unexpected layout {data.shape}")
    month = data[:, 2].astype(np.int64)
    day = data[:, 3].astype(np.int64)
    hour = data[:, 4].astype(np.int64) - 1
    beam_h = np.clip(data[:, 13], 0.0, None)
    diffuse = np.clip(data[:, 14], 0.0, None)
    return _table_from_rows(
        row_of(month, day, hour),
        {
            "ghi": beam_h + diffuse,
            "dhi": diffuse,
            "temp": data[:, 8],
            "wind": data[:, 7],
        },
        utc_offset_h=1,
        source=str(path),
    )


# ---------------------------------------------------------------------------------------------
# pvlib's bundled US typical years


def pvlib_data_path(name: str) -> Path:
    """Path of a data file bundled with pvlib."""
    return Path(str(importlib.resources.files("pvlib").joinpath("data", name)))


def read_pvlib_tmy3(name: str) -> YearTable:
    """Read a TMY3 file bundled with pvlib (hour-ending local standard time)."""
    df, meta = pvlib.iotools.read_tmy3(pvlib_data_path(name), map_variables=True)
    date = df["Date (MM/DD/YYYY)"].astype(str).str.split("/", expand=True)
    month = date[0].astype(np.int64).to_numpy()
    day = date[1].astype(np.int64).to_numpy()
    hour = df["Time (HH:MM)"].astype(str).str.split(":").str[0].astype(np.int64).to_numpy() - 1
    return _table_from_rows(
        row_of(month, day, hour),
        {
            "ghi": df["ghi"].to_numpy(np.float64),
            "dni": df["dni"].to_numpy(np.float64),
            "dhi": df["dhi"].to_numpy(np.float64),
            "temp": df["temp_air"].to_numpy(np.float64),
            "wind": df["wind_speed"].to_numpy(np.float64),
        },
        utc_offset_h=round(float(meta["TZ"])),
        source=name,
    )


def read_pvlib_tm2(name: str) -> YearTable:
    """Read a TMY2 file bundled with pvlib (hour-ending local standard time; temperature and wind
    speed in tenths of °C and m/s)."""
    df, meta = pvlib.iotools.read_tmy2(str(pvlib_data_path(name)))
    return _table_from_rows(
        row_of(
            df["month"].to_numpy(np.int64),
            df["day"].to_numpy(np.int64),
            df["hour"].to_numpy(np.int64) - 1,
        ),
        {
            "ghi": df["GHI"].to_numpy(np.float64),
            "dni": df["DNI"].to_numpy(np.float64),
            "dhi": df["DHI"].to_numpy(np.float64),
            "temp": df["DryBulb"].to_numpy(np.float64) / 10.0,
            "wind": df["Wspd"].to_numpy(np.float64) / 10.0,
        },
        utc_offset_h=round(float(meta["TZ"])),
        source=name,
    )


# ---------------------------------------------------------------------------------------------
# hour means -> 5-minute steps


def spread_hour_means(hour_mean: FloatArray, weight: FloatArray) -> FloatArray:
    """Spread hour means over the hour's steps in proportion to `weight`, conserving energy.

    Args:
        hour_mean: mean of each hour, (H,), >= 0 [any unit, e.g. W/m²].
        weight: non-negative weight of each step, (H * STEPS_PER_HOUR,), e.g. cos(zenith).

    Returns:
        Step values (H * STEPS_PER_HOUR,), zero where `weight` is zero, with the mean over each
        hour equal to `hour_mean` except for hours without weight: their energy goes to the next
        hour if that has weight, else to the previous one if that has weight, else it is dropped
        (a whole dark hour between two dark hours carries no sunlight to place).
    """
    n_hours = hour_mean.shape[0]
    w = weight.reshape(n_hours, STEPS_PER_HOUR)
    w_mean = w.mean(axis=1)
    lit = w_mean > 0.0
    h = hour_mean.astype(np.float64, copy=True)
    dark = np.flatnonzero(~lit & (h > 0.0))
    if dark.size:
        nxt = np.minimum(dark + 1, n_hours - 1)
        prv = np.maximum(dark - 1, 0)
        to_next = (dark + 1 < n_hours) & lit[nxt]
        to_prev = ~to_next & (dark > 0) & lit[prv]
        np.add.at(h, nxt[to_next], h[dark[to_next]])
        np.add.at(h, prv[to_prev], h[dark[to_prev]])
        h[dark] = 0.0
    scale = np.divide(h, w_mean, out=np.zeros_like(h), where=lit)
    return np.asarray((w * scale[:, None]).ravel(), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class FineWeather:
    """Weather on the fine axis (5-minute steps)."""

    ghi_w_m2: FloatArray
    dni_w_m2: FloatArray
    dhi_w_m2: FloatArray
    temp_air_c: FloatArray
    wind_speed_m_s: FloatArray


def year_table_on_axis(table: YearTable, axis: FineAxis, sun: SunOnAxis) -> FineWeather:
    """Map a typical year onto the fine axis of a run (see the module docstring)."""
    # Rows for each UTC hour of the axis and for the hour before it (for the interpolation of
    # point values, which sit at hour ends).
    starts = axis.hour_starts_utc(extra_before=1) + pd.Timedelta(hours=table.utc_offset_h)
    rows = row_of(
        np.asarray(starts.month, dtype=np.int64),
        np.asarray(starts.day, dtype=np.int64),
        np.asarray(starts.hour, dtype=np.int64),
    )
    cur, prev = rows[1:], rows[:-1]
    cosz = sun.cos_zenith
    lit_step = cosz > 0.0

    ghi = spread_hour_means(table.ghi_w_m2[cur], cosz)
    dhi = np.minimum(spread_hour_means(table.dhi_w_m2[cur], cosz), ghi)
    if table.dni_w_m2 is None:
        beam_h = ghi - dhi
        dni = np.divide(beam_h, cosz, out=np.zeros_like(beam_h), where=lit_step)
    else:
        dni = np.where(lit_step, np.repeat(table.dni_w_m2[cur], STEPS_PER_HOUR), 0.0)
    # Near the horizon B / cos z is ill-conditioned; the beam cannot exceed its value above the
    # atmosphere.
    dni = np.minimum(dni, sun.dni_extra_w_m2)

    frac = (np.arange(STEPS_PER_HOUR, dtype=np.float64) + 0.5) / STEPS_PER_HOUR

    def interp(x: FloatArray) -> FloatArray:
        a, b = x[prev], x[cur]
        return np.asarray((a[:, None] + (b - a)[:, None] * frac[None, :]).ravel(), np.float64)

    return FineWeather(
        ghi_w_m2=ghi,
        dni_w_m2=dni,
        dhi_w_m2=dhi,
        temp_air_c=interp(table.temp_air_c),
        wind_speed_m_s=interp(table.wind_speed_m_s),
    )
