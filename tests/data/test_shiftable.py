"""Shiftable appliance jobs: windows in local time, rounding, energy, dropping, invariants."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.assets.params import ShiftableJobs
from peergrid.data.shiftable import shiftable_jobs
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid, make_grid


def _jobs(
    grid: SlotGrid, seed: int = 0, **spec: list[float] | list[int] | list[str]
) -> ShiftableJobs:
    k = len(spec.get("energy_kwh", [1.0]))
    defaults: dict[str, list[float] | list[int] | list[str]] = {
        "participant": [0] * k,
        "appliance": ["washing machine"] * k,
        "energy_kwh": [1.0] * k,
        "duration_min": [120] * k,
        "window_start_h": [8.0] * k,
        "window_end_h": [22.0] * k,
        "runs_per_week": [7.0] * k,
    }
    args = {**defaults, **spec}
    return shiftable_jobs(
        grid,
        np.random.default_rng(seed),
        participant=np.asarray(args["participant"], dtype=np.int64),
        appliance=np.asarray(args["appliance"], dtype=np.str_),
        energy_kwh=np.asarray(args["energy_kwh"], dtype=np.float64),
        duration_min=np.asarray(args["duration_min"], dtype=np.int64),
        window_start_h=np.asarray(args["window_start_h"], dtype=np.float64),
        window_end_h=np.asarray(args["window_end_h"], dtype=np.float64),
        runs_per_week=np.asarray(args["runs_per_week"], dtype=np.float64),
    )


def _check(jobs: ShiftableJobs, grid: SlotGrid, energy_kwh: np.ndarray | None = None) -> None:
    assert (jobs.earliest_start >= 0).all()
    assert (jobs.latest_end <= grid.n_slots).all()
    assert (jobs.latest_end - jobs.earliest_start >= jobs.duration_slots).all()
    assert (jobs.duration_slots >= 1).all()
    assert (np.diff(jobs.earliest_start) >= 0).all()
    if energy_kwh is not None:
        np.testing.assert_allclose(jobs.p_kw * jobs.duration_slots * grid.dt_h, energy_kwh)


def test_daily_runs_with_windows_in_local_time_across_the_spring_change() -> None:
    grid = make_grid(dt.date(2024, 3, 30), 3, 15, "Europe/Berlin")
    jobs = _jobs(grid, energy_kwh=[1.2], duration_min=[100])
    assert jobs.n_jobs == 3
    start = grid.starts_utc
    assert [start[i] for i in jobs.earliest_start] == [
        pd.Timestamp("2024-03-30 07:00", tz="UTC"),
        pd.Timestamp("2024-03-31 06:00", tz="UTC"),
        pd.Timestamp("2024-04-01 06:00", tz="UTC"),
    ]
    end_utc = [start[0] + pd.Timedelta(minutes=15 * int(e)) for e in jobs.latest_end]
    assert end_utc[0] == pd.Timestamp("2024-03-30 21:00", tz="UTC")
    assert end_utc[1] == pd.Timestamp("2024-03-31 20:00", tz="UTC")
    assert list(jobs.duration_slots) == [7, 7, 7]  # ceil(100 / 15)
    np.testing.assert_allclose(jobs.p_kw, 1.2 / (7 * 0.25))
    assert list(jobs.appliance) == ["washing machine"] * 3
    _check(jobs, grid, np.full(3, 1.2))


def test_windows_are_rounded_inwards_to_whole_slots() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 1, 60, "Europe/Berlin")
    jobs = _jobs(grid, window_start_h=[8.25], window_end_h=[12.75], duration_min=[60])
    assert (int(jobs.earliest_start[0]), int(jobs.latest_end[0])) == (9, 12)


def test_window_across_midnight_ends_next_day_and_falls_off_the_last_day() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 3, 15, "Europe/Berlin")
    jobs = _jobs(grid, window_start_h=[22.0], window_end_h=[6.0], duration_min=[90])
    assert jobs.n_jobs == 2  # the third night ends after the run
    assert list(jobs.earliest_start) == [88, 96 + 88]
    assert list(jobs.latest_end) == [96 + 24, 2 * 96 + 24]
    _check(jobs, grid)


def test_equal_window_times_mean_24_hours_and_24_00_is_midnight() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 3, 60, "Europe/Berlin")
    full = _jobs(grid, window_start_h=[6.0], window_end_h=[6.0], duration_min=[60])
    assert list(full.latest_end - full.earliest_start) == [24, 24]
    to_midnight = _jobs(grid, window_start_h=[20.0], window_end_h=[24.0], duration_min=[60])
    assert list(to_midnight.latest_end) == [24, 48, 72]


def test_too_short_windows_give_no_jobs() -> None:
    grid = make_grid(dt.date(2024, 6, 3), 7, 15, "Europe/Berlin")
    jobs = _jobs(grid, window_start_h=[10.0], window_end_h=[11.0], duration_min=[61])
    assert jobs.n_jobs == 0
    assert jobs.p_kw.shape == (0,)


def test_run_frequency_and_sorting_over_many_specs() -> None:
    grid = make_grid(dt.date(2024, 1, 1), 70, 15, "Europe/Berlin")
    jobs = _jobs(
        grid,
        participant=[0, 1, 2, 1],
        appliance=["dishwasher", "washing machine", "dryer", "dishwasher"],
        energy_kwh=[1.0, 0.9, 2.5, 1.1],
        duration_min=[150, 120, 90, 150],
        window_start_h=[20.0, 9.0, 12.0, 21.0],
        window_end_h=[7.0, 18.0, 20.0, 6.0],
        runs_per_week=[7.0, 3.0, 1.5, 10.5],
    )
    counts = {a: int((jobs.appliance == a).sum()) for a in ("washing machine", "dryer")}
    assert 18 <= counts["washing machine"] <= 42  # 30 expected
    assert 5 <= counts["dryer"] <= 25  # 15 expected
    per_day = np.bincount(jobs.participant[jobs.appliance == "dishwasher"], minlength=3)
    assert per_day[0] == 69  # every night but the last (which ends after the run)
    assert 69 <= per_day[1] <= 2 * 69  # 1.5 runs a night
    _check(jobs, grid)


def test_equal_seeds_equal_jobs() -> None:
    grid = make_grid(dt.date(2024, 1, 1), 28, 15, "Europe/Berlin")
    a = _jobs(grid, 1, runs_per_week=[3.0])
    b = _jobs(grid, 1, runs_per_week=[3.0])
    c = _jobs(grid, 2, runs_per_week=[3.0])
    np.testing.assert_array_equal(a.earliest_start, b.earliest_start)
    assert not np.array_equal(a.earliest_start, c.earliest_start)


def test_invalid_specs_are_input_errors() -> None:
    grid = make_grid(dt.date(2024, 1, 1), 1, 15, "Europe/Berlin")
    with pytest.raises(InputError, match=r"shiftable\[0\]\.energy_kwh: must be > 0"):
        _jobs(grid, energy_kwh=[-1.0])
    with pytest.raises(InputError, match=r"shiftable\[0\]\.window_end_h"):
        _jobs(grid, window_end_h=[25.0])
    with pytest.raises(InputError, match=r"shiftable\[0\]\.duration_min"):
        _jobs(grid, duration_min=[0])
    with pytest.raises(InputError, match=r"shiftable\.duration_min: expected shape"):
        _jobs(grid, duration_min=[60, 60])


@given(
    slot_minutes=st.sampled_from([5, 10, 15, 20, 30, 60]),
    start=st.dates(dt.date(2024, 1, 1), dt.date(2024, 12, 25)),
    window=st.tuples(st.floats(0.0, 24.0), st.floats(0.0, 24.0)),
    duration_min=st.integers(1, 600),
    runs=st.floats(0.0, 14.0),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=80, deadline=None)
def test_jobs_always_fit_their_windows_and_the_run(
    *,
    slot_minutes: int,
    start: dt.date,
    window: tuple[float, float],
    duration_min: int,
    runs: float,
    seed: int,
) -> None:
    grid = make_grid(start, 5, slot_minutes, "Europe/Berlin")
    jobs = _jobs(grid, seed, window_start_h=[window[0]], window_end_h=[window[1]],
                 duration_min=[duration_min], runs_per_week=[runs], energy_kwh=[0.8])  # fmt: skip
    _check(jobs, grid, np.full(jobs.n_jobs, 0.8))
    assert (jobs.duration_slots == -(-duration_min // slot_minutes)).all()
