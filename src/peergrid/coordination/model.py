"""The schedule LP of one horizon: the blocks put together, solved by HiGHS, read back.

The blocks (`coordination.blocks`) add their columns and rows to one `optim.highs.LpModel` in a
fixed order (the connection, batteries, EVs, thermal assets, shiftable runs, then the feeder's
rows), each over whole (slot, participant) arrays with masks; the model goes to HiGHS as one
column-wise sparse matrix, and each block reads its part of the solution back into the
`Schedule`.
"""

from __future__ import annotations

import time

import numpy as np

from peergrid.assets.params import BoolArray, IntArray
from peergrid.coordination.blocks.base import penalties
from peergrid.coordination.blocks.battery import add_battery
from peergrid.coordination.blocks.ev import add_ev
from peergrid.coordination.blocks.grid import add_grid
from peergrid.coordination.blocks.lindistflow import add_feeder, read_feeder
from peergrid.coordination.blocks.shiftable import add_runs, jobs_of
from peergrid.coordination.blocks.thermal import add_thermal
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import Schedule, net_before_curtailment_kwh
from peergrid.errors import PeergridError
from peergrid.optim.highs import HighsLp, LpModel, LpSolver


class ScheduleError(PeergridError):
    """The solver returned no usable solution."""


def solve_lp(problem: ScheduleProblem, opts: ScheduleOptions, active: BoolArray | None) -> Schedule:
    """The LP; with a network, its rows for the `active` slots (H,)."""
    t_build = time.perf_counter()
    h = problem.n_slots
    m = LpModel()
    price_scale, pen = penalties(problem, opts)
    jobs = jobs_of(problem)
    grid = add_grid(m, problem, opts, pen, jobs.fixed_kwh)
    battery = add_battery(m, problem, opts.wear_per_kwh, grid.balance)
    ev = add_ev(m, problem, opts, pen, grid.balance)
    heat = add_thermal(m, problem, opts, price_scale, grid.balance)
    runs = add_runs(m, problem, jobs, opts.shiftable == "milp", grid.balance)
    feeder = None
    if problem.network is not None and active is not None:
        const_kwh = problem.pv_kwh - problem.base_demand_kwh - jobs.fixed_kwh
        terms = battery.terms + ev.storage.terms + heat.terms + runs.terms
        feeder = add_feeder(
            m,
            problem,
            problem.network,
            const_kwh,
            terms,
            pen,
            active,
            grid.balance,
            opts.wear_per_kwh,
        )

    lp, integer_cols, nnz = m.lp()
    has_int = bool(integer_cols.size)
    build_s = time.perf_counter() - t_build

    t_solve = time.perf_counter()
    battery_share = 3 * battery.soc.size / max(m.n_cols, 1)  # charge, discharge, state
    feeder_rows = feeder is not None and bool(feeder.active.any())
    hs, solver = _solver(lp, integer_cols, opts, m.n_cols, battery_share, feeder_rows)
    status = hs.run()
    if not has_int and status != "Optimal" and solver == "ipm":
        hs.set_options({"solver": "simplex"})  # IPM gave up (numerics): polish with simplex
        status = hs.run()
        solver = "simplex"
    sol = hs.solution()
    if not sol.value_valid:
        raise ScheduleError(f"coordinated schedule: HiGHS returned no solution ({status})")
    xv = sol.col_value
    duals = sol.row_dual if sol.dual_valid else None
    col_duals = sol.col_dual if sol.dual_valid else None
    solve_s = time.perf_counter() - t_solve

    g_imp, g_exp, import_excess, export_excess = grid.read(xv)
    b_ch_v, b_dis_v, battery_soc = battery.read(xv)
    e = ev.read(xv)
    th = heat.read(xv, problem)
    shift, job_energy, job_start = runs.read(xv, problem)
    wear = opts.wear_per_kwh * (b_ch_v + b_dis_v + e.charge_kwh + e.discharge_kwh)  # (H, P)
    own_penalty = pen * (e.shortfall_kwh[1:] + e.reserve_shortfall_kwh[1:] + e.unserved_kwh)
    own_penalty[:, heat.who] += th.penalty
    lam = duals[grid.balance] if duals is not None else np.full(h, np.nan)
    network = None
    community_penalty = pen * (import_excess + export_excess)
    if feeder is not None:
        assert problem.network is not None
        net_kwh = net_before_curtailment_kwh(
            problem,
            battery_charge_kwh=b_ch_v,
            battery_discharge_kwh=b_dis_v,
            ev_charge_kwh=e.charge_kwh,
            ev_discharge_kwh=e.discharge_kwh,
            thermal_kwh=th.energy_kwh,
            shiftable_kwh=shift,
        )
        network = read_feeder(
            problem.network, feeder, net_kwh, problem.dt_h, xv, duals, col_duals, lam, price_scale
        )
        own_penalty += pen * (
            network.participant_export_excess_kwh + network.participant_import_excess_kwh
        )
        community_penalty = community_penalty + pen * network.network_import_excess_kwh.sum(axis=1)
        wear = wear + opts.wear_per_kwh * network.pv_curtailment_kwh
    penalty = own_penalty.sum(axis=1) + community_penalty
    n_free = jobs.free.size
    return Schedule(
        battery_charge_kwh=b_ch_v,
        battery_discharge_kwh=b_dis_v,
        ev_charge_kwh=e.charge_kwh,
        ev_discharge_kwh=e.discharge_kwh,
        thermal_kwh=th.energy_kwh,
        shiftable_kwh=shift,
        battery_soc_kwh=battery_soc,
        ev_soc_kwh=e.soc_kwh,
        indoor_temp_c=th.indoor_temp_c,
        grid_import_kwh=g_imp,
        grid_export_kwh=g_exp,
        marginal_price=lam,
        objective=sol.objective,
        energy_cost_per_slot=np.asarray(problem.retail_price, dtype=np.float64) * g_imp
        - np.asarray(problem.feed_in_price) * g_exp,
        wear_cost_per_slot=wear.sum(axis=1),
        penalty_cost_per_slot=penalty,
        own_cost_per_slot=wear + own_penalty,
        ev_shortfall_kwh=e.shortfall_kwh,
        ev_unserved_kwh=e.unserved_kwh,
        ev_reserve_shortfall_kwh=e.reserve_shortfall_kwh,
        comfort_violation_k=th.comfort_violation_k,
        import_excess_kwh=import_excess,
        export_excess_kwh=export_excess,
        job_ids=np.concatenate([jobs.fixed, jobs.free]),
        job_energy_kwh=np.concatenate([jobs.fixed_energy_kwh, job_energy]),
        job_placed=np.concatenate(
            [np.zeros(jobs.fixed.size, dtype=bool), np.ones(n_free, dtype=bool)]
        ),
        job_start_slot=job_start,
        status=status,
        build_s=build_s,
        solve_s=solve_s,
        n_cols=m.n_cols,
        n_rows=m.n_rows,
        n_nonzeros=nnz,
        solver=solver,
        network=network,
    )


def _solver(
    lp: HighsLp,
    integer_cols: IntArray,
    options: ScheduleOptions,
    n_cols: int,
    battery_share: float,
    feeder_rows: bool = False,
) -> tuple[LpSolver, str]:
    """HiGHS set up for the LP, and the method's name: "mip" with integer columns, else IPM or
    simplex as `options.solver` asks (`ScheduleOptions`)."""
    if integer_cols.size:
        return LpSolver(lp, {"time_limit": float(options.mip_time_limit_s)}, integer_cols), "mip"
    use_ipm = options.solver == "ipm" or (
        options.solver == "auto"
        and n_cols >= options.ipm_min_cols
        and (battery_share >= options.ipm_min_battery_share or feeder_rows)
    )
    if use_ipm:
        run_crossover = "on" if options.crossover else "off"
        return LpSolver(lp, {"solver": "ipm", "run_crossover": run_crossover}), "ipm"
    return LpSolver(lp, {"solver": "simplex"}), "simplex"
