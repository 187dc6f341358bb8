"""Runs of shiftable appliances (washing machine, dishwasher, ...) as jobs for the EMS.

For each appliance spec k and each local day of the run, the number of runs that day is
floor(r) + Bernoulli(r - floor(r)) with r = runs_per_week / 7, so the expected number of runs is
exact and habits are regular (a 7-per-week dishwasher runs every day). Each run is one job that
may start at or after the local window start of that day and must end by the window end; a
window whose end is not after its start ends on the next day (22:00-06:00 runs overnight; equal
times mean a 24-hour window). The window is rounded inwards to whole slots: `earliest_start` is
the first slot starting at or after the window start and `latest_end` the slot boundary at or
before the window end (exclusive index). Local times follow the clock on daylight-saving days
(a 08:00 window start is 06:00 UTC in summer in Europe/Berlin, 07:00 UTC in winter; a window
start inside the spring-forward gap moves to its end).

A run takes `duration_slots = ceil(duration_min / slot_minutes)` slots at
`p_kw = energy_kwh / (duration_slots * dt_h)`, so its energy is exactly `energy_kwh`. Jobs whose
rounded window is shorter than the run, or that would end after the run, are dropped. Jobs are
sorted by `earliest_start` (ties by participant, then spec order).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from peergrid.assets.params import ShiftableJobs
from peergrid.data._localtime import local_time_to_slot_position
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_EPS = 1e-9


def _fail(field: str, k: int, reason: str) -> InputError:
    return InputError(f"shiftable[{k}].{field}: {reason}")


def _validate(
    *,
    participant: IntArray,
    appliance: NDArray[np.str_],
    energy_kwh: FloatArray,
    duration_min: IntArray,
    window_start_h: FloatArray,
    window_end_h: FloatArray,
    runs_per_week: FloatArray,
) -> None:
    k = participant.shape[0]
    arrays = {
        "appliance": appliance,
        "energy_kwh": energy_kwh,
        "duration_min": duration_min,
        "window_start_h": window_start_h,
        "window_end_h": window_end_h,
        "runs_per_week": runs_per_week,
    }
    for name, arr in arrays.items():
        if arr.shape != (k,):
            raise InputError(f"shiftable.{name}: expected shape ({k},), got {arr.shape}")
    checks = (
        ("participant", participant < 0, ">= 0"),
        ("energy_kwh", ~np.isfinite(energy_kwh) | (energy_kwh <= 0), "> 0"),
        ("duration_min", (duration_min <= 0) | (duration_min > 24 * 60), "in 1..1440"),
        ("window_start_h", ~((window_start_h >= 0) & (window_start_h <= 24)), "in [0, 24]"),
        ("window_end_h", ~((window_end_h >= 0) & (window_end_h <= 24)), "in [0, 24]"),
        ("runs_per_week", ~np.isfinite(runs_per_week) | (runs_per_week < 0), ">= 0"),
    )  # fmt: skip
    for name, bad, reason in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = arrays.get(name, participant)[i]
            raise _fail(name, i, f"must be {reason} (got {value})")


def shiftable_jobs(
    grid: SlotGrid,
    rng: np.random.Generator,
    *,
    participant: IntArray,
    appliance: NDArray[np.str_],
    energy_kwh: FloatArray,
    duration_min: IntArray,
    window_start_h: FloatArray,
    window_end_h: FloatArray,
    runs_per_week: FloatArray,
) -> ShiftableJobs:
    """One job per run of each appliance spec over the run (see the module docstring).

    Args:
        grid: the run's slot grid.
        rng: random generator (equal seeds, equal jobs).
        participant: participant index of each spec, (K,).
        appliance: appliance name of each spec, (K,).
        energy_kwh: energy of one run [kWh], (K,).
        duration_min: length of one run [min], (K,).
        window_start_h: earliest local start [h since local midnight], (K,), 0..24.
        window_end_h: latest local end [h since local midnight], (K,), 0..24; not after the start
            means the next day.
        runs_per_week: mean runs per week, (K,).
    """
    participant = np.asarray(participant, dtype=np.int64)
    appliance = np.asarray(appliance, dtype=np.str_)
    energy_kwh = np.asarray(energy_kwh, dtype=np.float64)
    duration_min = np.asarray(duration_min, dtype=np.int64)
    window_start_h = np.asarray(window_start_h, dtype=np.float64)
    window_end_h = np.asarray(window_end_h, dtype=np.float64)
    runs_per_week = np.asarray(runs_per_week, dtype=np.float64)
    _validate(
        participant=participant,
        appliance=appliance,
        energy_kwh=energy_kwh,
        duration_min=duration_min,
        window_start_h=window_start_h,
        window_end_h=window_end_h,
        runs_per_week=runs_per_week,
    )

    n_specs = participant.shape[0]
    n_days = grid.days
    per_day = runs_per_week / 7.0
    whole = np.floor(per_day).astype(np.int64)
    runs = whole[None, :] + (rng.random((n_days, n_specs)) < (per_day - whole)[None, :])
    flat = np.repeat(np.arange(n_days * n_specs), runs.ravel())
    day, spec = np.divmod(flat, n_specs)

    start_h = window_start_h[spec]
    end_h = window_end_h[spec]
    end_h = np.where(end_h <= start_h, end_h + 24.0, end_h)
    first = np.ceil(local_time_to_slot_position(grid, day, start_h) - _EPS).astype(np.int64)
    last = np.floor(local_time_to_slot_position(grid, day, end_h) + _EPS).astype(np.int64)
    dur = -(-duration_min[spec] // grid.slot_minutes)
    keep = (last - first >= dur) & (first >= 0) & (last <= grid.n_slots)
    day, spec, first, last, dur = day[keep], spec[keep], first[keep], last[keep], dur[keep]

    order = np.lexsort((spec, participant[spec], first))
    spec, first, last, dur = spec[order], first[order], last[order], dur[order]
    return ShiftableJobs(
        participant=participant[spec],
        earliest_start=first,
        latest_end=last,
        duration_slots=dur.astype(np.int64),
        p_kw=energy_kwh[spec] / (dur * grid.dt_h),
        appliance=appliance[spec],
    )
