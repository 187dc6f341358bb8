"""A fine (5-minute) UTC time axis under a slot grid, for building slot means of weather.

Weather is computed on 5-minute steps that cover whole UTC hours around the run, then averaged
onto the slots. Every allowed slot length (5 ... 60 min) is a whole number of fine steps and every
slot boundary of a grid that starts at a local midnight falls on a fine-step boundary (all time
zones in use today have offsets in whole quarter hours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import NDArray

from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]

FINE_MINUTES = 5
STEPS_PER_HOUR = 60 // FINE_MINUTES
_NS_PER_MIN = 60_000_000_000
_NS_PER_HOUR = 60 * _NS_PER_MIN


@dataclass(frozen=True, eq=False)
class FineAxis:
    """5-minute steps [t, t + 5 min) in UTC covering whole hours around a slot grid.

    Attributes:
        start_ns: UTC start of step 0 [ns since the epoch], on a whole hour.
        n_steps: number of steps, a multiple of `STEPS_PER_HOUR`.
        first: index of the step at which the grid's slot 0 starts.
        per_slot: steps per slot.
        n_slots: slots of the grid.
    """

    start_ns: int
    n_steps: int
    first: int
    per_slot: int
    n_slots: int

    @property
    def n_hours(self) -> int:
        return self.n_steps // STEPS_PER_HOUR

    def mid_utc(self) -> pd.DatetimeIndex:
        """Mid-points of the steps, tz-aware UTC."""
        ns = self.start_ns + (np.arange(self.n_steps, dtype=np.int64) * 2 + 1) * (
            FINE_MINUTES * _NS_PER_MIN // 2
        )
        return pd.DatetimeIndex(ns.astype("datetime64[ns]")).tz_localize("UTC")

    def hour_starts_utc(self, extra_before: int = 0) -> pd.DatetimeIndex:
        """Starts of the whole UTC hours the axis covers (and `extra_before` hours before)."""
        ns = self.start_ns + (np.arange(-extra_before, self.n_hours, dtype=np.int64)) * _NS_PER_HOUR
        return pd.DatetimeIndex(ns.astype("datetime64[ns]")).tz_localize("UTC")

    def to_slots(self, values: FloatArray) -> FloatArray:
        """Slot means of a fine-step series (n_steps,) -> (n_slots,)."""
        part = values[self.first : self.first + self.n_slots * self.per_slot]
        return np.asarray(part.reshape(self.n_slots, self.per_slot).mean(axis=1), dtype=np.float64)


def fine_axis(grid: SlotGrid) -> FineAxis:
    """The fine axis under `grid`."""
    start = int(grid.starts_utc[0].value)
    slot_ns = grid.slot_minutes * _NS_PER_MIN
    end = start + grid.n_slots * slot_ns
    h0 = (start // _NS_PER_HOUR) * _NS_PER_HOUR
    h1 = -((-end) // _NS_PER_HOUR) * _NS_PER_HOUR
    step_ns = FINE_MINUTES * _NS_PER_MIN
    if (start - h0) % step_ns:
        raise ValueError(
            f"the grid starts at {grid.starts_utc[0]}, not on a {FINE_MINUTES}-minute boundary"
        )
    return FineAxis(
        start_ns=h0,
        n_steps=(h1 - h0) // step_ns,
        first=(start - h0) // step_ns,
        per_slot=grid.slot_minutes // FINE_MINUTES,
        n_slots=grid.n_slots,
    )


@dataclass(frozen=True, eq=False)
class SunOnAxis:
    """Sun geometry at the fine-step mid-points.

    Attributes:
        cos_zenith: cosine of the apparent (refracted) solar zenith, clipped at 0 (sun below the
            horizon) [-]; the weight with which hour-mean irradiance is spread within the hour.
        apparent_zenith_deg: apparent solar zenith [deg].
        dni_extra_w_m2: extraterrestrial normal irradiance [W/m²].
    """

    cos_zenith: FloatArray
    apparent_zenith_deg: FloatArray
    dni_extra_w_m2: FloatArray


def sun_on_axis(axis: FineAxis, latitude: float, longitude: float, altitude_m: float) -> SunOnAxis:
    """Solar geometry on the fine axis (pvlib's `ephemeris` algorithm: fast, ~0.01° here)."""
    times = axis.mid_utc()
    pos = pvlib.solarposition.ephemeris(
        times, latitude, longitude, pressure=float(pvlib.atmosphere.alt2pres(altitude_m))
    )
    zen = np.asarray(pos["apparent_zenith"], dtype=np.float64)
    cosz = np.clip(np.cos(np.radians(zen)), 0.0, None)
    extra = np.asarray(pvlib.irradiance.get_extra_radiation(times), dtype=np.float64)
    return SunOnAxis(cos_zenith=cosz, apparent_zenith_deg=zen, dni_extra_w_m2=extra)
