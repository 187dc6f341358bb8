"""Offline weather: sources, mapping onto the grid, energy conservation, synthetic weather."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pvlib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.data._fine import STEPS_PER_HOUR
from peergrid.data._typical_year import (
    dwd_try_2010_path,
    read_dwd_header,
    read_dwd_try_2010,
    read_pvlib_tm2,
    read_pvlib_tmy3,
    spread_hour_means,
)
from peergrid.data.weather import (
    DEFAULT_WEATHER_SOURCE,
    WEATHER_SOURCES,
    Weather,
    load_weather,
    weather_site,
    weather_source,
)
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid, make_grid

TYPICAL = ["dwd-try-2010:4", "tmy3-greensboro", "tmy3-sand-point", "tm2-miami"]


def _at_site(grid: SlotGrid, source: str, seed: int = 0) -> Weather:
    site = weather_site(source) or weather_site(DEFAULT_WEATHER_SOURCE)
    assert site is not None
    return load_weather(grid, source, site.latitude, site.longitude, site.altitude_m, seed)


def _elevation(times: pd.DatetimeIndex, lat: float, lon: float) -> np.ndarray:
    pos = pvlib.solarposition.ephemeris(times, lat, lon)
    return np.asarray(pos["apparent_elevation"], dtype=np.float64)


# --- the source registry ---------------------------------------------------------------------


def test_registry_lists_every_source_with_description() -> None:
    names = [s.name for s in WEATHER_SOURCES]
    assert names[:15] == [f"dwd-try-2010:{i}" for i in range(1, 16)]
    assert {"tmy3-greensboro", "tmy3-sand-point", "tm2-miami", "clearsky-stochastic"} <= set(names)
    assert len(set(names)) == len(names)
    assert all(s.description for s in WEATHER_SOURCES)
    assert weather_site("clearsky-stochastic") is None
    assert DEFAULT_WEATHER_SOURCE == "dwd-try-2010:4"


@pytest.mark.parametrize("region", range(1, 16))
def test_dwd_sites_match_the_file_headers(region: int) -> None:
    header = read_dwd_header(dwd_try_2010_path(region))
    site = weather_site(f"dwd-try-2010:{region}")
    assert site is not None
    assert site.name == header.station
    assert site.latitude == pytest.approx(header.latitude, abs=1e-9)
    assert site.longitude == pytest.approx(header.longitude, abs=1e-9)
    assert site.altitude_m == header.altitude_m
    assert (site.timezone, site.utc_offset_h) == ("Europe/Berlin", 1)


@pytest.mark.parametrize(
    ("source", "fname", "reader"),
    [
        ("tmy3-greensboro", "723170TYA.CSV", "tmy3"),
        ("tmy3-sand-point", "703165TY.csv", "tmy3"),
        ("tm2-miami", "12839.tm2", "tm2"),
    ],
)
def test_us_sites_match_pvlib_metadata(source: str, fname: str, reader: str) -> None:
    from peergrid.data._typical_year import pvlib_data_path

    path = pvlib_data_path(fname)
    if reader == "tmy3":
        _, meta = pvlib.iotools.read_tmy3(path, map_variables=True)
    else:
        _, meta = pvlib.iotools.read_tmy2(str(path))
    site = weather_site(source)
    assert site is not None
    assert (site.latitude, site.longitude, site.altitude_m) == pytest.approx(
        (meta["latitude"], meta["longitude"], meta["altitude"])
    )
    assert site.utc_offset_h == meta["TZ"]


def test_two_digit_region_is_accepted_and_bad_names_are_rejected() -> None:
    assert weather_source("dwd-try-2010:04").name == "dwd-try-2010:4"
    for bad in ("dwd-try-2010:0", "dwd-try-2010:16", "dwd-try-2010:", "tmy3-nowhere", ""):
        with pytest.raises(InputError, match="unknown weather source"):
            weather_source(bad)


def test_location_out_of_range_is_an_input_error() -> None:
    grid = make_grid(dt.date(2023, 6, 1), 1, 60, "UTC")
    with pytest.raises(InputError, match="latitude"):
        load_weather(grid, "dwd-try-2010:4", 91.0, 13.0, 80.0, 0)
    with pytest.raises(InputError, match="longitude"):
        load_weather(grid, "dwd-try-2010:4", 52.0, 200.0, 80.0, 0)


# --- the files -------------------------------------------------------------------------------


def test_typical_year_files_are_complete_and_plausible() -> None:
    for table, ghi_kwh in (
        (read_dwd_try_2010(4), (950, 1150)),
        (read_pvlib_tmy3("723170TYA.CSV"), (1450, 1700)),
        (read_pvlib_tmy3("703165TY.csv"), (700, 950)),
        (read_pvlib_tm2("12839.tm2"), (1650, 1950)),
    ):
        assert table.ghi_w_m2.shape == (8760,)
        assert ghi_kwh[0] < table.ghi_w_m2.sum() / 1000 < ghi_kwh[1]
        assert (table.dhi_w_m2 <= table.ghi_w_m2).all()
        assert -40 < table.temp_air_c.min() < table.temp_air_c.max() < 45
        assert table.wind_speed_m_s.min() >= 0 and table.wind_speed_m_s.max() < 40


# --- mapping onto the grid ---------------------------------------------------------------------


@pytest.mark.parametrize("source", [*TYPICAL, "clearsky-stochastic"])
def test_every_source_gives_sane_slot_means(source: str) -> None:
    grid = make_grid(dt.date(2024, 3, 30), 3, 15, "Europe/Berlin")
    w = _at_site(grid, source)
    assert w.source == weather_source(source).name
    for arr in (w.ghi_w_m2, w.dni_w_m2, w.dhi_w_m2, w.temp_air_c, w.wind_speed_m_s):
        assert arr.shape == (grid.n_slots,) == (92 + 2 * 96,)
        assert np.isfinite(arr).all()
    assert (w.ghi_w_m2 >= 0).all() and (w.dni_w_m2 >= 0).all() and (w.dhi_w_m2 >= 0).all()
    assert (w.dhi_w_m2 <= w.ghi_w_m2 + 1e-9).all()
    assert (w.wind_speed_m_s >= 0).all()
    assert w.ghi_w_m2.max() > 50


def test_annual_irradiation_is_conserved_for_every_slot_length() -> None:
    table = read_dwd_try_2010(4)
    expected_kwh_m2 = table.ghi_w_m2.sum() / 1000.0
    for minutes in (5, 15, 60):
        # 2023 in Berlin's local days is exactly the file's year in MEZ (UTC+1).
        grid = make_grid(dt.date(2023, 1, 1), 365, minutes, "Europe/Berlin")
        w = _at_site(grid, "dwd-try-2010:4")
        assert w.ghi_w_m2.sum() * grid.dt_h / 1000.0 == pytest.approx(expected_kwh_m2, rel=1e-9)
        diffuse = w.dhi_w_m2.sum() * grid.dt_h / 1000.0
        assert diffuse == pytest.approx(table.dhi_w_m2.sum() / 1000.0, rel=1e-9)


def test_daily_irradiation_equals_the_file_day_in_its_own_time() -> None:
    # A grid on the file's own fixed offset: local day d is file day d.
    grid = make_grid(dt.date(2023, 6, 1), 10, 15, "Etc/GMT-1")
    w = _at_site(grid, "dwd-try-2010:4")
    table = read_dwd_try_2010(4)
    first_row = (31 + 28 + 31 + 30 + 31) * 24
    file_days = table.ghi_w_m2[first_row : first_row + 240].reshape(10, 24).sum(axis=1)
    grid_days = w.ghi_w_m2.reshape(10, 96).sum(axis=1) * grid.dt_h
    np.testing.assert_allclose(grid_days, file_days, rtol=1e-9)


def test_weather_depends_on_the_utc_instant_only() -> None:
    berlin = make_grid(dt.date(2023, 7, 1), 2, 15, "Europe/Berlin")  # summer: UTC+2
    fixed = make_grid(dt.date(2023, 7, 1), 2, 15, "UTC")
    a = _at_site(berlin, "dwd-try-2010:4")
    b = _at_site(fixed, "dwd-try-2010:4")
    common, ia, ib = np.intersect1d(berlin.starts_utc.asi8, fixed.starts_utc.asi8, True, True)
    assert common.size == 2 * 96 - 8
    np.testing.assert_allclose(a.ghi_w_m2[ia], b.ghi_w_m2[ib], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.temp_air_c[ia], b.temp_air_c[ib], rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module", params=TYPICAL)
def typical_year(request: pytest.FixtureRequest) -> tuple[str, SlotGrid, Weather]:
    """A year of each typical-year source at its own site, in the site's time zone."""
    source = str(request.param)
    site = weather_site(source)
    assert site is not None
    grid = make_grid(dt.date(2023, 1, 1), 365, 15, site.timezone)
    return source, grid, _at_site(grid, source)


def test_no_irradiance_while_the_sun_is_down(typical_year: tuple[str, SlotGrid, Weather]) -> None:
    source, grid, w = typical_year
    site = weather_site(source)
    assert site is not None
    start = _elevation(grid.starts_utc, site.latitude, site.longitude)
    end = _elevation(grid.starts_utc + pd.Timedelta(minutes=15), site.latitude, site.longitude)
    night = np.maximum(start, end) < -0.5
    assert night.mean() > 0.3
    assert (w.ghi_w_m2[night] == 0).all()
    assert (w.dni_w_m2[night] == 0).all()


def test_irradiance_is_centred_on_solar_noon(typical_year: tuple[str, SlotGrid, Weather]) -> None:
    # A one-hour error in the file's time reference would move the centroid by ~1 h.
    source, grid, w = typical_year
    site = weather_site(source)
    assert site is not None
    mid = grid.mid_utc
    eot_h = pvlib.solarposition.equation_of_time_spencer71(mid.dayofyear) / 60.0
    solar_h = (mid.hour + mid.minute / 60.0 + site.longitude / 15.0 + eot_h) % 24.0
    centroid = float(np.sum(w.ghi_w_m2 * solar_h) / np.sum(w.ghi_w_m2))
    assert abs(centroid - 12.0) < 0.3


def test_temperature_is_smooth_and_within_the_file_range() -> None:
    grid = make_grid(dt.date(2023, 1, 1), 365, 15, "Europe/Berlin")
    w = _at_site(grid, "dwd-try-2010:4")
    table = read_dwd_try_2010(4)
    assert table.temp_air_c.min() <= w.temp_air_c.min()
    assert w.temp_air_c.max() <= table.temp_air_c.max()
    max_hourly_jump = np.abs(np.diff(table.temp_air_c)).max()
    assert np.abs(np.diff(w.temp_air_c)).max() <= max_hourly_jump / 4 + 1e-9


# --- the spreading of hour means -----------------------------------------------------------------


@st.composite
def _hours_and_weights(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 30))
    means = np.array(draw(st.lists(st.floats(0, 1200), min_size=n, max_size=n)))
    w = np.array(
        draw(st.lists(st.floats(0, 1), min_size=n * STEPS_PER_HOUR, max_size=n * STEPS_PER_HOUR))
    )
    dark_hours = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    w.reshape(n, STEPS_PER_HOUR)[np.array(dark_hours, dtype=bool)] = 0.0
    return means, w


@given(_hours_and_weights())
@settings(max_examples=100, deadline=None)
def test_spreading_conserves_energy_and_keeps_dark_steps_dark(
    case: tuple[np.ndarray, np.ndarray],
) -> None:
    means, w = case
    out = spread_hour_means(means, w)
    assert out.shape == w.shape
    assert (out >= 0).all()
    assert (out[w == 0] == 0).all()
    lit = w.reshape(-1, STEPS_PER_HOUR).mean(axis=1) > 0
    n = means.size
    # Energy of a dark hour survives if a neighbour is lit; otherwise it is dropped.
    movable = lit | np.array(
        [(i + 1 < n and lit[i + 1]) or (i > 0 and lit[i - 1]) for i in range(n)]
    )
    expected = means[movable].sum() if lit.any() else 0.0
    assert out.sum() / STEPS_PER_HOUR == pytest.approx(expected, rel=1e-9, abs=1e-9)
    hourly = out.reshape(n, STEPS_PER_HOUR).mean(axis=1)
    untouched = lit & ~np.roll(~lit & (means > 0), 1) & ~np.roll(~lit & (means > 0), -1)
    np.testing.assert_allclose(hourly[untouched], means[untouched], rtol=1e-9, atol=1e-9)


# --- synthetic weather --------------------------------------------------------------------------


def test_stochastic_weather_is_deterministic_per_seed_and_varies_between_seeds() -> None:
    grid = make_grid(dt.date(2023, 4, 1), 20, 15, "Europe/Berlin")
    a = load_weather(grid, "clearsky-stochastic", 52.4, 13.1, 81.0, 7)
    b = load_weather(grid, "clearsky-stochastic", 52.4, 13.1, 81.0, 7)
    c = load_weather(grid, "clearsky-stochastic", 52.4, 13.1, 81.0, 8)
    np.testing.assert_array_equal(a.ghi_w_m2, b.ghi_w_m2)
    np.testing.assert_array_equal(a.temp_air_c, b.temp_air_c)
    assert not np.allclose(a.ghi_w_m2, c.ghi_w_m2)
    assert not np.allclose(a.temp_air_c, c.temp_air_c)


def test_stochastic_weather_is_plausible_over_a_year() -> None:
    grid = make_grid(dt.date(2023, 1, 1), 365, 60, "Europe/Berlin")
    w = load_weather(grid, "clearsky-stochastic", 52.4, 13.1, 81.0, 3)
    assert 850 < w.ghi_w_m2.sum() / 1000 < 1250  # kWh/m² a year (Potsdam file: 1075)
    assert 5 < w.temp_air_c.mean() < 14
    month = grid.local_month
    assert w.temp_air_c[month == 7].mean() - w.temp_air_c[month == 1].mean() > 10
    daily = w.ghi_w_m2.reshape(365, 24).sum(axis=1)
    summer = daily[151:243]
    # Clear and overcast days both occur: the daily irradiation varies a lot.
    assert summer.max() > 3 * summer.min()
    clear = pvlib.location.Location(52.4, 13.1, altitude=81).get_clearsky(grid.mid_utc)
    assert (w.ghi_w_m2 <= 1.2 * clear["ghi"].to_numpy() + 25).all()


def test_stochastic_seasons_are_reversed_in_the_southern_hemisphere() -> None:
    grid = make_grid(dt.date(2023, 1, 1), 365, 60, "Australia/Sydney")
    w = load_weather(grid, "clearsky-stochastic", -33.9, 151.2, 20.0, 1)
    month = grid.local_month
    assert w.temp_air_c[month == 1].mean() > w.temp_air_c[month == 7].mean() + 4
    assert w.ghi_w_m2[month == 12].sum() > 1.5 * w.ghi_w_m2[month == 6].sum()


def test_29_february_repeats_28_february() -> None:
    grid = make_grid(dt.date(2024, 2, 28), 3, 15, "Etc/GMT-1")  # the DWD file's own offset
    w = _at_site(grid, "dwd-try-2010:4")
    # Same day and same hour means away from sunrise and sunset (there the sun of the actual
    # date decides whether an hour's light stays or moves to its lit neighbour).
    feb28, feb29, mar1 = w.ghi_w_m2.reshape(3, 24, 4).mean(axis=2)
    assert feb29.sum() == pytest.approx(feb28.sum(), rel=1e-12)
    np.testing.assert_allclose(feb29[8:16], feb28[8:16], rtol=1e-9)
    assert not np.allclose(mar1, feb28)
