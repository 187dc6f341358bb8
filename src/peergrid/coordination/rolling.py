"""Plans over time: a long run scheduled by a rolling horizon, and relaxed runs rounded to real
blocks.

`rolling_schedule` re-plans from the committed state every `step_slots` (the way
`ems/coordinated.py` executes the coordinator's plans); `block_starts` turns the LP's relaxed
shiftable runs (`coordination.blocks.shiftable`) into one start per run.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from peergrid.assets import shiftable
from peergrid.assets.params import AssetParams, FloatArray, IntArray, Profiles
from peergrid.coordination.blocks.shiftable import ranges
from peergrid.coordination.network import NetworkConstraints
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import NetworkSchedule, Schedule
from peergrid.coordination.schedule import schedule


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
