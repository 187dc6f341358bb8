"""`price-aware`: shift flexible consumption to the hours each participant expects to be cheap.

"Cheap" means the participant's own expected marginal price m: the feed-in price in a slot in
which it expects a PV surplus (own PV > base demand: one more kWh used costs the export it
displaces), the retail price otherwise. Expectations come from the `Forecast` window
(`horizon_h`, default 24 h); with the simulator's perfect foresight they are the realised
values. On top of `self-consumption` (PV serves the own load first, what is left charges the
battery), the policy decides:

- **Battery** (a plan, recomputed every `replan_h`, by default the horizon: with the 24 h
  default, a day-ahead plan at the start of each day of the run). Grid arbitrage is
  considered only where it pays: the dearest expected retail slot, after the round-trip
  losses η_c·η_d, must beat the cheapest retail slot by more than `min_spread_per_kwh`.
  Then, over the window, *refill* slots are retail slots at that cheapest price and
  *expensive* slots those whose price after losses still beats it. In a refill slot the
  battery charges from the grid up to the expected (power-limited) deficit of the expensive
  slots before the next refill, less the PV surplus it expects to store meanwhile; it does
  not discharge there. Elsewhere it covers the own deficit but holds back a reserve for
  dearer slots: the stored energy goes first to the most expensive expected deficits (a
  price threshold x found by sorting), and a slot below x (at x) discharges only what
  exceeds the expected deficit of the slots at or above x (above x) before the next refill.
  With a flat tariff, or no spread after losses, no slot is refill or expensive and the
  battery runs for self-consumption only — no pointless cycling.
- **EV** (planned at each arrival, and again when an assumed departure at the look-ahead's
  end comes): the energy still needed for the target is placed greedily in the cheapest
  plugged slots of the session (sorting prices along the horizon). Each slot offers two
  tranches: its expected PV surplus at the feed-in price and the rest of the charger's P·Δt at
  retail. This gives a price cap θ per EV and the energy the fill buys at exactly θ. In each
  slot the EV then takes the tranches priced below θ in full and those at θ until that energy
  is bought (earliest first), never past the target, and always at least the deadline
  minimum (`ev.min_charge_kwh`). PV surplus the battery cannot take goes into the EV beyond
  its target (when feed-in pays less than retail). A v2h EV covers the home deficit the
  battery leaves with its energy above the target and, where retail after its losses exceeds
  θ, below it down to the level from which the slots at <= θ still ahead reach the target
  (never below `ev.v2h_floor_kwh`); what it takes below the target is added to the energy to
  buy back at θ.
- **Heat pump / AC**: a slot is cheap when m ≤ lo + `thermal_cheap_fraction`·(hi − lo), with
  lo, hi the lowest and highest m in the window (never with a flat m); then the thermostat
  pre-heats (pre-cools) to the far edge of the comfort band − margin — where only the PV
  surplus is cheap (retail above the threshold), with no more than that surplus — otherwise it
  lets the building drift back to the near edge + margin, which it keeps.
- **Shiftable jobs** (planned with the battery for the windows that open before the next plan
  and lie inside the look-ahead, the others when they open): the start in the window (and
  within the look-ahead) with the least expected cost of the run, valuing energy up to the
  expected surplus at the feed-in price and the rest at retail; ties go to the earliest start.

Expected deficits and surpluses count base demand and PV only; the flexible loads are what is
being placed.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from pydantic import Field, model_validator

from peergrid.assets import battery, ev, thermal
from peergrid.assets.params import AssetParams, BoolArray, FloatArray, IntArray
from peergrid.ems.base import Dispatch, EmsParams, Forecast, SlotInputs
from peergrid.ems.bidding import draw_factors
from peergrid.ems.common import (
    Constants,
    PolicyParams,
    PolicyState,
    constants_for,
    ev_arrival,
    ev_v2h_floor_kwh,
    home_battery_dispatch,
    initial_state,
    limit_prices_for,
    make_dispatch,
    retire_and_open,
    settle,
    start_jobs,
    thermal_terms,
    with_due,
)

_TOL = 1e-9  # price and energy comparisons [currency/kWh], [kWh]
_UNPLANNED = -2  # a job start not planned ahead


class PriceAwareParams(PolicyParams):
    """Parameters of `price-aware` (besides the common `PolicyParams`: horizon_h = 24 h,
    comfort_margin_k = 0.5 K, bid_buy 0.5–1.0, bid_sell 0.0–0.5)."""

    replan_h: float | None = Field(
        None,
        gt=0.0,
        description="the battery and thermal plan is recomputed this often [h]; default the "
        "horizon (a day-ahead plan each day with the 24 h default)",
    )
    min_spread_per_kwh: float = Field(
        0.0,
        ge=0.0,
        description="grid arbitrage needs the price spread after losses to exceed this "
        "[currency/kWh]",
    )
    thermal_cheap_fraction: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="a slot is cheap for the heat pump when m <= lo + fraction·(hi − lo) [-]",
    )

    @model_validator(mode="after")
    def _replan_within_horizon(self) -> Self:
        if self.replan_h is not None and self.replan_h > self.horizon_h:
            raise ValueError(
                f"replan_h must be <= horizon_h (got {self.replan_h} > {self.horizon_h})"
            )
        return self


@dataclass(frozen=True, eq=False, slots=True)
class Plan:
    """Battery and thermal plan for the slots [t0, t0 + n_rows).

    Attributes:
        t0: first slot of the plan.
        n_rows: slots the plan covers; replanned after.
        arbitrage: any participant's battery plays the price spread.
        reserve_kwh: energy (AC, deliverable) to keep after each slot, (n_rows, P); +inf in
            refill slots (no discharge), 0 where the battery runs for self-consumption.
        refill_to_kwh: deliverable energy to charge up to from the grid, (n_rows, P); 0
            outside refill slots.
        row_holds, row_refills: per row, whether any reserve / refill target is set (so the
            slot can skip the arithmetic when none is).
        thermal_cheap_below: the heat pump's "cheap" price threshold, (P,) [currency/kWh].
    """

    t0: int
    n_rows: int
    arbitrage: bool
    reserve_kwh: FloatArray
    refill_to_kwh: FloatArray
    thermal_cheap_below: FloatArray
    row_holds: list[bool]
    row_refills: list[bool]


@dataclass(frozen=True, eq=False, slots=True)
class JobPlan:
    """Planned starts of a batch of jobs, planned together when the first of them opened.

    Attributes:
        pos0: position (earliest-start order) of the batch's first job.
        due: planned start of the jobs at positions pos0, pos0 + 1, …; −2 for those whose
            window was not inside the look-ahead (planned when they open).
    """

    pos0: int
    due: IntArray

    def due_of(self, first: int, stop: int) -> IntArray | None:
        """Planned starts of the jobs at positions [first, stop); None unless all are planned."""
        lo = first - self.pos0
        if lo < 0 or stop - self.pos0 > self.due.size:
            return None
        due = self.due[lo : stop - self.pos0]
        return None if np.count_nonzero(due == _UNPLANNED) else due


def plan_job_batch(first: int, forecast: Forecast, c: Constants, t: int) -> JobPlan:
    """Plan the jobs from position `first` whose windows open within the next quarter of the
    look-ahead; those whose window the look-ahead does not cover stay unplanned."""
    n_rows = forecast.retail_price.shape[0]
    stop = bisect.bisect_right(c.job_earliest_sorted, t + max(1, n_rows // 4) - 1)
    jobs = c.job_order[first : max(stop, first + 1)]
    due = np.full(jobs.size, _UNPLANNED, dtype=np.int64)
    visible = c.job_latest_start[jobs] + c.job_duration[jobs] <= t + n_rows
    visible |= c.job_earliest[jobs] <= t  # the jobs opening now are planned in any case
    due[visible] = plan_job_starts(jobs[visible], forecast, c, t)
    return JobPlan(first, due)


@dataclass(frozen=True, eq=False, slots=True)
class PriceAwareState(PolicyState):
    """`PolicyState` plus the price-aware plans.

    Attributes:
        ev_price_cap: θ, the price of the dearest tranche the current session's plan buys,
            (P,) [currency/kWh]; +inf before an EV's first session.
        ev_at_cap_kwh: AC energy still to buy in slots priced exactly θ, (P,) [kWh]; slots
            below θ charge at full power.
        ev_session_start_slot: slot at which the current session's plan was made, (P,).
        ev_refill_kwh: per row of the session plan (row 0 = its first slot) and EV, the AC
            energy the slots after that row can charge at prices <= θ, (H, P) [kWh]; v2h keeps
            the EV where that capacity still reaches the target.
        plan: the battery/thermal plan, None before the first step.
        job_plan: the last batch of planned job starts.
    """

    ev_price_cap: FloatArray
    ev_at_cap_kwh: FloatArray
    ev_session_start_slot: IntArray
    ev_refill_kwh: FloatArray
    plan: Plan | None
    job_plan: JobPlan | None


def marginal_prices(
    pv_kwh: FloatArray, base_kwh: FloatArray, retail: FloatArray, feed_in: FloatArray
) -> FloatArray:
    """Expected marginal price m: feed-in where PV exceeds base demand, else retail, (H, P)."""
    return np.where(pv_kwh > base_kwh, feed_in[:, None], retail[:, None])


def _reverse_cumsums(*contribs: FloatArray) -> list[FloatArray]:
    """R[g] = Σ_{k >= g} contrib[k] for each (H, k) contribution, as flat (H + 1)·k arrays
    with R[H] = 0. One pass over the rows for all of them (cheaper than one cumsum each)."""
    n_rows, k = contribs[0].shape
    stacked = np.concatenate(contribs, axis=1)
    rev = np.zeros((n_rows + 1, stacked.shape[1]))
    for g in range(n_rows - 1, -1, -1):
        np.add(rev[g + 1], stacked[g], out=rev[g])
    return [np.ascontiguousarray(rev[:, i * k : (i + 1) * k]).ravel() for i in range(len(contribs))]


def _next_index(mask: BoolArray, cols: IntArray) -> IntArray:
    """Flat index (row·k + column) of the first row >= g where `mask` holds, for every row g
    of an (H, k) mask and g = H; row H (one past the end) where it never holds."""
    n_rows, k = mask.shape
    rows = np.where(mask, np.arange(n_rows)[:, None], n_rows)
    nxt = np.full((n_rows + 1, k), n_rows, dtype=np.int64)
    np.minimum.accumulate(rows[::-1], axis=0, out=nxt[n_rows - 1 :: -1])
    flat: IntArray = nxt * k + cols
    return flat


def _row_flags(mask: BoolArray) -> list[bool]:
    return [bool(v) for v in np.asarray(mask.any(axis=1)).ravel()]


def make_plan(forecast: Forecast, c: Constants, params: PriceAwareParams, t: int) -> Plan:
    """The battery and thermal plan from slot t on (module docstring)."""
    n_rows = forecast.retail_price.shape[0]
    replan_h = params.horizon_h if params.replan_h is None else params.replan_h
    rows = min(n_rows, max(1, round(replan_h / c.dt_h)))
    pv, base = forecast.pv_kwh, forecast.base_demand_kwh
    retail = forecast.retail_price
    buying = pv <= base  # slots in which the participant expects to pay retail
    m = np.where(buying, retail[:, None], forecast.feed_in_price[:, None])
    lo = m.min(axis=0)
    span = m.max(axis=0) - lo
    thermal_cheap_below = np.where(span > _TOL, lo + params.thermal_cheap_fraction * span, -np.inf)

    eta_rt = c.bat_eta_c * c.bat_eta_d
    spread = params.min_spread_per_kwh + _TOL
    no_plan = Plan(t, rows, False, c.zeros, c.zeros, thermal_cheap_below, [], [])
    if float(retail.max()) * float(eta_rt.max(initial=0.0)) <= float(retail.min()) + spread:
        return no_plan  # flat enough: no spread survives the losses for anyone
    lo_grid = np.where(buying, m, np.inf).min(axis=0)
    hi_grid = np.where(buying, m, -np.inf).max(axis=0)
    arb = c.has_battery & (hi_grid * eta_rt > lo_grid + spread)
    n_arb = int(np.count_nonzero(arb))
    if n_arb == 0:
        return no_plan
    if n_arb == c.n:
        reserve, refill_to = _battery_plan(
            rows,
            m,
            buying=buying,
            shortfall=base - pv,
            lo_grid=lo_grid,
            c=c,
            which=np.arange(c.n),
            spread=spread,
        )
    else:  # plan only the batteries that play the spread; the others run self-consumption
        sub = np.flatnonzero(arb)
        reserve_sub, refill_sub = _battery_plan(
            rows,
            m[:, sub],
            buying=buying[:, sub],
            shortfall=base[:, sub] - pv[:, sub],
            lo_grid=lo_grid[sub],
            c=c,
            which=sub,
            spread=spread,
        )
        reserve = np.zeros((rows, c.n))
        refill_to = np.zeros((rows, c.n))
        reserve[:, sub] = reserve_sub
        refill_to[:, sub] = refill_sub
    return Plan(
        t,
        rows,
        True,
        reserve,
        refill_to,
        thermal_cheap_below,
        _row_flags(reserve > 0.0),
        _row_flags(refill_to > 0.0),
    )


def _battery_plan(
    rows: int,
    m: FloatArray,
    *,
    buying: BoolArray,
    shortfall: FloatArray,
    lo_grid: FloatArray,
    c: Constants,
    which: IntArray,
    spread: float,
) -> tuple[FloatArray, FloatArray]:
    """Reserve and refill target, (rows, k), for the k batteries `which` (module docstring).

    `m`, `buying` and `shortfall` (= base − PV) are the window's (H, k) columns of them.
    """
    k = m.shape[1]
    cols = np.arange(k)
    eta_rt = c.bat_eta_c[which] * c.bat_eta_d[which]
    e_max = c.bat_e_max_kwh[which]
    deficit = np.minimum(np.maximum(shortfall, 0.0), e_max)
    pv_store = np.minimum(np.maximum(-shortfall, 0.0), e_max) * eta_rt  # deliverable later
    refill = buying & (m <= lo_grid + _TOL)
    expensive = buying & (m * eta_rt > lo_grid + spread)
    usable = (c.bat_soc_max_kwh[which] - c.bat_soc_min_kwh[which]) * c.bat_eta_d[which]

    # hold threshold x: the price down to which the expensive deficits take up the battery
    exp_deficit = np.where(expensive, deficit, 0.0)
    key = np.where(expensive, -m, np.inf)
    order_flat = np.argsort(key, axis=0) * k + cols
    full = np.cumsum(exp_deficit.take(order_flat), axis=0) >= usable
    first = full.argmax(axis=0)
    x = np.where(full.any(axis=0), -key.take(order_flat[first, cols]), -np.inf)

    # segment sums up to the next refill slot, net of the PV surplus stored meanwhile
    nxt = _next_index(refill, cols)
    r_gt, r_ge, r_all = _reverse_cumsums(
        np.where(m > x, exp_deficit, 0.0) - pv_store,
        np.where(m >= x, exp_deficit, 0.0) - pv_store,
        exp_deficit - pv_store,
    )
    # reserve after slot h: what the slots after h (up to the next refill) need from storage
    after = slice(k, (rows + 1) * k)
    nxt_after = nxt[1 : rows + 1]
    need_gt = np.maximum(r_gt[after].reshape(rows, k) - r_gt.take(nxt_after), 0.0)
    need_ge = np.maximum(r_ge[after].reshape(rows, k) - r_ge.take(nxt_after), 0.0)
    mr = m[:rows]
    er = expensive[:rows]
    reserve = np.where(er & (mr > x), 0.0, np.where(er & (mr == x), need_gt, need_ge))
    reserve = np.where(refill[:rows], np.inf, reserve)

    # refill target: the stretch from the end of this refill run to the next refill
    stretch = _next_index(~refill, cols)[:rows]
    target = r_all.take(stretch) - r_all.take(nxt.ravel().take(stretch))
    refill_to = np.where(refill[:rows], np.clip(target, 0.0, usable), 0.0)
    return reserve, refill_to


def ev_price_caps(
    renewed: IntArray,
    soc_kwh: FloatArray,
    forecast: Forecast,
    c: Constants,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The session plan of the EVs in `renewed` (module docstring).

    Every session slot offers two tranches of charging energy: the expected PV surplus at the
    feed-in price, and the rest of the charger's P·Δt at the retail price. Filling the energy
    still needed from the cheapest tranches first (earliest among equal prices) sets θ, the
    price of the last tranche used.

    Returns:
        (θ, energy to buy at exactly θ [kWh], refill capacity at <= θ after each row (H, k)).
    """
    plug = forecast.ev_plugged[:, renewed]
    n_rows, k = plug.shape
    session = np.logical_and.accumulate(plug, axis=0)
    e_max = c.ev_power_kw[renewed] * c.dt_h
    surplus = np.maximum(forecast.pv_kwh[:, renewed] - forecast.base_demand_kwh[:, renewed], 0.0)
    from_pv = np.minimum(surplus, e_max) * session
    # tranches interleaved in time order: row 2h = slot h's surplus, 2h + 1 = its grid part
    capacity = np.stack([from_pv, e_max * session - from_pv], axis=1).reshape(2 * n_rows, k)
    price = np.stack(
        [
            np.broadcast_to(forecast.feed_in_price[:, None], (n_rows, k)),
            np.broadcast_to(forecast.retail_price[:, None], (n_rows, k)),
        ],
        axis=1,
    ).reshape(2 * n_rows, k)
    key = np.where(capacity > 0.0, price, np.inf)
    need = np.maximum(c.ev_target_kwh[renewed] - soc_kwh[renewed], 0.0) / c.ev_eta_c[renewed]

    # θ and the energy below it do not depend on the order among equal prices: no stable sort
    order = np.argsort(key, axis=0)
    cols = np.arange(k)
    flat = order * k + cols
    key_sorted = key.take(flat)
    enough = np.cumsum(capacity.take(flat), axis=0) >= need - _TOL
    cap = np.where(enough.any(axis=0), key_sorted[enough.argmax(axis=0), cols], np.inf)
    cap = np.where(need > _TOL, cap, key_sorted[0])  # nothing needed: the cheapest price
    at_cap = np.maximum(need - np.where(key < cap, capacity, 0.0).sum(axis=0), 0.0)
    usable = np.where(key <= cap, capacity, 0.0).reshape(n_rows, 2, k).sum(axis=1)
    refill = np.zeros((n_rows, k))
    refill[:-1] = np.cumsum(usable[:0:-1], axis=0)[::-1]  # the rows after each row
    return cap, at_cap, refill


def plan_job_starts(jobs: IntArray, forecast: Forecast, c: Constants, t: int) -> IntArray:
    """Start slot with the least expected cost for each job (module docstring).

    Candidates are the starts in the job's window, from slot t on, whose run ends inside the
    look-ahead; a job without such a start gets its latest feasible start (or t, if that has
    passed).
    """
    n_rows = forecast.retail_price.shape[0]
    part = c.job_participant[jobs]
    dur = c.job_duration[jobs]
    latest = c.job_latest_start[jobs]
    e_kwh = c.job_e_kwh[jobs]
    surplus = np.maximum(forecast.pv_kwh[:, part] - forecast.base_demand_kwh[:, part], 0.0)
    cost = forecast.feed_in_price[:, None] * np.minimum(e_kwh, surplus) + forecast.retail_price[
        :, None
    ] * np.maximum(e_kwh - surplus, 0.0)
    cum = np.zeros((n_rows + 1, jobs.size))
    cum[1:] = np.cumsum(cost, axis=0)
    first = np.maximum(c.job_earliest[jobs] - t, 0)  # start offsets first .. last
    last = np.minimum(latest - t, n_rows - dur)
    fallback = np.maximum(latest, t)
    width = int((last - first).max(initial=-1)) + 1
    if width <= 0:
        return fallback
    off = first + np.arange(width)[:, None]  # (width, k)
    valid = off <= last
    cols = np.arange(jobs.size)
    start_row = np.minimum(off, n_rows)
    end_row = np.minimum(off + dur, n_rows)
    k = jobs.size
    run_cost = cum.take(end_row * k + cols) - cum.take(start_row * k + cols)
    run_cost = np.where(valid, run_cost, np.inf)
    best = run_cost.min(axis=0)
    tie = np.abs(best) * 1e-12 + 1e-12
    best_off = off[(run_cost <= best + tie).argmax(axis=0), cols]
    return np.where(last >= first, t + best_off, fallback)


class PriceAware:
    """The `price-aware` policy (module docstring)."""

    name: ClassVar[str] = "price-aware"
    description: ClassVar[str] = (
        "shifts battery, EV, heat pump and appliances to the slots with the lowest own "
        "expected marginal price (feed-in under PV surplus, else retail)"
    )
    Params: ClassVar[type[EmsParams]] = PriceAwareParams
    observes_market: ClassVar[bool] = False
    reads_energy_forecast: ClassVar[bool] = True

    def __init__(
        self, params: PriceAwareParams, n_participants: int, rng: np.random.Generator
    ) -> None:
        self.params = params
        self.horizon_h = params.horizon_h
        self.factors = draw_factors(params, n_participants, rng)

    def init_state(self, assets: AssetParams) -> PriceAwareState:
        s = initial_state(assets)
        n = assets.n_participants
        return PriceAwareState(
            battery_soc_kwh=s.battery_soc_kwh,
            ev_soc_kwh=s.ev_soc_kwh,
            indoor_temp_c=s.indoor_temp_c,
            ev_departure_slot=s.ev_departure_slot,
            jobs=s.jobs,
            constants=None,
            limits=None,
            ev_price_cap=np.full(n, np.inf),
            ev_at_cap_kwh=np.zeros(n),
            ev_session_start_slot=np.zeros(n, dtype=np.int64),
            ev_refill_kwh=np.zeros((0, n)),
            plan=None,
            job_plan=None,
        )

    def step(
        self, state: PriceAwareState, inputs: SlotInputs, forecast: Forecast, assets: AssetParams
    ) -> tuple[PriceAwareState, Dispatch]:
        params = self.params
        c = constants_for(state, assets, inputs.dt_h, params.comfort_margin_k)
        t = inputs.t
        dt_h = inputs.dt_h
        pv = inputs.pv_kwh
        base = inputs.base_demand_kwh
        plugged = inputs.ev_plugged
        retail = inputs.retail_price

        plan = state.plan
        # a plan made for other assets is stale; a state without its per-run constants (the
        # first step, or one read back from bytes) keeps its plan
        stale = state.constants is not None and c is not state.constants
        if plan is None or t >= plan.t0 + plan.n_rows or stale:
            plan = make_plan(forecast, c, params, t)
        row = t - plan.t0

        soc_ev, unserved, departure, renewed = ev_arrival(
            c, state.ev_soc_kwh, state.ev_departure_slot, inputs, forecast
        )
        cap, at_cap = state.ev_price_cap, state.ev_at_cap_kwh
        session_start, refill_kwh = state.ev_session_start_slot, state.ev_refill_kwh
        if renewed.size:
            cap_new, at_cap_new, refill_new = ev_price_caps(renewed, soc_ev, forecast, c)
            cap, at_cap, session_start = cap.copy(), at_cap.copy(), session_start.copy()
            cap[renewed] = cap_new
            at_cap[renewed] = at_cap_new
            session_start[renewed] = t
            rows = max(refill_kwh.shape[0], refill_new.shape[0])
            grown = np.zeros((rows, c.n))
            grown[: refill_kwh.shape[0]] = refill_kwh
            grown[:, renewed] = 0.0
            grown[: refill_new.shape[0], renewed] = refill_new
            refill_kwh = grown

        free, effect = thermal_terms(c, state.indoor_temp_c, inputs.temp_out_c)
        if c.any_thermal:
            m_now = np.where(pv > base, inputs.feed_in_price, retail)
            cheap_heat = m_now <= plan.thermal_cheap_below
            setpoint = np.where(cheap_heat, c.th_far_c, c.th_near_c)
            e_th = thermal.energy_for_setpoint_kwh(free, setpoint, effect, c.th_e_max_kwh)
            # where only the PV surplus is cheap, pre-heat with the surplus only
            surplus_only = cheap_heat & (retail > plan.thermal_cheap_below)
            if np.count_nonzero(surplus_only):
                e_near = thermal.energy_for_setpoint_kwh(free, c.th_near_c, effect, c.th_e_max_kwh)
                capped = np.maximum(e_near, np.minimum(e_th, np.maximum(pv - base, 0.0)))
                e_th = np.where(surplus_only, capped, e_th)
            temp_next = thermal.next_temperature_c(free, e_th, effect)
        else:
            e_th, temp_next = c.zeros, free

        first_open = state.jobs.next_open
        job_plan = state.job_plan
        q, opened = retire_and_open(state.jobs, c, t)
        if opened.size:
            due = job_plan.due_of(first_open, q.next_open) if job_plan is not None else None
            if due is None:
                job_plan = plan_job_batch(first_open, forecast, c, t)
                due = job_plan.due[: opened.size]
            q = with_due(q, opened, due)
        if q.next_due <= t:
            q = start_jobs(q, c, t, q.pending_due <= t)
        q, e_job = settle(q, c, t)
        demand = base + e_th + e_job

        # EV: full power in slots at most θ (only the surplus where just that is cheap),
        # never less than the deadline minimum
        ev_power = c.ev_power_kw * plugged
        slots_left = departure - t
        min_charge, to_target = ev.charge_bounds_kwh(
            soc_ev,
            c.ev_target_kwh,
            power_kw=ev_power,
            efficiency_charge=c.ev_eta_c,
            slots_to_departure=slots_left,
            dt_h=dt_h,
        )
        ev_request = min_charge
        if np.count_nonzero(to_target):
            # the slot's two tranches: the surplus at the feed-in price, the rest at retail
            feed_in = inputs.feed_in_price
            from_pv = np.minimum(to_target, np.maximum(pv - demand, 0.0))
            from_grid = to_target - from_pv
            at_pv = np.minimum(from_pv, at_cap) * (feed_in == cap)
            at_grid = np.minimum(from_grid, at_cap - at_pv) * (retail == cap)
            wanted = from_pv * (feed_in < cap) + from_grid * (retail < cap) + at_pv + at_grid
            ev_request = np.maximum(wanted, min_charge)
            spent = at_pv + at_grid + (ev_request - wanted) * (retail == cap)
            if np.count_nonzero(spent):
                at_cap = np.maximum(at_cap - spent, 0.0)

        net = pv - demand - ev_request
        surplus = np.maximum(net, 0.0)
        deficit = np.maximum(-net, 0.0)
        soc = state.battery_soc_kwh
        charge_request, discharge_request = surplus, deficit
        if plan.arbitrage:
            if plan.row_holds[row]:
                deliverable = (soc - c.bat_soc_min_kwh) * c.bat_eta_d
                headroom = np.maximum(deliverable - plan.reserve_kwh[row], 0.0)
                discharge_request = np.minimum(deficit, headroom)
            if plan.row_refills[row]:
                refill_to = plan.refill_to_kwh[row]
                grid = (c.bat_soc_min_kwh + refill_to / c.bat_eta_d - soc) / c.bat_eta_c
                charge_request = np.maximum(surplus, grid * (refill_to > 0.0))
                discharge_request = discharge_request * (charge_request <= 0.0)
        bat = home_battery_dispatch(
            c,
            soc,
            charge_request,
            discharge_request,
        )

        ev_charge, ev_discharge = ev_request, c.zeros
        residual = net - bat.charge_kwh + bat.discharge_kwh
        if inputs.feed_in_price < retail:
            # PV surplus the battery could not take is stored in the EV beyond its target
            spill = np.maximum(residual, 0.0) * plugged
            if np.count_nonzero(spill):
                room = battery.charge_limit_kwh(
                    soc_ev, c.ev_capacity_kwh, ev_power, c.ev_eta_c, dt_h
                )
                ev_charge = ev_request + np.minimum(spill, np.maximum(room - ev_request, 0.0))
        if c.any_v2h:
            # v2h covers the deficit the battery leaves, with the energy above the target, and
            # below it where retail after the losses is worth more than θ, down to the level
            # from which the slots at <= θ still ahead reach the target; never while the
            # deadline asks for charging
            v2h_on = c.ev_v2h & plugged & (ev_request <= 0.0) & (residual < 0.0)
            if np.count_nonzero(v2h_on):
                worth = v2h_on & (retail * c.ev_eta_rt > cap)
                any_worth = bool(np.count_nonzero(worth))
                if any_worth:
                    floor = ev_v2h_floor_kwh(c, ev_power, slots_left)
                    row = np.minimum(t - session_start, refill_kwh.shape[0] - 1)
                    refill_floor = c.ev_target_kwh - c.ev_eta_c * refill_kwh[row, c.cols]
                    floor = np.maximum(floor, np.where(worth, refill_floor, c.ev_target_kwh))
                else:  # only the energy above the target (the v2h floor is never above it)
                    floor = c.ev_floor_at_target_kwh
                limit = battery.discharge_limit_kwh(
                    soc_ev, floor, ev_power * v2h_on, c.ev_eta_d, dt_h
                )
                ev_discharge = np.minimum(np.maximum(-residual, 0.0), limit)
                if any_worth:
                    # what is taken below the target is bought back at <= θ
                    soc_after = soc_ev - ev_discharge / c.ev_eta_d
                    taken_below = np.maximum(c.ev_target_kwh - soc_after, 0.0) - np.maximum(
                        c.ev_target_kwh - soc_ev, 0.0
                    )
                    at_cap = at_cap + taken_below / c.ev_eta_c
        # feasible by construction: <= P·Δt and the capacity, discharge only without charge
        if ev_discharge is c.zeros:  # next_soc_kwh without its (zero) discharge term
            ev_soc_next = soc_ev + c.ev_eta_c * ev_charge
        else:
            ev_soc_next = battery.next_soc_kwh(
                soc_ev, ev_charge, ev_discharge, c.ev_eta_c, c.ev_eta_d
            )

        limits = limit_prices_for(
            state.limits, self.factors, inputs.retail_price, inputs.feed_in_price
        )
        new_state = PriceAwareState(
            battery_soc_kwh=bat.soc_kwh,
            ev_soc_kwh=ev_soc_next,
            indoor_temp_c=temp_next,
            ev_departure_slot=departure,
            jobs=q,
            constants=c,
            limits=limits,
            ev_price_cap=cap,
            ev_at_cap_kwh=at_cap,
            ev_session_start_slot=session_start,
            ev_refill_kwh=refill_kwh,
            plan=plan,
            job_plan=job_plan,
        )
        dispatch = make_dispatch(
            limits=limits,
            demand_kwh=demand,
            generation_kwh=pv,
            battery_charge_kwh=bat.charge_kwh,
            battery_discharge_kwh=bat.discharge_kwh,
            ev_charge_kwh=ev_charge,
            ev_discharge_kwh=ev_discharge,
            thermal_kwh=e_th,
            shiftable_kwh=e_job,
            ev_unserved_kwh=unserved,
        )
        return new_state, dispatch
