"""Local wall-clock times of a run as positions on its UTC slot grid.

Profiles that follow people's habits (departures, appliance windows, occupancy) are drawn in
local clock time and placed on the grid here, once, so that daylight-saving days are handled in
one place: a departure at 07:30 local is 05:30 UTC in summer and 06:30 UTC in winter (Europe/
Berlin), a 23-hour day has no 02:00-03:00 and a 25-hour day has it twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.timegrid import SlotGrid, epoch_ns

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_NS_PER_MIN = 60_000_000_000


def local_time_to_slot_position(grid: SlotGrid, day: IntArray, hour: FloatArray) -> FloatArray:
    """Position of local wall-clock times on the grid, in slots since the run's start [slots].

    Args:
        grid: the run's slot grid.
        day: local day index of the run (0 = `grid.start_local`), int array (N,).
        hour: local clock time on that day [h since local midnight], float array (N,); values of
            24 or more roll over into the following days.

    Returns:
        Float array (N,): 0.0 is the start of slot 0, 2.5 is the middle of slot 2. A time
        that does not exist (inside the spring-forward gap) is moved forward to the end of the
        gap; an ambiguous time (the repeated hour of the fall-back day) takes its first
        occurrence (summer time). Positions before the run are negative, after it >= n_slots.
    """
    day = np.asarray(day, dtype=np.int64)
    hour = np.asarray(hour, dtype=np.float64)
    if day.shape != hour.shape:
        raise ValueError(f"day {day.shape} and hour {hour.shape} must have the same shape")
    if day.size == 0:
        return np.zeros(day.shape, dtype=np.float64)
    # Millisecond resolution keeps the arithmetic exact for clock times given in minutes.
    offset_ms = np.round(hour * 3_600_000.0).astype(np.int64)
    naive = (
        np.datetime64(grid.start_local, "ms")
        + day.astype("timedelta64[D]")
        + offset_ms.astype("timedelta64[ms]")
    ).astype("datetime64[ns]")
    utc = pd.DatetimeIndex(naive.ravel()).tz_localize(
        grid.timezone,
        ambiguous=np.ones(naive.size, dtype=bool),
        nonexistent="shift_forward",
    )
    start_ns = int(grid.starts_utc[0].value)
    ns = epoch_ns(utc) - start_ns
    return (ns / (grid.slot_minutes * _NS_PER_MIN)).reshape(day.shape)


def local_clock_bin(grid: SlotGrid) -> IntArray:
    """For every slot, the index of its local clock bin within its local day, int array (T,).

    Bin b covers local clock time [b, b + 1) * slot_minutes. A normal day uses bins
    0 .. 1440/slot_minutes - 1 once each; the spring-forward day skips the bins of the missing
    hour and the fall-back day uses the bins of the repeated hour twice. Profiles computed per
    local clock bin and gathered with this index therefore follow local clock time.
    """
    minutes = np.round(grid.local_hour * 60.0).astype(np.int64)
    return minutes // grid.slot_minutes
