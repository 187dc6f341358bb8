"""The slot grid: left-labelled, half-open intervals [t, t + Δ) in UTC.

Everything inside peergrid lives on one `SlotGrid`. Energies per slot are arrays of length
`n_slots`; storage states are arrays of length `n_slots + 1` (the state at each slot boundary).
Local time is used only to build the grid (a run covers whole local days) and to derive local
calendar features for profiles, tariffs and reports.

A local day on which the clock changes has 23 or 25 hours, so at 15-minute resolution it has 92
or 100 slots: the grid is built from local midnights converted to UTC, never by counting 96
slots per day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.errors import InputError

ALLOWED_SLOT_MINUTES = (5, 10, 15, 20, 30, 60)


@dataclass(frozen=True)
class SlotGrid:
    """A run's time axis.

    Attributes:
        start_local: first local day of the run (the run starts at its local midnight).
        days: number of whole local days.
        slot_minutes: slot length [min].
        timezone: IANA time-zone name used for local time.
    """

    start_local: dt.date
    days: int
    slot_minutes: int
    timezone: str

    @cached_property
    def starts_utc(self) -> pd.DatetimeIndex:
        """Slot start instants, tz-aware UTC, length `n_slots`."""
        tz = ZoneInfo(self.timezone)
        first = pd.Timestamp(dt.datetime.combine(self.start_local, dt.time(), tzinfo=tz))
        last_day = self.start_local + dt.timedelta(days=self.days)
        end = pd.Timestamp(dt.datetime.combine(last_day, dt.time(), tzinfo=tz))
        return pd.date_range(
            first.tz_convert("UTC"),
            end.tz_convert("UTC"),
            freq=pd.Timedelta(minutes=self.slot_minutes),
            inclusive="left",
            name="slot_start",
        )

    @property
    def n_slots(self) -> int:
        """Number of slots [-]."""
        return len(self.starts_utc)

    @property
    def dt_h(self) -> float:
        """Slot length [h]."""
        return self.slot_minutes / 60.0

    @property
    def slots_per_hour(self) -> int:
        return 60 // self.slot_minutes

    @cached_property
    def starts_local(self) -> pd.DatetimeIndex:
        """Slot start instants in local time (for reports and calendar features)."""
        return self.starts_utc.tz_convert(self.timezone)

    @cached_property
    def mid_utc(self) -> pd.DatetimeIndex:
        """Slot mid-points, tz-aware UTC (for solar position)."""
        return self.starts_utc + pd.Timedelta(minutes=self.slot_minutes / 2)

    @cached_property
    def local_hour(self) -> np.ndarray:
        """Local clock time at slot start [h since local midnight], float array (n_slots,)."""
        loc = self.starts_local
        return np.asarray(loc.hour + loc.minute / 60.0, dtype=np.float64)

    @cached_property
    def local_weekday(self) -> np.ndarray:
        """Local day of week at slot start, Monday = 0, int array (n_slots,)."""
        return np.asarray(self.starts_local.dayofweek, dtype=np.int64)

    @cached_property
    def local_day(self) -> np.ndarray:
        """Index of the local day the slot belongs to (0 .. days-1), int array (n_slots,)."""
        loc = self.starts_local.normalize().tz_localize(None)
        return np.asarray((loc - pd.Timestamp(self.start_local)).days, dtype=np.int64)

    @cached_property
    def local_day_of_year(self) -> np.ndarray:
        """Local day of year (1..366), int array (n_slots,)."""
        return np.asarray(self.starts_local.dayofyear, dtype=np.int64)

    @cached_property
    def local_month(self) -> np.ndarray:
        """Local month (1..12), int array (n_slots,)."""
        return np.asarray(self.starts_local.month, dtype=np.int64)

    @cached_property
    def day_first_slot(self) -> np.ndarray:
        """Index of the first slot of each local day, int array (days + 1,), last = n_slots."""
        counts = np.bincount(self.local_day, minlength=self.days)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def slots_of_day(self, day: int) -> slice:
        """The slots of local day `day` as a slice."""
        return slice(int(self.day_first_slot[day]), int(self.day_first_slot[day + 1]))


def epoch_ns(index: pd.DatetimeIndex) -> NDArray[np.int64]:
    """Nanoseconds since the Unix epoch (UTC) of each instant; NaT becomes int64 min.

    Naive instants are taken as UTC, tz-aware ones are converted."""
    values = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    return np.asarray(values.values, dtype="datetime64[ns]").view(np.int64)


def make_grid(start_local: dt.date, days: int, slot_minutes: int, timezone: str) -> SlotGrid:
    """Build a validated slot grid covering `days` whole local days from `start_local`."""
    if slot_minutes not in ALLOWED_SLOT_MINUTES:
        raise InputError(
            f"time.slot_minutes: must be one of {ALLOWED_SLOT_MINUTES} (got {slot_minutes})"
        )
    if days < 1:
        raise InputError(f"time.days: must be >= 1 (got {days})")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"time.timezone: unknown IANA time zone {timezone!r}") from exc
    return SlotGrid(
        start_local=start_local, days=days, slot_minutes=slot_minutes, timezone=timezone
    )
