import datetime as dt

import numpy as np
import pandas as pd
import pytest

from peergrid.errors import InputError
from peergrid.timegrid import make_grid


@pytest.mark.parametrize(
    ("day", "slots"),
    [(dt.date(2024, 3, 31), 92), (dt.date(2024, 10, 27), 100), (dt.date(2024, 6, 1), 96)],
)
def test_clock_change_days_have_92_or_100_quarter_hours(day: dt.date, slots: int) -> None:
    grid = make_grid(day, 1, 15, "Europe/Berlin")
    assert grid.n_slots == slots
    assert grid.starts_utc.tz is not None and str(grid.starts_utc.tz) == "UTC"
    # consecutive slots are exactly 15 min apart in UTC, even across the change
    assert np.all(np.diff(grid.starts_utc.asi8) == 15 * 60 * 10**9)


def test_grid_starts_at_local_midnight_and_covers_whole_days() -> None:
    grid = make_grid(dt.date(2024, 3, 30), 3, 15, "Europe/Berlin")
    assert grid.n_slots == 96 + 92 + 96
    assert grid.starts_utc[0] == pd.Timestamp("2024-03-29 23:00", tz="UTC")
    assert list(np.bincount(grid.local_day)) == [96, 92, 96]
    assert list(grid.day_first_slot) == [0, 96, 188, 284]
    # local hour skips 02:00-03:00 on the spring-forward day
    day2 = grid.local_hour[grid.slots_of_day(1)]
    assert 2.0 not in day2 and 2.5 not in day2 and day2[8] == 3.0


def test_fall_back_day_repeats_the_hour_in_local_time() -> None:
    grid = make_grid(dt.date(2024, 10, 27), 1, 60, "Europe/Berlin")
    assert grid.n_slots == 25
    hours = grid.local_hour
    assert list(hours[:4]) == [0.0, 1.0, 2.0, 2.0]


def test_full_year_has_35040_quarter_hours() -> None:
    grid = make_grid(dt.date(2023, 1, 1), 365, 15, "Europe/Berlin")
    assert grid.n_slots == 35_040
    assert grid.dt_h == 0.25


@pytest.mark.parametrize("minutes", [7, 0, 45, 120])
def test_bad_slot_length_is_rejected(minutes: int) -> None:
    with pytest.raises(InputError, match="slot_minutes"):
        make_grid(dt.date(2024, 1, 1), 1, minutes, "UTC")


def test_unknown_zone_is_rejected() -> None:
    with pytest.raises(InputError, match="timezone"):
        make_grid(dt.date(2024, 1, 1), 1, 15, "Mars/Olympus")
