"""Shiftable-appliance physics: runs that start once inside their window and then cannot stop.

A job's state is its start slot, `NOT_STARTED` (−1) until it starts. A started job draws
p·Δt in each of the `duration_slots` slots [start, start + duration). A job must start by its
latest feasible start, latest_end − duration (or at once, if the window is shorter than the
run). The functions work on any subset of the jobs (arrays of equal length), so a policy can
pass only the few jobs that are open or running instead of the whole year.
"""

from __future__ import annotations

import numpy as np

from peergrid.assets.params import BoolArray, FloatArray, IntArray

NOT_STARTED = -1


def latest_start_slot(
    earliest_start: IntArray, latest_end: IntArray, duration_slots: IntArray
) -> IntArray:
    """Latest slot a job can start and still end by `latest_end` (never before its earliest)."""
    latest: IntArray = np.maximum(latest_end - duration_slots, earliest_start)
    return latest


def running(start_slot: IntArray, duration_slots: IntArray, t: int) -> BoolArray:
    """Jobs that draw power in slot t."""
    on: BoolArray = (
        (start_slot != NOT_STARTED) & (start_slot <= t) & (t < start_slot + duration_slots)
    )
    return on


def must_start(start_slot: IntArray, latest_start: IntArray, t: int) -> BoolArray:
    """Jobs that have not started and reached their latest feasible start at slot t."""
    due: BoolArray = (start_slot == NOT_STARTED) & (t >= latest_start)
    return due


def energy_kwh(
    start_slot: IntArray,
    duration_slots: IntArray,
    participant: IntArray,
    p_kw: FloatArray,
    *,
    t: int,
    dt_h: float,
    n_participants: int,
) -> FloatArray:
    """Energy the running jobs draw in slot t, summed per participant, (P,) [kWh]."""
    on = running(start_slot, duration_slots, t)
    load: FloatArray = np.bincount(
        participant[on], weights=p_kw[on] * dt_h, minlength=n_participants
    ).astype(np.float64, copy=False)
    return load
