"""Shared fixtures of the data-layer tests: a year on 15-minute slots and its weather."""

from __future__ import annotations

import datetime as dt

import pytest

from peergrid.data.weather import Weather, load_weather, weather_site
from peergrid.timegrid import SlotGrid, make_grid

POTSDAM = weather_site("dwd-try-2010:4")
assert POTSDAM is not None


@pytest.fixture(scope="session")
def year_grid() -> SlotGrid:
    """2023 in Europe/Berlin, 15-minute slots: 35,040 slots, both DST changes inside."""
    return make_grid(dt.date(2023, 1, 1), 365, 15, "Europe/Berlin")


@pytest.fixture(scope="session")
def year_weather(year_grid: SlotGrid) -> Weather:
    """The default source (DWD TRY 2010 Potsdam) at its own station for `year_grid`."""
    assert POTSDAM is not None
    return load_weather(
        year_grid, "dwd-try-2010:4", POTSDAM.latitude, POTSDAM.longitude, POTSDAM.altitude_m, 0
    )
