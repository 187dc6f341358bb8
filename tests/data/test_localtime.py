"""Local clock times on the UTC slot grid, including the days the clocks change."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from peergrid.data._localtime import local_clock_bin, local_time_to_slot_position
from peergrid.timegrid import make_grid


def _utc_of(grid_start: pd.Timestamp, pos: float, slot_minutes: int) -> pd.Timestamp:
    return grid_start + pd.Timedelta(minutes=pos * slot_minutes)


def test_dst_days_have_92_and_100_quarter_hours() -> None:
    spring = make_grid(dt.date(2024, 3, 31), 1, 15, "Europe/Berlin")
    autumn = make_grid(dt.date(2024, 10, 27), 1, 15, "Europe/Berlin")
    assert spring.n_slots == 92
    assert autumn.n_slots == 100


def test_clock_bins_skip_and_repeat_the_changed_hour() -> None:
    spring = make_grid(dt.date(2024, 3, 31), 1, 15, "Europe/Berlin")
    bins = local_clock_bin(spring)
    assert list(bins[:8]) == list(range(8))
    assert bins[8] == 12  # 02:00-03:00 does not exist: 01:45 is followed by 03:00
    assert list(bins) == [b for b in range(96) if not 8 <= b < 12]

    autumn = make_grid(dt.date(2024, 10, 27), 1, 15, "Europe/Berlin")
    bins = local_clock_bin(autumn)
    assert list(bins) == list(range(12)) + list(range(8, 96))


def test_departure_at_0730_local_is_0530_utc_in_summer_and_0630_in_winter() -> None:
    grid = make_grid(dt.date(2024, 3, 30), 3, 15, "Europe/Berlin")
    pos = local_time_to_slot_position(grid, np.array([0, 1, 2]), np.array([7.5, 7.5, 7.5]))
    start = grid.starts_utc[0]
    utc = [_utc_of(start, float(p), 15) for p in pos]
    assert utc[0] == pd.Timestamp("2024-03-30 06:30", tz="UTC")
    assert utc[1] == pd.Timestamp("2024-03-31 05:30", tz="UTC")
    assert utc[2] == pd.Timestamp("2024-04-01 05:30", tz="UTC")
    assert all(float(p).is_integer() for p in pos)


def test_gap_moves_forward_and_ambiguous_takes_summer_time() -> None:
    spring = make_grid(dt.date(2024, 3, 31), 1, 15, "Europe/Berlin")
    pos = local_time_to_slot_position(spring, np.array([0]), np.array([2.5]))
    assert _utc_of(spring.starts_utc[0], float(pos[0]), 15) == pd.Timestamp(
        "2024-03-31 01:00", tz="UTC"
    )
    autumn = make_grid(dt.date(2024, 10, 27), 1, 15, "Europe/Berlin")
    pos = local_time_to_slot_position(autumn, np.array([0]), np.array([2.5]))
    assert _utc_of(autumn.starts_utc[0], float(pos[0]), 15) == pd.Timestamp(
        "2024-10-27 00:30", tz="UTC"
    )


def test_hours_past_midnight_roll_into_the_next_day() -> None:
    grid = make_grid(dt.date(2024, 6, 1), 3, 60, "Europe/Berlin")
    a = local_time_to_slot_position(grid, np.array([0]), np.array([26.0]))
    b = local_time_to_slot_position(grid, np.array([1]), np.array([2.0]))
    assert a[0] == b[0] == 26.0
