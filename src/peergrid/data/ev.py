"""EV mobility: when each car is at home and plugged in, and what its trips take out of the battery.

Model, per car and local day (all draws from the given generator, vectorised over cars × days):

* The car is used with probability `p_use_weekday` (Monday-Friday) or `p_use_weekend`; on other
  days it stays home and is plugged in all day.
* A driving day has a main trip: departure at `depart_mean_h` local time plus the car's habitual
  offset (normal, `habit_sd_h`) plus day-to-day noise (normal, `depart_sd_h`), clipped to
  04:00-12:00; return at `return_mean_h` plus the car's habit and noise (`return_sd_h`),
  at least one hour after departure and no later than 23:00.
* With probability `p_evening` a second, evening trip follows (departure about 19:30 ± 1 h, at
  least one hour after the return, 0.5-3 h long, back by 23:45 at the latest).
* The day's distance is log-normal with mean `daily_km_mean` (the mean distance on a driving
  day) and log-space spread `distance_sigma`; an evening trip takes a uniform 10-40 % of it.
  A trip's energy is distance × `kwh_per_km`.

Placing trips on the grid: a car is unplugged in every slot its absence overlaps (a departure at
07:40 makes the 07:30-07:45 slot unavailable for charging) and plugged again from the first slot
that starts at or after its return; the trip's energy is booked in that slot (`trip_kwh`), so a
trip's energy is always booked in a plugged slot. An evening trip that would not leave a plugged
slot between it and the main trip is merged into the main trip (its distance added). A trip that
returns after the end of the run is not booked. Times are local clock times: a 07:30 departure is
05:30 UTC in summer and 06:30 UTC in winter in Europe/Berlin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.data._localtime import local_time_to_slot_position
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class EvProfile:
    """EV availability and trip energy on the slot grid, arrays (T, P).

    Attributes:
        plugged: the car is at home and plugged in for the whole slot.
        trip_kwh: energy the trips that ended took out of the battery [kWh], booked in the first
            plugged slot after the return (zero elsewhere).
    """

    plugged: BoolArray
    trip_kwh: FloatArray


def _check_1d(name: str, x: FloatArray, n: int) -> None:
    if x.shape != (n,):
        raise InputError(f"ev.{name}: expected shape ({n},), got {x.shape}")
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"ev.{name}[{i}]: must be finite and >= 0 (got {x[i]})")


def ev_mobility(
    grid: SlotGrid,
    rng: np.random.Generator,
    n: int,
    daily_km_mean: FloatArray,
    kwh_per_km: FloatArray,
    *,
    p_use_weekday: float = 0.85,
    p_use_weekend: float = 0.6,
    depart_mean_h: float = 7.5,
    depart_sd_h: float = 0.5,
    return_mean_h: float = 17.5,
    return_sd_h: float = 0.75,
    habit_sd_h: float = 0.75,
    p_evening: float = 0.2,
    distance_sigma: float = 0.5,
) -> EvProfile:
    """Plugged-in status and trip energy of `n` cars (model in the module docstring).

    Args:
        grid: the run's slot grid.
        rng: random generator (equal seeds, equal profiles).
        n: number of cars P.
        daily_km_mean: mean distance on a driving day [km], (P,).
        kwh_per_km: energy use [kWh/km], (P,).
        p_use_weekday, p_use_weekend: probability that the car is driven on such a day [-].
        depart_mean_h, return_mean_h: mean local departure and return time of the main trip
            [h since local midnight].
        depart_sd_h, return_sd_h: day-to-day spread of those times [h].
        habit_sd_h: spread of each car's habitual offset from the means [h].
        p_evening: probability of an evening trip on a driving day [-].
        distance_sigma: spread of the daily distance in log space [-].
    """
    km_mean = np.asarray(daily_km_mean, dtype=np.float64)
    per_km = np.asarray(kwh_per_km, dtype=np.float64)
    _check_1d("daily_km_mean", km_mean, n)
    _check_1d("kwh_per_km", per_km, n)
    for name, value in (("p_use_weekday", p_use_weekday), ("p_use_weekend", p_use_weekend),
                        ("p_evening", p_evening)):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise InputError(f"ev.{name}: must lie in [0, 1] (got {value})")

    n_days = grid.days
    t_slots = grid.n_slots
    weekday = (grid.start_local.weekday() + np.arange(n_days)) % 7
    p_use = np.where(weekday < 5, p_use_weekday, p_use_weekend)[:, None]  # (D, 1)

    shape = (n_days, n)
    used = rng.random(shape) < p_use
    habit_dep = rng.normal(0.0, habit_sd_h, size=n)[None, :]
    habit_ret = rng.normal(0.0, habit_sd_h, size=n)[None, :]
    dep = np.clip(depart_mean_h + habit_dep + rng.normal(0.0, depart_sd_h, size=shape), 4.0, 12.0)
    ret = return_mean_h + habit_ret + rng.normal(0.0, return_sd_h, size=shape)
    ret = np.clip(np.maximum(ret, dep + 1.0), None, 23.0)
    km = km_mean[None, :] * np.exp(
        distance_sigma * rng.standard_normal(shape) - 0.5 * distance_sigma**2
    )
    evening = used & (rng.random(shape) < p_evening)
    ev_dep = np.maximum(19.5 + rng.normal(0.0, 1.0, size=shape), ret + 1.0)
    ev_ret = np.minimum(ev_dep + rng.uniform(0.5, 3.0, size=shape), 23.75)
    ev_share = rng.uniform(0.1, 0.4, size=shape)

    day = np.broadcast_to(np.arange(n_days)[:, None], shape)

    def slots(hours: FloatArray) -> FloatArray:
        return local_time_to_slot_position(grid, day.ravel(), hours.ravel()).reshape(shape)

    # Unplugged from the slot the departure falls in to the slot the return falls in (incl.).
    s_dep = np.floor(slots(dep)).astype(np.int64)
    s_ret = np.ceil(slots(ret)).astype(np.int64)
    s_ev_dep = np.floor(slots(ev_dep)).astype(np.int64)
    s_ev_ret = np.ceil(slots(ev_ret)).astype(np.int64)
    # An evening trip needs a plugged slot after the main trip, and must end after it starts.
    evening &= (s_ev_dep > s_ret) & (ev_ret > ev_dep)
    main_km = np.where(evening, km * (1.0 - ev_share), km)
    ev_km = np.where(evening, km * ev_share, 0.0)

    away = np.zeros((t_slots + 1, n), dtype=np.int32)
    plugged_energy = np.zeros((t_slots + 1, n), dtype=np.float64)
    cols = np.broadcast_to(np.arange(n)[None, :], shape)
    for take, s0, s1, dist in (
        (used, s_dep, s_ret, main_km),
        (evening, s_ev_dep, s_ev_ret, ev_km),
    ):
        a = np.clip(s0[take], 0, t_slots)
        b = np.clip(s1[take], 0, t_slots)
        c = cols[take]
        np.add.at(away, (a, c), 1)
        np.add.at(away, (b, c), -1)
        booked = (s1[take] >= 0) & (s1[take] < t_slots)
        np.add.at(
            plugged_energy,
            (s1[take][booked], c[booked]),
            (dist[take] * per_km[c])[booked],
        )
    plugged = np.cumsum(away[:-1], axis=0) == 0
    return EvProfile(plugged=plugged, trip_kwh=plugged_energy[:-1])
