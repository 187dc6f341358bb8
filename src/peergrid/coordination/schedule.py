"""The coordinator's schedule: one linear programme that co-schedules a whole community.

A central coordinator knows every participant's assets and profiles over a horizon of H slots
and chooses all batteries, EVs, heat pumps / air conditioners and shiftable appliance runs at
once to minimise the community's cost with its retailer (markets.md, "Coordinated market"):

    min  Σ_t [λ_buy,t·G⁺_t − λ_sell,t·G⁻_t]                       energy cost  [currency]
       + wear·Σ (battery and EV charge + discharge)                 tie-breaker
       + penalties on the soft constraints (below)

    s.t. Σ_n (base − pv + bat_ch − bat_dis + ev_ch − ev_dis + thermal + shiftable)_n,t
           = G⁺_t − G⁻_t                                             community balance [kWh]

Energy flows live in slots (H values), states at slot boundaries (H + 1 points, row 0 the given
initial state). All energies are AC-side kWh per slot, prices currency/kWh, temperatures °C.

The problem and its options are `coordination.problem`, the result `coordination.result`. The
LP is built block by block (`coordination.blocks`), each with the physics of `peergrid.assets`
(so a schedule is executable slot by slot with the asset functions) and its own docstring: the
community's connection, balance and import / export limits (`grid`), home batteries
(`battery`), EVs (`ev`), heat pumps and air conditioners (`thermal`), shiftable appliance runs
(`shiftable`: relaxed, or one start per run by MILP), and optionally the feeder's LinDistFlow
rows, PV curtailment and the participants' limits (`lindistflow`, for `ScheduleProblem.network`,
`coordination/network.py`). `coordination.model` puts them together for one horizon; this
module chooses how to solve it (the MILP's two steps, the feeder's row generation), plans a
long run by a rolling horizon and rounds relaxed runs to blocks.

Penalties are scaled to the data, not fixed numbers (a 30× spread between costs and penalties
doubled the interior-point iterations): a kWh of EV shortfall, unserved trip energy, v2h reserve
or limit excess (community, participant or network) costs `penalty_factor` (4) × the dearest
price in the horizon / the EV's charge efficiency; a kelvin of virtual heat costs
`penalty_factor` × that price / the building's smallest ±COP·g [K/kWh], i.e. more than heating
it for real at the dearest price. So a soft constraint gives way only where it cannot be met.

The dual of the community balance is the community's internal marginal price λ_t [currency/kWh].
Without binding import/export limits λ_buy,t ≥ λ_t ≥ λ_sell,t: G⁺ and G⁻ are free to move, so
their reduced costs λ_buy − λ ≥ 0 and λ − λ_sell ≥ 0 hold at the optimum. A binding import limit
lifts λ above retail (scarcity), a binding export limit pushes it below the feed-in price; the
EMS clips it to [feed-in, retail] for the market. In a slot with λ_sell > λ_buy the coordinator
values export at λ_buy (`feed_in` is clipped to retail): importing and exporting at once would
otherwise be an unbounded arbitrage.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from peergrid.assets import shiftable
from peergrid.assets.params import AssetParams, BoolArray, FloatArray, IntArray, Profiles
from peergrid.coordination.blocks.shiftable import jobs_of, ranges
from peergrid.coordination.model import solve_lp
from peergrid.coordination.network import NetworkConstraints
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import NetworkSchedule, Schedule
from peergrid.errors import InputError

# the feeder's rows start in the slots whose inflexible injections come this near a limit
# (voltage [pu], share of a rating): measured, the closest that mostly spares a second round
_PREDICT_WITHIN_PU = 0.02
_PREDICT_WITHIN_FRAC = 0.2


def schedule(problem: ScheduleProblem, options: ScheduleOptions | None = None) -> Schedule:
    """Co-schedule every participant over the problem's horizon (module docstring).

    Raises:
        ScheduleError: the solver returned no solution (it never should: every constraint that
            data can make infeasible is soft).
    """
    opts = options or ScheduleOptions()
    if opts.shiftable == "milp":
        return _schedule_milp(problem, opts)
    return _solve(problem, opts)


def _schedule_milp(problem: ScheduleProblem, opts: ScheduleOptions) -> Schedule:
    """MILP for the run starts, then the LP with those starts fixed (for λ and clean flows)."""
    mip = _solve(problem, opts)
    if not np.count_nonzero(mip.job_placed):
        return replace(mip, solver="simplex" if mip.solver == "mip" else mip.solver)
    starts = mip.job_start_slot.copy()
    fixed = replace(problem, job_start_slot=starts)
    lp = _solve(fixed, replace(opts, shiftable="relaxed"))
    return replace(
        lp,
        job_ids=mip.job_ids,
        job_energy_kwh=mip.job_energy_kwh,
        job_placed=mip.job_placed,
        status=mip.status if mip.status != "Optimal" else lp.status,
        build_s=mip.build_s + lp.build_s,
        solve_s=mip.solve_s + lp.solve_s,
        solver="mip",
    )


def _solve(problem: ScheduleProblem, opts: ScheduleOptions) -> Schedule:
    if problem.network is None:
        return solve_lp(problem, opts, None)
    return _solve_network(problem, opts, problem.network)


def _solve_network(
    problem: ScheduleProblem, opts: ScheduleOptions, net: NetworkConstraints
) -> Schedule:
    """The LP with the feeder's rows, generated slot by slot (row generation).

    The feeder's rows enter the LP only for the slots that need them: first those in which
    the inflexible injections alone come near a limit (`_PREDICT_WITHIN_*`), then, round by
    round, every slot in which the optimum found breaks one (checked on the same linear
    model); each with its two neighbours, where the assets move energy to when a slot is
    constrained. An optimum that breaks no omitted row is the optimum of the LP with all of
    them, so the result is the full LP's. Most slots of a day never come near a limit; leaving
    them out saves most of the feeder's cost (100 homes with PV and batteries on a 129-bus
    feeder, a June day: 0.9 s instead of 3.3 s with no limit near, 2.5 s instead of 3.2 s with
    v_max binding at noon), and one or two rounds usually suffice.
    """
    if net.n_participants != problem.n_participants:
        raise InputError(
            f"the network places {net.n_participants} participants; the schedule has "
            f"{problem.n_participants}"
        )
    const_kw = (
        problem.pv_kwh - problem.base_demand_kwh - jobs_of(problem).fixed_kwh
    ) / problem.dt_h
    inj = np.zeros((problem.n_slots, net.n_bus))
    np.add.at(inj.T, net.bus_of, const_kw.T)
    active = _with_neighbours(
        net.violated_slots(inj, within_pu=_PREDICT_WITHIN_PU, within_frac=_PREDICT_WITHIN_FRAC)
    )
    build_s = solve_s = 0.0
    rounds = 0
    while True:
        s = solve_lp(problem, opts, active)
        build_s += s.build_s
        solve_s += s.solve_s
        rounds += 1
        assert s.network is not None
        new = net.violated_slots(s.network.bus_injection_kw) & ~active
        if not new.any():
            break
        active = active | _with_neighbours(new)
    return replace(s, build_s=build_s, solve_s=solve_s, network=replace(s.network, rounds=rounds))


def _with_neighbours(slots: BoolArray) -> BoolArray:
    """The slots (H,) and the one before and after each."""
    out = slots.copy()
    out[1:] |= slots[:-1]
    out[:-1] |= slots[1:]
    return out


# --------------------------------------------------------------------------------------------
# Rolling horizon


def rolling_schedule(
    assets: AssetParams,
    profiles: Profiles,
    retail_price: FloatArray,
    feed_in_price: FloatArray,
    dt_h: float,
    *,
    horizon_slots: int,
    step_slots: int,
    options: ScheduleOptions | None = None,
    network: NetworkConstraints | None = None,
) -> Schedule:
    """Schedule a long run by a rolling horizon: plan `horizon_slots`, commit the first
    `step_slots`, re-plan from the committed state.

    The committed slots of every plan are concatenated into one `Schedule` over the whole run
    (T slots, T + 1 states). A relaxed run's energy drawn in committed slots is carried into
    the next plan (`job_done_kwh`); a run whose start (fixed, or chosen by the MILP) falls in
    the committed slots keeps it. `objective` is the committed slots' energy + wear + penalty
    cost; `marginal_price` (and the network's results) the committing plan's; `build_s` and
    `solve_s` add up; the LP size is the largest plan's. `network` holds for the whole run
    (its per-participant limits are (T, P)).
    """
    n_slots = int(profiles.base_demand_kwh.shape[0])
    if not 1 <= step_slots <= horizon_slots:
        raise ValueError(
            f"need 1 <= step_slots <= horizon_slots (got {step_slots}, {horizon_slots})"
        )
    opts = options or ScheduleOptions()
    n_jobs = assets.jobs.n_jobs
    job_start = np.full(n_jobs, shiftable.NOT_STARTED, dtype=np.int64)
    job_done = np.zeros(n_jobs)
    first = ScheduleProblem.from_profiles(
        assets, profiles, retail_price, feed_in_price, dt_h, network=network
    )
    soc_b, soc_e, temp = first.battery_soc_kwh, first.ev_soc_kwh, first.indoor_temp_c
    parts: list[tuple[Schedule, int]] = []
    t = 0
    while t < n_slots:
        stop = min(t + horizon_slots, n_slots)
        problem = replace(
            ScheduleProblem.from_profiles(
                assets,
                profiles,
                retail_price,
                feed_in_price,
                dt_h,
                start=t,
                stop=stop,
                network=network,
            ),
            battery_soc_kwh=soc_b,
            ev_soc_kwh=soc_e,
            indoor_temp_c=temp,
            job_start_slot=job_start,
            job_done_kwh=job_done,
        )
        s = schedule(problem, opts)
        k = min(step_slots, stop - t)
        parts.append((s, k))
        soc_b, soc_e, temp = s.battery_soc_kwh[k], s.ev_soc_kwh[k], s.indoor_temp_c[k]
        keep = (s.job_start_slot != shiftable.NOT_STARTED) & (s.job_start_slot < t + k)
        job_start = np.where(keep, s.job_start_slot, shiftable.NOT_STARTED)
        placed = s.job_placed
        if opts.shiftable == "relaxed" and np.count_nonzero(placed):
            job_done = job_done.copy()
            job_done[s.job_ids[placed]] += s.job_energy_kwh[placed, :k].sum(axis=1)
        t += k
    return _concatenate(parts, n_jobs)


def _concatenate(parts: list[tuple[Schedule, int]], n_jobs: int) -> Schedule:
    """The committed prefixes of consecutive plans as one schedule."""

    def flows(name: str) -> FloatArray:
        return np.concatenate([getattr(s, name)[:k] for s, k in parts])

    def states(name: str) -> FloatArray:
        first: FloatArray = getattr(parts[0][0], name)[:1]
        return np.concatenate([first] + [getattr(s, name)[1 : k + 1] for s, k in parts])

    n_slots = sum(k for _, k in parts)
    job_energy = np.zeros((n_jobs, n_slots))
    t = 0
    for s, k in parts:
        job_energy[s.job_ids, t : t + k] += s.job_energy_kwh[:, :k]
        t += k
    last = parts[-1][0]
    energy, wear, penalty = (
        flows("energy_cost_per_slot"),
        flows("wear_cost_per_slot"),
        flows("penalty_cost_per_slot"),
    )
    statuses = [s.status for s, _ in parts if s.status != "Optimal"]
    network = None
    if parts[0][0].network is not None:
        nets = [(s.network, k) for s, k in parts if s.network is not None]
        network = NetworkSchedule(
            **{
                f.name: np.concatenate([getattr(ns, f.name)[:k] for ns, k in nets])
                for f in fields(NetworkSchedule)
                if f.name != "rounds"
            },
            rounds=max(ns.rounds for ns, _ in nets),
        )
    return Schedule(
        battery_charge_kwh=flows("battery_charge_kwh"),
        battery_discharge_kwh=flows("battery_discharge_kwh"),
        ev_charge_kwh=flows("ev_charge_kwh"),
        ev_discharge_kwh=flows("ev_discharge_kwh"),
        thermal_kwh=flows("thermal_kwh"),
        shiftable_kwh=flows("shiftable_kwh"),
        battery_soc_kwh=states("battery_soc_kwh"),
        ev_soc_kwh=states("ev_soc_kwh"),
        indoor_temp_c=states("indoor_temp_c"),
        grid_import_kwh=flows("grid_import_kwh"),
        grid_export_kwh=flows("grid_export_kwh"),
        marginal_price=flows("marginal_price"),
        objective=float(energy.sum() + wear.sum() + penalty.sum()),
        energy_cost_per_slot=energy,
        wear_cost_per_slot=wear,
        penalty_cost_per_slot=penalty,
        own_cost_per_slot=flows("own_cost_per_slot"),
        ev_shortfall_kwh=states("ev_shortfall_kwh"),
        ev_unserved_kwh=flows("ev_unserved_kwh"),
        ev_reserve_shortfall_kwh=states("ev_reserve_shortfall_kwh"),
        comfort_violation_k=states("comfort_violation_k"),
        import_excess_kwh=flows("import_excess_kwh"),
        export_excess_kwh=flows("export_excess_kwh"),
        job_ids=np.arange(n_jobs, dtype=np.int64),
        job_energy_kwh=job_energy,
        job_placed=np.zeros(n_jobs, dtype=bool),
        job_start_slot=last.job_start_slot,
        status=statuses[0] if statuses else "Optimal",
        build_s=sum(s.build_s for s, _ in parts),
        solve_s=sum(s.solve_s for s, _ in parts),
        n_cols=max(s.n_cols for s, _ in parts),
        n_rows=max(s.n_rows for s, _ in parts),
        n_nonzeros=max(s.n_nonzeros for s, _ in parts),
        solver=parts[0][0].solver,
        network=network,
    )


# --------------------------------------------------------------------------------------------
# From the relaxation to blocks


def block_starts(problem: ScheduleProblem, s: Schedule) -> tuple[IntArray, IntArray]:
    """Round the relaxed runs of a schedule to real blocks.

    For each run the LP placed (`s.job_placed`), the start whose block [start, start + duration)
    covers most of the run's LP energy; ties go to the block that costs least at the internal
    prices λ, then to the earliest. Energy the LP left for after the horizon counts as spread
    evenly over the window's slots beyond it (valued at the mean λ).

    Returns:
        (job_ids, start_slot): the runs and their starts on the run's slot grid.
    """
    ids = s.job_ids[s.job_placed]
    if ids.size == 0:
        return ids, ids.copy()
    energy = s.job_energy_kwh[s.job_placed]
    jobs = problem.assets.jobs
    h, t0 = problem.n_slots, problem.t0
    dur = jobs.duration_slots[ids]
    slot_kwh = jobs.p_kw[ids] * problem.dt_h
    done = np.zeros(ids.size) if problem.job_done_kwh is None else problem.job_done_kwh[ids]
    latest = shiftable.latest_start_slot(jobs.earliest_start[ids], jobs.latest_end[ids], dur) - t0
    first = np.maximum(jobs.earliest_start[ids] - t0, 0)
    end = latest + dur
    width = max(h, int(end.max()))
    x = np.zeros((ids.size, width))
    x[:, :h] = energy
    beyond = np.maximum(end - h, 0)
    left = np.maximum(slot_kwh * dur - done - energy.sum(axis=1), 0.0)
    per_slot = np.divide(left, beyond, out=np.zeros(ids.size), where=beyond > 0)
    cols = np.arange(width)[None, :]
    x += np.where((cols >= h) & (cols < end[:, None]), per_slot[:, None], 0.0)
    cum_x = np.concatenate([np.zeros((ids.size, 1)), np.cumsum(x, axis=1)], axis=1)
    lam = np.where(np.isnan(s.marginal_price), problem.retail_price, s.marginal_price)
    lam_ext = np.concatenate([lam, np.full(width - h, lam.mean())])
    cum_lam = np.concatenate([[0.0], np.cumsum(lam_ext)])
    grp, start = ranges(first, latest + 1)
    stop = start + dur[grp]
    overlap = np.round((cum_x[grp, stop] - cum_x[grp, start]) / slot_kwh[grp], 6)
    cost = cum_lam[stop] - cum_lam[start]
    order = np.lexsort((start, cost, -overlap, grp))
    g_sorted = grp[order]
    best = order[np.concatenate([[True], g_sorted[1:] != g_sorted[:-1]])]
    chosen: IntArray = start[best] + t0
    return ids, chosen
