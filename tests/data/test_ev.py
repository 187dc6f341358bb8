"""EV mobility: plugged-in status, trip energy, local clock times, invariants."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.data.ev import EvProfile, ev_mobility
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid, make_grid


def _ev(grid: SlotGrid, n: int, *, seed: int = 0, km: float = 40.0, **kw: float) -> EvProfile:
    return ev_mobility(
        grid, np.random.default_rng(seed), n,
        daily_km_mean=np.full(n, km), kwh_per_km=np.full(n, 0.2), **kw,
    )  # fmt: skip


def _exact(grid: SlotGrid, depart_h: float = 7.5, return_h: float = 17.5) -> EvProfile:
    """One car that drives every day, always at the same local times, no evening trips."""
    return _ev(
        grid, 1, p_use_weekday=1.0, p_use_weekend=1.0, depart_sd_h=0.0, return_sd_h=0.0,
        habit_sd_h=0.0, p_evening=0.0, depart_mean_h=depart_h, return_mean_h=return_h,
    )  # fmt: skip


def _check_invariants(ev: EvProfile) -> None:
    plugged, trip = ev.plugged, ev.trip_kwh
    assert plugged.dtype == np.bool_
    assert (trip >= 0).all()
    # Energy is only booked where the car is plugged in, right after an absence.
    booked = trip > 0
    assert not (booked & ~plugged).any()
    assert not booked[0].any()
    assert (~plugged[:-1][booked[1:]]).all()
    # Every return inside the run (unplugged -> plugged) books a trip.
    returns = ~plugged[:-1] & plugged[1:]
    np.testing.assert_array_equal(returns, booked[1:])


def test_departure_and_return_follow_local_clock_time() -> None:
    # 30 March 2024 is winter time (UTC+1), 1 April summer time (UTC+2).
    grid = make_grid(dt.date(2024, 3, 30), 3, 15, "Europe/Berlin")
    ev = _exact(grid)
    starts = grid.starts_utc
    leave = [
        starts[i] for i in range(1, grid.n_slots) if ev.plugged[i - 1, 0] and not ev.plugged[i, 0]
    ]
    back = [
        starts[i] for i in range(1, grid.n_slots) if not ev.plugged[i - 1, 0] and ev.plugged[i, 0]
    ]

    def utc(text: str) -> pd.Timestamp:
        return pd.Timestamp(text, tz="UTC")

    assert leave == [utc("2024-03-30 06:30"), utc("2024-03-31 05:30"), utc("2024-04-01 05:30")]
    assert back == [utc("2024-03-30 16:30"), utc("2024-03-31 15:30"), utc("2024-04-01 15:30")]
    booked = [starts[int(i)] for i in np.flatnonzero(ev.trip_kwh[:, 0] > 0)]
    assert booked == back
    _check_invariants(ev)


def test_partly_used_slots_count_as_unplugged() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 1, 60, "Europe/Berlin")
    ev = _exact(grid, 7.5, 17.25)
    hours = np.flatnonzero(~ev.plugged[:, 0])
    assert (hours.min(), hours.max()) == (7, 17)  # 07:00-08:00 ... 17:00-18:00 local
    assert ev.trip_kwh[18, 0] > 0


def test_unused_days_are_plugged_all_day() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 7, 15, "Europe/Berlin")
    ev = _ev(grid, 5, p_use_weekday=0.0, p_use_weekend=0.0)
    assert ev.plugged.all()
    assert (ev.trip_kwh == 0).all()


def test_weekend_use_can_differ_from_weekday_use() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 7, 15, "Europe/Berlin")  # Monday to Sunday
    ev = _ev(grid, 50, p_use_weekday=1.0, p_use_weekend=0.0)
    weekend = grid.local_weekday >= 5
    assert ev.plugged[weekend].all()
    assert (~ev.plugged[~weekend]).any(axis=0).all()


def test_mean_trip_energy_matches_the_mean_daily_distance() -> None:
    grid = make_grid(dt.date(2024, 1, 1), 60, 15, "Europe/Berlin")
    ev = _ev(grid, 200, km=40.0, p_use_weekday=1.0, p_use_weekend=1.0, p_evening=0.3)
    # All days are driving days; the last return may fall after the run, so compare per trip.
    per_day = ev.trip_kwh.sum() / (200 * 60)
    assert per_day == pytest.approx(40.0 * 0.2, rel=0.03)
    _check_invariants(ev)


def test_equal_seeds_equal_profiles_different_seeds_differ() -> None:
    grid = make_grid(dt.date(2024, 5, 1), 7, 15, "Europe/Berlin")
    a, b, c = _ev(grid, 10, seed=1), _ev(grid, 10, seed=1), _ev(grid, 10, seed=2)
    np.testing.assert_array_equal(a.plugged, b.plugged)
    np.testing.assert_array_equal(a.trip_kwh, b.trip_kwh)
    assert not np.array_equal(a.plugged, c.plugged)


def test_100_cars_for_a_year_are_fast(year_grid: SlotGrid) -> None:
    t0 = time.perf_counter()
    ev = _ev(year_grid, 100, seed=3)
    elapsed = time.perf_counter() - t0
    assert ev.plugged.shape == ev.trip_kwh.shape == (35_040, 100)
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    _check_invariants(ev)
    away = 1.0 - ev.plugged.mean()
    assert 0.15 < away < 0.45  # cars are away a fifth to two fifths of the time


def test_invalid_inputs_are_input_errors() -> None:
    grid = make_grid(dt.date(2024, 5, 1), 1, 15, "Europe/Berlin")
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=r"daily_km_mean: expected shape \(2,\)"):
        ev_mobility(grid, rng, 2, daily_km_mean=np.ones(3), kwh_per_km=np.ones(2))
    with pytest.raises(InputError, match=r"kwh_per_km\[1\]"):
        ev_mobility(grid, rng, 2, daily_km_mean=np.ones(2), kwh_per_km=np.array([0.2, -1.0]))
    with pytest.raises(InputError, match="p_evening"):
        ev_mobility(grid, rng, 1, daily_km_mean=np.ones(1), kwh_per_km=np.ones(1), p_evening=2.0)


@given(
    slot_minutes=st.sampled_from([5, 10, 15, 20, 30, 60]),
    start=st.dates(dt.date(2024, 1, 1), dt.date(2024, 12, 25)),
    p_use=st.floats(0.0, 1.0),
    p_evening=st.floats(0.0, 1.0),
    spread=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_never_booked_while_unplugged(
    *, slot_minutes: int, start: dt.date, p_use: float, p_evening: float, spread: float, seed: int
) -> None:
    grid = make_grid(start, 4, slot_minutes, "Europe/Berlin")
    ev = _ev(grid, 6, seed=seed, p_use_weekday=p_use, p_use_weekend=p_use, p_evening=p_evening,
             depart_sd_h=spread, return_sd_h=spread, habit_sd_h=spread)  # fmt: skip
    assert ev.plugged.shape == (grid.n_slots, 6)
    _check_invariants(ev)
