"""Offline weather on the slot grid: typical years shipped inside packages, or synthetic weather.

Sources (nothing is downloaded):

* ``"dwd-try-2010:N"``, N = 1..15 (also written with two digits, ``"dwd-try-2010:04"``): the
  German Weather Service's test reference years 2010 (mean year of 1988-2007) for the 15 German
  climate regions, as shipped with demandlib. Hourly, MEZ (UTC+1), hour-ending; direct and
  diffuse horizontal irradiance, 2 m air temperature, 10 m wind speed. Region 4 (Potsdam) is the
  default for Europe.
* ``"tmy3-greensboro"``, ``"tmy3-sand-point"``, ``"tm2-miami"``: the US typical meteorological
  years bundled with pvlib (Greensboro NC, Sand Point AK, Miami FL); GHI, DNI, DHI, temperature,
  wind speed; hourly, local standard time, hour-ending.
* ``"clearsky-stochastic"``: clear sky at the given location times a seeded stochastic cloud
  process, with synthetic temperature and wind; see `peergrid.data._synthetic_weather`.

Typical years are mapped onto the run's dates by (month, day, hour) in the file's own standard
time (29 February takes 28 February) after converting the run's UTC instants to that fixed
offset. Irradiance is an hour mean in the files; it is spread over 5-minute steps in proportion
to cos(apparent solar zenith) at the run's location, which keeps every hour's energy, and the
steps are averaged onto the slots. So slot values are slot means, nothing shines while the sun
is below the horizon, and daily irradiation equals the file's. Temperature and wind are
interpolated linearly between the file's hour ends. Details in `peergrid.data._typical_year`.

The data are used as if measured at the (latitude, longitude) passed in: for a site far from
the station the sun rises at other times, and an hour that has light in the file but no sun at
the site gives its energy to the neighbouring hour. `weather_site` gives the station itself so a
scenario can default its location to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.data._fine import FineAxis, fine_axis, sun_on_axis
from peergrid.data._synthetic_weather import clear_sky_on_axis, synthetic_on_axis
from peergrid.data._typical_year import (
    FineWeather,
    YearTable,
    read_dwd_try_2010,
    read_pvlib_tm2,
    read_pvlib_tmy3,
    year_table_on_axis,
)
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Weather:
    """Weather on the slot grid; every array has length `n_slots` and holds slot means.

    Attributes:
        ghi_w_m2: global horizontal irradiance [W/m²].
        dni_w_m2: direct normal irradiance [W/m²].
        dhi_w_m2: diffuse horizontal irradiance [W/m²].
        temp_air_c: air temperature at 2 m [°C].
        wind_speed_m_s: wind speed at 10 m [m/s].
        source: name of the weather source.
    """

    ghi_w_m2: FloatArray
    dni_w_m2: FloatArray
    dhi_w_m2: FloatArray
    temp_air_c: FloatArray
    wind_speed_m_s: FloatArray
    source: str


@dataclass(frozen=True)
class Site:
    """Where a weather data set was measured.

    Attributes:
        name: station name.
        latitude: [deg], north positive.
        longitude: [deg], east positive.
        altitude_m: height above sea level [m].
        timezone: IANA time zone of the place (a default for a scenario placed there).
        utc_offset_h: fixed offset of the file's time stamps from UTC [h] (standard time).
    """

    name: str
    latitude: float
    longitude: float
    altitude_m: float
    timezone: str
    utc_offset_h: int


@dataclass(frozen=True)
class WeatherSource:
    """One offline weather source: its name, a one-line description and its site (if any)."""

    name: str
    description: str
    site: Site | None


def _dwd(
    region: int, area: str, station: str, position: tuple[float, float, float]
) -> WeatherSource:
    lat, lon, alt = position
    return WeatherSource(
        name=f"dwd-try-2010:{region}",
        description=f"DWD test reference year 2010, region {region} {area} (station {station})",
        site=Site(station, lat, lon, alt, "Europe/Berlin", 1),
    )


def _dm(deg: int, minutes: int) -> float:
    return deg + minutes / 60.0


# Station positions as printed in the file headers (degrees and minutes), checked by a test.
WEATHER_SOURCES: tuple[WeatherSource, ...] = (
    _dwd(1, "North Sea coast", "Bremerhaven", (_dm(53, 32), _dm(8, 35), 7.0)),
    _dwd(2, "Baltic Sea coast", "Rostock", (_dm(54, 11), _dm(12, 5), 4.0)),
    _dwd(3, "north-west German lowlands", "Hamburg", (_dm(53, 38), _dm(10, 0), 13.0)),
    _dwd(4, "north-east German lowlands", "Potsdam", (_dm(52, 23), _dm(13, 4), 81.0)),
    _dwd(5, "Lower Rhine and Westphalian bight", "Essen", (_dm(51, 24), _dm(6, 58), 152.0)),
    _dwd(6, "northern and western uplands, edges", "Bad Marienberg",
         (_dm(50, 40), _dm(7, 58), 547.0)),
    _dwd(7, "northern and western uplands, centre", "Kassel", (_dm(51, 18), _dm(9, 27), 231.0)),
    _dwd(8, "Upper Harz and Black Forest", "Braunlage", (_dm(51, 44), _dm(10, 36), 607.0)),
    _dwd(9, "Thuringian basin and Saxon hills", "Chemnitz", (_dm(50, 48), _dm(12, 52), 418.0)),
    _dwd(10, "south-eastern uplands up to 1000 m", "Hof", (_dm(50, 19), _dm(11, 53), 567.0)),
    _dwd(11, "Ore Mountains, Bohemian and Black Forest above 1000 m", "Fichtelberg",
         (_dm(50, 26), _dm(12, 57), 1213.0)),
    _dwd(12, "Upper Rhine valley and lower Neckar", "Mannheim", (_dm(49, 31), _dm(8, 33), 96.0)),
    _dwd(13, "Swabian-Franconian scarplands and Alpine foreland", "Muehldorf",
         (_dm(48, 17), _dm(12, 30), 405.0)),
    _dwd(14, "Swabian Jura and Baar", "Stoetten", (_dm(48, 40), _dm(9, 52), 734.0)),
    _dwd(15, "Alpine fringe and valleys", "Garmisch-Partenkirchen",
         (_dm(47, 29), _dm(11, 4), 719.0)),
    WeatherSource(
        "tmy3-greensboro",
        "US TMY3 Greensboro NC (pvlib's bundled 723170TYA.CSV)",
        Site("Greensboro Piedmont Triad Intl", 36.1, -79.95, 273.0, "America/New_York", -5),
    ),
    WeatherSource(
        "tmy3-sand-point",
        "US TMY3 Sand Point AK (pvlib's bundled 703165TY.csv)",
        Site("Sand Point", 55.317, -160.517, 7.0, "America/Anchorage", -9),
    ),
    WeatherSource(
        "tm2-miami",
        "US TMY2 Miami FL (pvlib's bundled 12839.tm2)",
        Site("Miami", 25.8, -80.26666666666667, 2.0, "America/New_York", -5),
    ),
    WeatherSource(
        "clearsky-stochastic",
        "synthetic: Ineichen clear sky at the location x seeded Markov/AR(1) clouds, "
        "synthetic temperature and wind",
        None,
    ),
)  # fmt: skip

DEFAULT_WEATHER_SOURCE = "dwd-try-2010:4"

_DWD = re.compile(r"^dwd-try-2010:(\d{1,2})$")
_BY_NAME = {s.name: s for s in WEATHER_SOURCES}


def _canonical(source: str) -> str:
    m = _DWD.match(source)
    if m is not None and 1 <= int(m[1]) <= 15:
        return f"dwd-try-2010:{int(m[1])}"
    if source in _BY_NAME:
        return source
    names = ", ".join(s.name for s in WEATHER_SOURCES if not s.name.startswith("dwd"))
    raise InputError(
        f"location.weather: unknown weather source {source!r}; choose dwd-try-2010:1 .. "
        f"dwd-try-2010:15 or one of {names}"
    )


def weather_source(source: str) -> WeatherSource:
    """The source called `source` (raises InputError for an unknown name)."""
    return _BY_NAME[_canonical(source)]


def weather_site(source: str) -> Site | None:
    """The site where `source` was measured, or None for synthetic weather."""
    return weather_source(source).site


def _year_table(name: str) -> YearTable:
    if name.startswith("dwd-try-2010:"):
        return read_dwd_try_2010(int(name.split(":")[1]))
    if name == "tmy3-greensboro":
        return read_pvlib_tmy3("723170TYA.CSV")
    if name == "tmy3-sand-point":
        return read_pvlib_tmy3("703165TY.csv")
    if name == "tm2-miami":
        return read_pvlib_tm2("12839.tm2")
    raise AssertionError(name)  # pragma: no cover - names are checked by _canonical


def _on_slots(axis: FineAxis, fine: FineWeather, name: str) -> Weather:
    return Weather(
        ghi_w_m2=axis.to_slots(fine.ghi_w_m2),
        dni_w_m2=axis.to_slots(fine.dni_w_m2),
        dhi_w_m2=axis.to_slots(fine.dhi_w_m2),
        temp_air_c=axis.to_slots(fine.temp_air_c),
        wind_speed_m_s=axis.to_slots(fine.wind_speed_m_s),
        source=name,
    )


def load_weather(
    grid: SlotGrid,
    source: str,
    latitude: float,
    longitude: float,
    altitude_m: float,
    seed: int,
) -> Weather:
    """Weather for a run, as slot means on `grid`.

    Args:
        grid: the run's slot grid.
        source: a name from `WEATHER_SOURCES` (see the module docstring).
        latitude: [deg], north positive, -90..90.
        longitude: [deg], east positive, -180..180.
        altitude_m: height above sea level [m].
        seed: seed of the synthetic source; typical years ignore it (they are deterministic).
    """
    name = _canonical(source)
    if not -90.0 <= latitude <= 90.0:
        raise InputError(f"location.latitude: must lie in [-90, 90] (got {latitude})")
    if not -180.0 <= longitude <= 180.0:
        raise InputError(f"location.longitude: must lie in [-180, 180] (got {longitude})")
    if not -500.0 <= altitude_m <= 9000.0:
        raise InputError(f"location.altitude_m: must lie in [-500, 9000] (got {altitude_m})")
    axis = fine_axis(grid)
    sun = sun_on_axis(axis, latitude, longitude, altitude_m)
    if name == "clearsky-stochastic":
        fine = synthetic_on_axis(
            axis,
            sun,
            latitude=latitude,
            longitude=longitude,
            altitude_m=altitude_m,
            rng=np.random.default_rng(seed),
        )
    else:
        fine = year_table_on_axis(_year_table(name), axis, sun)
    return _on_slots(axis, fine, name)


#: Air temperature and wind of `clear_sky_weather` [°C], [m/s]: fixed, so that clear-sky PV is
#: known ahead of time (it normalises forecasts; the realised temperature would leak the future).
CLEAR_SKY_TEMP_C = 20.0
CLEAR_SKY_WIND_M_S = 1.0


def clear_sky_weather(
    grid: SlotGrid, latitude: float, longitude: float, altitude_m: float
) -> Weather:
    """Cloudless weather on `grid` (pvlib Ineichen–Perez with the Linke turbidity climatology),
    slot means; temperature and wind are the constants above. Known for any time in advance,
    so forecasters may use it for the future: `pv_generation_kwh` on it is each array's
    clear-sky generation."""
    axis = fine_axis(grid)
    sun = sun_on_axis(axis, latitude, longitude, altitude_m)
    ghi, dni, dhi = clear_sky_on_axis(
        axis, sun, latitude=latitude, longitude=longitude, altitude_m=altitude_m
    )
    return Weather(
        ghi_w_m2=axis.to_slots(ghi),
        dni_w_m2=axis.to_slots(dni),
        dhi_w_m2=axis.to_slots(dhi),
        temp_air_c=np.full(grid.n_slots, CLEAR_SKY_TEMP_C),
        wind_speed_m_s=np.full(grid.n_slots, CLEAR_SKY_WIND_M_S),
        source="clear-sky",
    )
