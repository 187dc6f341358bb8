"""Stochastic bottom-up household electricity demand (no heating, no EV).

The model follows the structure of the CREST demand model (Richardson, Thomson, Infield and
Clifford, "Domestic electricity use: a high-resolution energy demand model", Energy and
Buildings 42 (2010) 1878-1887; occupancy after Richardson, Thomson and Infield, Energy and
Buildings 40 (2008) 1560-1566): occupancy drives appliance switch-on events and lighting, on top
of a base load. Its parameters are ours (plausible values for a German household), not CREST's
UK time-use statistics, and it is written to run across all households and days at once.

Per household and local day:

1. **Occupancy**: a Markov chain on 5-minute steps of local clock time over three states,
   *away*, *at home inactive* (asleep or passive) and *at home active*. Its state probabilities
   follow target curves built from the household kind, the day type (weekday, Saturday,
   Sunday) and the household's own habits: a wake-up and a bed time and typical absences
   (work, school, shopping, evenings out), each shifted per household by a random offset. The
   transition matrix of each step is the one that meets the next step's target with the fewest
   changes of state (people stay where they are as long as the targets allow), mixed with a
   churn that redraws active/inactive at home with probability 8 % per step, so activity comes
   in spells of tens of minutes. The chain therefore has exactly the target marginals, which
   makes the expected demand computable (see 6.). Each day's chain starts from the target
   distribution at midnight (days are independent; households are almost all asleep then).
   Kinds: ``working`` (away on weekdays 8-17), ``family`` (often someone at home, school
   hours away), ``retired`` (mostly at home, short outings), ``student`` (late, irregular).
2. **Appliances**: switch-on events of kettle, coffee machine, microwave, hob, oven,
   dishwasher, washing machine, tumble dryer, vacuum cleaner, iron and hair dryer. Candidate
   events arrive as a Poisson process with an appliance-specific time-of-day density (meal
   times, mornings, evenings) shifted by the household's own routine (normal, 0.6 h), a rate
   growing with the number of occupants, a weekend factor and per-household ownership and
   usage intensity; a candidate becomes an event only if the
   household is active at that moment (thinning). An event draws its cycle's power phases (e.g.
   a washing machine heats at 2 kW for 15 min, then runs the drum at 0.25 kW), its duration
   varying ±25 % (log-normal). Energy goes into the slots the cycle overlaps.
3. **Active load**: TV, IT and small appliances draw a household-specific power (0.15 kW for
   two occupants on average, ∝ occupants^0.5) while the household is active, times a
   log-normal factor per day.
4. **Lighting** (CREST's idea of irradiance and active occupancy): lights draw a household-
   specific power (0.12 kW for two occupants on average, ∝ occupants^0.4) times the active
   occupancy times darkness, darkness = max(0, 1 - GHI / G0) with G0 between 80 and 180 W/m²
   per household.
5. **Base load**: fridge and (40 % of households) freezer compressor cycles (square waves with
   household-specific power, duty cycle, period and phase), standby and always-on devices.
6. **Calibration, day by day**: the model's *expected* energy of each household and local day
   (computed from the occupancy marginals, event rates and their acceptance, the day's
   irradiance and the base load, not from the random draw) is scaled to
   `annual_kwh` / 365 × seasonal factor × day-type level × (day hours / 24). The seasonal factor
   (`seasonal_factor`) makes winter days about 35 % heavier than summer days, as in German
   household load; the day-type level is the model's own weekday/Saturday/Sunday ratio. So the
   expected energy of any 365 days is `annual_kwh`, a January week gets a January share whether
   it is run alone or inside a year, and the realised annual energy scatters by a few per cent
   around `annual_kwh`. Weather shapes lighting within the day; the daily totals follow the
   seasonal curve.

Local clock time rules: profiles are computed per local clock bin and placed on the UTC grid, so
on the spring-forward day the missing hour is skipped and on the fall-back day the repeated hour
repeats its bins.

Households differ in habits, appliances, powers and random draws, so two households of the
same kind and size are not scaled copies of each other; their 15-minute profiles correlate
weakly (r ≈ 0.1-0.3).

Checked against BDEW's H25 standard household profile (tests/data/test_demand.py): the mean
of 300 households correlates with H25 at r ≈ 0.96 (diurnal shape; weekdays 0.97, Saturdays
0.92, Sundays 0.87) and 0.92 over the 15-minute series of twelve weeks. The model's evening
peak is sharper than H25's (about 2.0 instead of 1.5 times the daily mean) and its night
base lower (0.45 instead of 0.6): H25 also averages over electric hot water, pumps and other
loads this model leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.data._localtime import local_clock_bin
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

HOUSEHOLD_KINDS = ("working", "family", "retired", "student")

STEP_MINUTES = 5
STEPS_PER_DAY = 24 * 60 // STEP_MINUTES
_STEP_H = np.arange(STEPS_PER_DAY, dtype=np.float64) * STEP_MINUTES / 60.0 + STEP_MINUTES / 120.0
_AWAY, _INACTIVE, _ACTIVE = 0, 1, 2
_CHURN = 0.08
_EDGE_H = 0.25  # softness of the edges of absences [h]


# ---------------------------------------------------------------------------------------------
# occupancy targets per kind and day type (0 weekday, 1 Saturday, 2 Sunday)


@dataclass(frozen=True)
class _Habits:
    """A household kind: wake and bed times [h] per day type, and typical absences.

    `absences[day_type]` holds (start_h, end_h, probability) of being away (everybody out);
    end_h may exceed 24 (back after midnight).
    """

    wake_h: tuple[float, float, float]
    bed_h: tuple[float, float, float]
    absences: tuple[tuple[tuple[float, float, float], ...], ...]
    nap: float = 0.0  # reduction of activity 13:00-15:00 [-]


_KINDS: dict[str, _Habits] = {
    "working": _Habits(
        wake_h=(6.25, 8.0, 8.5),
        bed_h=(23.0, 24.0, 23.25),
        absences=(
            ((7.75, 17.25, 0.88), (19.5, 22.5, 0.12)),
            ((10.0, 13.0, 0.45), (14.5, 18.0, 0.35), (20.0, 24.0, 0.3)),
            ((11.0, 17.0, 0.35),),
        ),
    ),
    "family": _Habits(
        wake_h=(6.5, 7.75, 8.0),
        bed_h=(22.75, 23.5, 22.75),
        absences=(
            ((8.0, 12.5, 0.6), (12.5, 15.5, 0.35), (16.5, 18.0, 0.15)),
            ((10.0, 12.5, 0.4), (14.5, 17.5, 0.35)),
            ((10.5, 17.0, 0.3),),
        ),
    ),
    "retired": _Habits(
        wake_h=(7.25, 7.5, 7.75),
        bed_h=(22.5, 22.75, 22.5),
        absences=(
            ((9.5, 11.75, 0.35), (14.5, 16.5, 0.2)),
            ((9.5, 12.0, 0.35), (15.0, 17.0, 0.15)),
            ((10.0, 12.0, 0.25), (14.5, 17.0, 0.25)),
        ),
        nap=0.3,
    ),
    "student": _Habits(
        wake_h=(7.75, 10.0, 10.5),
        bed_h=(24.75, 25.5, 24.5),
        absences=(
            ((8.75, 16.0, 0.65), (20.0, 24.5, 0.25)),
            ((13.0, 18.0, 0.35), (21.0, 26.0, 0.4)),
            ((13.0, 18.0, 0.35),),
        ),
    ),
}
_MAX_ABSENCES = max(len(a) for h in _KINDS.values() for a in h.absences)


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


def _window(h: FloatArray, start: FloatArray, end: FloatArray, edge: float) -> FloatArray:
    """Soft indicator of start <= h < end, also for windows that pass midnight (end > 24)."""
    a = _sigmoid((h - start) / edge) * _sigmoid((end - h) / edge)
    b = _sigmoid((h + 24.0 - start) / edge) * _sigmoid((end - h - 24.0) / edge)
    return np.maximum(a, b)


def _occupancy_targets(kind_idx: IntArray, rng: np.random.Generator) -> FloatArray:
    """Target state probabilities, array (3 day types, STEPS_PER_DAY, P, 3 states)."""
    p = int(kind_idx.shape[0])
    kinds = [_KINDS[k] for k in HOUSEHOLD_KINDS]
    wake = np.array([k.wake_h for k in kinds])[kind_idx].T  # (3, P)
    bed = np.array([k.bed_h for k in kinds])[kind_idx].T
    nap = np.array([k.nap for k in kinds])[kind_idx]
    absences = np.zeros((len(kinds), 3, _MAX_ABSENCES, 3))
    for i, k in enumerate(kinds):
        for d, day in enumerate(k.absences):
            absences[i, d, : len(day)] = day
    ab = absences[kind_idx].transpose(1, 0, 2, 3)  # (3, P, A, 3)

    # Household habits: its own wake/bed times and absence times and propensities.
    wake = wake + rng.normal(0.0, 0.5, size=p)[None, :]
    bed = bed + rng.normal(0.0, 0.6, size=p)[None, :]
    shift = rng.normal(0.0, 0.5, size=p)
    out_scale = rng.uniform(0.7, 1.2, size=p)
    h = _STEP_H[None, :, None]  # (1, S, 1)

    awake = _window(h, wake[:, None, :], bed[:, None, :], 0.35)  # (3, S, P)
    if np.any(nap > 0):
        awake *= 1.0 - nap[None, None, :] * _window(h, np.full(1, 13.0), np.full(1, 15.0), 0.3)
    p_active_home = 0.03 + 0.9 * awake
    home = np.ones_like(awake)
    for a in range(_MAX_ABSENCES):
        start = ab[:, :, a, 0] + shift[None, :]
        end = ab[:, :, a, 1] + shift[None, :]
        prob = np.minimum(ab[:, :, a, 2] * out_scale[None, :], 0.97)
        home *= 1.0 - prob[:, None, :] * _window(h, start[:, None, :], end[:, None, :], _EDGE_H)
    targets = np.empty((*awake.shape, 3), dtype=np.float64)
    targets[..., _AWAY] = 1.0 - home
    targets[..., _ACTIVE] = home * p_active_home
    targets[..., _INACTIVE] = home * (1.0 - p_active_home)
    return targets


def _run_occupancy(
    targets: FloatArray, day_type: IntArray, rng: np.random.Generator
) -> NDArray[np.int8]:
    """Simulate the occupancy chains of all (day, household), array (D, STEPS_PER_DAY, P)."""
    n_days = day_type.shape[0]
    p = targets.shape[2]
    states = np.empty((n_days, STEPS_PER_DAY, p), dtype=np.int8)
    cur = targets[:, 0][day_type]  # (D, P, 3)
    u = rng.random((n_days, p))
    x = (u >= cur[..., 0]).astype(np.int8) + (u >= cur[..., 0] + cur[..., 1])
    for s in range(STEPS_PER_DAY):
        states[:, s, :] = x
        if s == STEPS_PER_DAY - 1:
            break
        nxt = targets[:, s + 1][day_type]
        xi = x[..., None].astype(np.intp)
        p_now = np.take_along_axis(cur, xi, axis=2)[..., 0]
        p_next = np.take_along_axis(nxt, xi, axis=2)[..., 0]
        # Fewest changes: stay with min(1, p_next / p_now), leavers go to the states that gain.
        stay = np.minimum(np.divide(p_next, p_now, out=np.ones_like(p_now), where=p_now > 0), 1.0)
        gain = np.clip(nxt - cur, 0.0, None)
        u = rng.random((n_days, p))
        leave = u >= stay
        v = (u - stay) / np.maximum(1.0 - stay, 1e-12) * gain.sum(axis=2)
        dest = (v >= gain[..., 0]).astype(np.int8) + (v >= gain[..., 0] + gain[..., 1])
        x = np.where(leave, dest, x)
        # Churn at home: redraw active/inactive from the next targets.
        u = rng.random((n_days, p))
        redraw = (x > 0) & (u < _CHURN)
        home = nxt[..., 1] + nxt[..., 2]
        p_act = np.divide(nxt[..., 2], home, out=np.zeros_like(home), where=home > 0)
        x = np.where(redraw, (1 + (u < _CHURN * p_act)).astype(np.int8), x)
        cur = nxt
    return states


# ---------------------------------------------------------------------------------------------
# appliances


@dataclass(frozen=True)
class _Appliance:
    """An activity-driven appliance.

    Attributes:
        name: appliance name.
        ownership: share of households that own one [-].
        events_per_day: candidate switch-ons per day of a 2-person household that is active
            all day [1/d] (thinned by active occupancy).
        occupant_exponent: rate ∝ (occupants / 2) ** exponent.
        phases: the cycle as (power [kW], duration [min]) phases.
        tod: time-of-day density: (hour, width [h], weight) Gaussian bumps on a floor.
        floor: weight of the flat floor of the time-of-day density.
        weekend: rate factor on Saturdays and Sundays.
        shiftable: a shiftable appliance (left out where include_shiftable is False).
    """

    name: str
    ownership: float
    events_per_day: float
    occupant_exponent: float
    phases: tuple[tuple[float, float], ...]
    tod: tuple[tuple[float, float, float], ...]
    floor: float
    weekend: float = 1.0
    shiftable: bool = False


APPLIANCES: tuple[_Appliance, ...] = (
    _Appliance("kettle", 0.85, 4.0, 0.5, ((2.0, 3.0),),
               ((7.0, 1.0, 1.0), (10.5, 1.5, 0.5), (13.0, 1.0, 0.6), (16.0, 1.5, 0.7),
                (19.5, 2.0, 0.6)), 0.1),
    _Appliance("coffee machine", 0.7, 2.0, 0.4, ((1.2, 4.0),),
               ((7.0, 1.0, 1.0), (9.5, 1.0, 0.5), (14.5, 1.5, 0.5)), 0.1),
    _Appliance("microwave", 0.7, 1.5, 0.5, ((0.9, 5.0),),
               ((12.5, 1.0, 1.0), (18.5, 1.5, 1.0)), 0.2),
    _Appliance("hob", 1.0, 1.3, 0.4, ((1.6, 25.0),),
               ((12.25, 0.75, 0.6), (18.5, 1.25, 1.0)), 0.03, weekend=1.2),
    _Appliance("oven", 0.85, 0.35, 0.4, ((1.9, 15.0), (0.9, 35.0)),
               ((12.0, 1.0, 0.5), (18.25, 1.25, 1.0)), 0.03, weekend=1.6),
    _Appliance("dishwasher", 0.7, 0.6, 0.6, ((1.9, 20.0), (0.15, 70.0)),
               ((13.5, 1.0, 0.5), (20.5, 1.5, 1.0)), 0.05, shiftable=True),
    _Appliance("washing machine", 0.95, 0.35, 0.7, ((2.0, 15.0), (0.25, 75.0)),
               ((10.0, 2.0, 1.0), (17.0, 2.0, 0.6)), 0.1, weekend=1.4, shiftable=True),
    _Appliance("tumble dryer", 0.4, 0.25, 0.7, ((2.3, 60.0),),
               ((12.0, 2.0, 1.0), (19.0, 2.0, 0.7)), 0.1, weekend=1.3, shiftable=True),
    _Appliance("vacuum cleaner", 0.95, 0.3, 0.3, ((1.0, 20.0),),
               ((10.5, 1.5, 1.0), (16.0, 2.0, 0.6)), 0.05, weekend=1.5),
    _Appliance("iron", 0.7, 0.15, 0.5, ((0.8, 30.0),),
               ((11.0, 2.0, 0.5), (20.0, 2.0, 1.0)), 0.05),
    _Appliance("hair dryer", 0.6, 0.5, 0.8, ((1.4, 6.0),),
               ((7.0, 1.0, 1.0), (19.0, 2.0, 0.3)), 0.05),
)  # fmt: skip

_DURATION_SIGMA = 0.25
_DAY_BLOCK = 32  # days per block of the (T, P) passes, to bound temporary memory
_DAY_FACTOR_SIGMA = 0.35


def _tod_density(app: _Appliance) -> FloatArray:
    """Time-of-day density of candidate events over the steps of a day, sums to 1."""
    w = np.full(STEPS_PER_DAY, app.floor)
    for hour, width, weight in app.tod:
        d = (_STEP_H - hour + 12.0) % 24.0 - 12.0  # circular distance [h]
        w += weight * np.exp(-0.5 * (d / width) ** 2)
    return np.asarray(w / w.sum(), dtype=np.float64)


def _lognormal_mean_one(
    rng: np.random.Generator, sigma: float, size: int | tuple[int, int]
) -> FloatArray:
    """Log-normal factors with mean 1."""
    return np.asarray(np.exp(sigma * rng.standard_normal(size) - 0.5 * sigma * sigma), np.float64)


class _BinAccumulator:
    """Energy [kWh] per (local clock bin, household), collected as sparse contributions."""

    def __init__(self, n_bins: int, n_households: int, bin_minutes: int) -> None:
        self.n_bins = n_bins
        self.p = n_households
        self.bin_minutes = bin_minutes
        self.index: list[IntArray] = []
        self.energy: list[FloatArray] = []

    def add(
        self, hh: IntArray, start_min: FloatArray, dur_min: FloatArray, p_kw: FloatArray
    ) -> None:
        """Add constant-power intervals [start, start + dur) (minutes since the first local
        midnight of the run, local clock) of household `hh`."""
        m = float(self.bin_minutes)
        end = start_min + dur_min
        b0 = np.floor(start_min / m).astype(np.int64)
        span = int(np.ceil(float(dur_min.max(initial=0.0)) / m)) + 1
        for k in range(span):
            b = b0 + k
            overlap = np.minimum(end, (b + 1) * m) - np.maximum(start_min, b * m)
            ok = (overlap > 0.0) & (b < self.n_bins)
            if not ok.any():
                continue
            self.index.append(b[ok] * self.p + hh[ok])
            self.energy.append(p_kw[ok] * overlap[ok] / 60.0)

    def total(self) -> FloatArray:
        """Dense (n_bins, P) array."""
        if not self.index:
            return np.zeros((self.n_bins, self.p))
        flat = np.bincount(
            np.concatenate(self.index),
            weights=np.concatenate(self.energy),
            minlength=self.n_bins * self.p,
        )
        return np.asarray(flat.reshape(self.n_bins, self.p), dtype=np.float64)


def _square_wave_slot_mean(
    t0_min: FloatArray, t1_min: float, period_min: FloatArray, duty: FloatArray,
    phase_min: FloatArray,
) -> FloatArray:  # fmt: skip
    """Mean over [t0, t0 + t1) of a 0/1 square wave that is on for the first `duty` share of
    each period; t0 (T, 1), parameters (1, P) -> (T, P)."""

    def integral(t: FloatArray) -> FloatArray:
        x = t + phase_min
        n = np.floor(x / period_min)
        return np.asarray(
            n * duty * period_min + np.minimum(x - n * period_min, duty * period_min), np.float64
        )

    return np.asarray((integral(t0_min + t1_min) - integral(t0_min)) / t1_min, dtype=np.float64)


# ---------------------------------------------------------------------------------------------


def _validate(
    grid: SlotGrid,
    annual_kwh: FloatArray,
    occupants: IntArray,
    kind: NDArray[np.str_],
    ghi_w_m2: FloatArray,
) -> IntArray:
    p = int(annual_kwh.shape[0])
    if annual_kwh.ndim != 1 or occupants.shape != (p,) or kind.shape != (p,):
        raise InputError(
            f"demand: annual_kwh {annual_kwh.shape}, occupants {occupants.shape} and kind "
            f"{kind.shape} must be 1-D arrays of the same length"
        )
    bad = ~np.isfinite(annual_kwh) | (annual_kwh < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"demand.annual_kwh[{i}]: must be finite and >= 0 (got {annual_kwh[i]})")
    if (occupants < 1).any():
        i = int(np.flatnonzero(occupants < 1)[0])
        raise InputError(f"demand.occupants[{i}]: must be >= 1 (got {occupants[i]})")
    lookup = {k: i for i, k in enumerate(HOUSEHOLD_KINDS)}
    unknown = [str(k) for k in kind if str(k) not in lookup]
    if unknown:
        raise InputError(
            f"demand.kind: unknown household kind {unknown[0]!r}; choose one of {HOUSEHOLD_KINDS}"
        )
    if ghi_w_m2.shape != (grid.n_slots,):
        raise InputError(f"demand: ghi_w_m2 has shape {ghi_w_m2.shape}, expected ({grid.n_slots},)")
    if not np.isfinite(ghi_w_m2).all():
        raise InputError("demand: ghi_w_m2 must be finite")
    return np.array([lookup[str(k)] for k in kind], dtype=np.int64)


def household_demand_kwh(
    grid: SlotGrid,
    rng: np.random.Generator,
    *,
    annual_kwh: FloatArray,
    occupants: IntArray,
    kind: NDArray[np.str_],
    ghi_w_m2: FloatArray,
    include_shiftable: NDArray[np.bool_] | None = None,
    latitude_deg: float = 50.0,
) -> FloatArray:
    """Household electricity demand per slot [kWh], array (T, P), >= 0 (model: module docstring).

    Args:
        grid: the run's slot grid.
        rng: random generator (the only source of randomness; equal seeds, equal profiles).
        annual_kwh: expected annual consumption of each household [kWh/a], (P,).
        occupants: persons per household, (P,), >= 1.
        kind: household kind per household, one of `HOUSEHOLD_KINDS`, (P,).
        ghi_w_m2: global horizontal irradiance on the grid [W/m²], (T,) (drives lighting).
        include_shiftable: per household, (P,): whether its dishwasher, washing machine and
            tumble dryer runs are in the profile. Leave them out (False) for a household whose
            shiftable appliances are simulated as jobs (`shiftable_jobs`), so they are not
            counted twice; the calibration still counts them, so `annual_kwh` keeps meaning the
            household's total consumption. None (default): included for every household.
        latitude_deg: latitude of the community [deg]; sets the hemisphere and amplitude of the
            seasonal level (`seasonal_factor`).
    """
    annual_kwh = np.asarray(annual_kwh, dtype=np.float64)
    occupants = np.asarray(occupants, dtype=np.int64)
    kind = np.asarray(kind, dtype=np.str_)
    ghi_w_m2 = np.asarray(ghi_w_m2, dtype=np.float64)
    kind_idx = _validate(grid, annual_kwh, occupants, kind, ghi_w_m2)
    p = int(annual_kwh.shape[0])
    include = np.ones(p, dtype=bool) if include_shiftable is None else np.asarray(include_shiftable)
    if include.shape != (p,) or include.dtype != np.bool_:
        raise InputError(f"demand.include_shiftable: expected a boolean array of shape ({p},)")
    n_days = grid.days
    bin_min = grid.slot_minutes
    bins_per_day = 24 * 60 // bin_min
    steps_per_bin = bin_min // STEP_MINUTES
    n_bins = n_days * bins_per_day
    dt_h = grid.dt_h

    first_weekday = grid.start_local.weekday()
    weekday = (first_weekday + np.arange(n_days)) % 7
    day_type = np.where(weekday < 5, 0, np.where(weekday == 5, 1, 2)).astype(np.int64)
    occ_rel = occupants.astype(np.float64) / 2.0

    # --- occupancy ---------------------------------------------------------------------------
    targets = _occupancy_targets(kind_idx, rng)  # (3, S, P, 3)
    states = _run_occupancy(targets, day_type, rng)  # (D, S, P)
    active_bin = (
        (states == _ACTIVE)
        .reshape(n_days, bins_per_day, steps_per_bin, p)
        .mean(axis=2, dtype=np.float32)
        .reshape(n_bins, p)
    )
    p_active = targets[..., _ACTIVE]  # (3, S, P)
    p_active_bin = p_active.reshape(3, bins_per_day, steps_per_bin, p).mean(axis=2)

    # --- activity-driven appliances, in local clock bins -------------------------------------
    acc = _BinAccumulator(n_bins, p, bin_min)
    exp_type_kwh = np.zeros((3, p))  # expected activity-driven energy per day type
    # Each household keeps its own routine: its time-of-day densities are shifted by it.
    routine = np.round(rng.normal(0.0, 0.6, size=p) * 60.0 / STEP_MINUTES).astype(np.int64)
    shifted = (np.arange(STEPS_PER_DAY)[:, None] - routine[None, :]) % STEPS_PER_DAY  # (S, P)
    for app in APPLIANCES:
        own = rng.random(p) < app.ownership
        intensity = _lognormal_mean_one(rng, 0.3, p) * own * occ_rel**app.occupant_exponent
        p_factor = rng.uniform(0.85, 1.15, size=p)
        tod = _tod_density(app)
        # P(active) at a candidate's time, per day type, (3, P)
        accept = np.einsum("sp,ksp->kp", tod[shifted], p_active)
        type_rate = app.events_per_day * np.array([1.0, app.weekend, app.weekend])
        e_cycle = sum(pw * dur for pw, dur in app.phases) / 60.0 * p_factor  # (P,) [kWh]
        exp_type_kwh += type_rate[:, None] * accept * (e_cycle * intensity)[None, :]
        counts = rng.poisson(type_rate[day_type][:, None] * intensity[None, :])  # (D, P)
        flat = np.repeat(np.arange(n_days * p), counts.ravel())
        d_ev, hh = np.divmod(flat, p)
        step = np.minimum(
            np.searchsorted(np.cumsum(tod), rng.random(flat.size), side="right"),
            STEPS_PER_DAY - 1,
        )
        step = (step + routine[hh]) % STEPS_PER_DAY
        keep = states[d_ev, step, hh] == _ACTIVE
        d_ev, hh, step = d_ev[keep], hh[keep], step[keep]
        start = (d_ev * STEPS_PER_DAY + step + rng.random(hh.size)) * STEP_MINUTES
        scale = _lognormal_mean_one(rng, _DURATION_SIGMA, hh.size)
        if app.shiftable:
            keep = include[hh]
            hh, start, scale = hh[keep], start[keep], scale[keep]
        for pw, dur in app.phases:
            length = dur * scale
            acc.add(hh, start, length, pw * p_factor[hh])
            start = start + length
    local = acc.total()
    del states

    # --- active load (TV, IT, small appliances) -------------------------------------------------
    active_kw = 0.15 * occ_rel**0.5 * _lognormal_mean_one(rng, 0.35, p)
    day_factor = _lognormal_mean_one(rng, _DAY_FACTOR_SIGMA, (n_days, p))
    local.reshape(n_days, bins_per_day, p)[:] += (
        active_bin.reshape(n_days, bins_per_day, p) * (day_factor * active_kw)[:, None, :] * dt_h
    )
    exp_type_kwh += active_kw[None, :] * dt_h * p_active_bin.sum(axis=1)

    # --- onto the grid ---------------------------------------------------------------------------
    bin_of_slot = local_clock_bin(grid)
    row = grid.local_day * bins_per_day + bin_of_slot
    out = local[row]
    del local

    # --- lighting and base load, on the grid, a block of days at a time ---------------------------
    light_kw = 0.12 * occ_rel**0.4 * _lognormal_mean_one(rng, 0.3, p)
    g0 = rng.uniform(80.0, 180.0, size=p)
    fridge_kw = rng.uniform(0.07, 0.12, size=p)
    fridge_duty = rng.uniform(0.3, 0.42, size=p)
    freezer_kw = rng.uniform(0.07, 0.12, size=p) * (rng.random(p) < 0.4)
    freezer_duty = rng.uniform(0.3, 0.45, size=p)
    cycles = []
    for kw, duty in ((fridge_kw, fridge_duty), (freezer_kw, freezer_duty)):
        period = rng.uniform(40.0, 70.0, size=p)
        cycles.append((kw, duty, period, rng.uniform(0.0, 1.0, size=p) * period))
    steady_kw = 0.06 * _lognormal_mean_one(rng, 0.4, p) + 0.04 * _lognormal_mean_one(rng, 0.6, p)
    base_kw = steady_kw + fridge_kw * fridge_duty + freezer_kw * freezer_duty

    first = grid.day_first_slot
    slot_type = day_type[grid.local_day]
    exp_light_kwh = np.empty((n_days, p))
    for d0 in range(0, n_days, _DAY_BLOCK):
        d1 = min(d0 + _DAY_BLOCK, n_days)
        sl = slice(int(first[d0]), int(first[d1]))
        dark = np.clip(1.0 - ghi_w_m2[sl, None] / g0[None, :], 0.0, 1.0)  # (t, P)
        dark *= light_kw[None, :] * dt_h
        expected = dark * p_active_bin[slot_type[sl], bin_of_slot[sl]]
        exp_light_kwh[d0:d1] = np.add.reduceat(expected, first[d0:d1] - first[d0], axis=0)
        del expected
        dark *= active_bin[row[sl]]
        block = out[sl]
        block += dark
        del dark
        t0 = (np.arange(sl.start, sl.stop, dtype=np.float64) * bin_min)[:, None]
        for kw, duty, period, phase in cycles:
            block += (
                _square_wave_slot_mean(
                    t0, float(bin_min), period[None, :], duty[None, :], phase[None, :]
                )
                * (kw * dt_h)[None, :]
            )
        block += (steady_kw * dt_h)[None, :]

    # --- calibration, day by day ----------------------------------------------------------------
    hours = np.diff(first).astype(np.float64) * dt_h  # (D,) 23, 24 or 25 h
    exp_day_kwh = exp_type_kwh[day_type] + hours[:, None] * base_kw[None, :] + exp_light_kwh
    # Relative level of the day types in the model (without lighting), mean 1 over a week.
    level = exp_type_kwh + 24.0 * base_kw[None, :]
    level /= (5.0 * level[0] + level[1] + level[2]) / 7.0
    dates = np.datetime64(grid.start_local, "D") + np.arange(n_days)
    doy = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    season = seasonal_factor(doy, latitude_deg)
    target = (
        (annual_kwh / 365.0)[None, :] * season[:, None] * level[day_type] * (hours / 24.0)[:, None]
    )
    factor = target / exp_day_kwh
    for d in range(n_days):
        out[int(first[d]) : int(first[d + 1])] *= factor[d][None, :]
    return np.asarray(out, dtype=np.float64)


def seasonal_factor(day_of_year: IntArray, latitude_deg: float) -> FloatArray:
    """Seasonal level of household consumption, mean 1 over a year [-].

    1 + A·cos(2π (doy - 10) / 365.25): highest around 10 January (10 July in the southern
    hemisphere), A = 0.15 poleward of 45° and smaller towards the equator. The amplitude is
    that of German household load (BDEW's H25 profile: January about 35 % above July).
    `day_of_year` counts from 0 on 1 January.
    """
    amplitude = 0.15 * min(abs(latitude_deg) / 45.0, 1.0) * (1.0 if latitude_deg >= 0 else -1.0)
    return np.asarray(
        1.0 + amplitude * np.cos(2.0 * np.pi * (day_of_year + 1 - 10) / 365.25), dtype=np.float64
    )
