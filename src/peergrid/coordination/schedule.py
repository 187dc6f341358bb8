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

Physics, the same as `peergrid.assets` (so a schedule is executable slot by slot with the asset
functions):

- **Battery**: soc_{t+1} = soc_t + η_c·ch_t − dis_t/η_d, soc in [soc_min, soc_max] (widened to
  include the initial state, which is never pushed further out), ch, dis ≤ power·Δt. No binary
  forbids simultaneous charge and discharge: with the wear cost > 0 (and η_c·η_d ≤ 1) doing
  both never pays, except to burn a surplus that cannot be exported (export limit); the
  executing EMS nets the two anyway (`battery.dispatch`).
- **EV**: charges (and with v2h discharges) only in plugged slots, same SoC update, SoC in
  [0, capacity]. A trip's energy leaves the battery at the first slot of the return
  (`ev_trip_kwh`); what the battery cannot supply is `ev_unserved_kwh` (the after-trip state is
  max(soc − trip, 0) as in `ev.apply_trip`, with the unserved energy penalised). At each
  departure inside the horizon (plugged in slot d − 1, away in slot d) soc_d ≥ min(target,
  capacity); with `ev_target_at_horizon_end` an EV still plugged in at the last slot is assumed
  to leave at the horizon's end, as `ev.session_slots` assumes. The target is soft: a shortfall
  costs the energy penalty (below) and is reported. A v2h EV keeps soc_min as a reserve while
  plugged in (soft, same penalty); physics only forbids v2h discharge below soc_min, but
  "discharge only above soc_min" is not convex, so the LP asks the coordinator to restore the
  reserve at once after a trip that left the EV below it. Without such trips the two coincide.
- **Heat pump / AC**: the exact 1R1C discretisation of `assets/thermal.py`:
  T_{t+1} = a·T_t + (1 − a)·T_out,t ± COP_t·g·e_t with a, g from `thermal.response` and COP_t
  from `thermal.cop` at the slot's outdoor temperature; e_t ≤ p_max·Δt. The comfort band
  [t_min, t_max] bounds T at every state point 1..H. Where the band cannot be held (too little
  power, a start outside it, an outdoor temperature past the edge the asset cannot act on) a
  penalised "virtual heat" slack [K] in the dynamics keeps the LP feasible; the reported
  `indoor_temp_c` is the physical trajectory of the planned energy (without the slack) and
  `comfort_violation_k` its distance from the band. The slacks exist only for buildings where
  the band is not provably holdable (from inside it, full power holds the near edge and no
  power the far edge in every slot), which keeps the LP small.
- **Shiftable runs**: a run needs duration·p·Δt inside its window [earliest_start, latest_start
  + duration). In the default `"relaxed"` mode the LP draws that energy anywhere in the window
  at no more than p·Δt per slot: this **relaxes the fixed-duration block** (the energy may be
  split over non-adjacent slots, at part power), so the LP's cost is a lower bound on every
  schedule with real blocks. `"milp"` chooses one start per run with binaries (exact, with a
  time limit); λ then comes from the LP re-solved with the starts fixed. Runs already started
  (`job_start_slot`) are fixed loads.
- **Import / export limits** (`import_limit_kw`, `export_limit_kw`, default none) bound
  G⁺ and G⁻; energy beyond a limit is allowed at the energy penalty extra and reported, so the
  LP is always feasible.
- **Network** (optional, `ScheduleProblem.network`, `coordination/network.py`): per slot, the
  feeder's LinDistFlow model written sparsely, one flow column P_b [kW] and one voltage column
  per branch (its child bus): flow conservation dt·(P_b − Σ_children P_c) + injection_n = 0
  at every bus, where the injection is the sum of the nets of the bus's participants (the same
  columns as the balance), and w_n = w_parent + r_b·P_b with v_n = v0_n − w_n/(1000·v0_n);
  v_min + margin ≤ v ≤ v_max − margin at monitored buses (bounds widened to include the
  no-load voltage), |P_b| ≤ rating_kw at monitored branches (column bounds). That is
  O((N + B)·H) rows, not N×N per slot, and only for the slots that need them (row generation,
  `_solve_network`). With a network the coordinator may also curtail PV (a column per
  participant and slot up to its generation, costing `wear_per_kwh` per kWh on top of the
  energy it loses): when the batteries are full it is the only executable way to export
  less, since a battery that charges and discharges at once to burn energy is netted by the
  executing EMS (and with wear > 0 burning costs more than curtailing). Where no schedule can
  hold the limits (inflexible loads), penalised excess columns at each bus with participants
  take the load the network cannot carry out of its rows (`network_import_excess_kwh`: what
  would have to be shed). Per-participant limits [−import, export]·Δt on each participant's
  net (static caps or operating envelopes) are ranged rows with penalised excess columns in
  the same way. The network prices: the dual of the conservation row at bus n, μ_t,n, makes
  bus_price_t,n = λ_t + μ_t,n the marginal cost of a kWh more demand at that bus; the reduced
  costs of the voltage and flow columns are the shadow prices of the limits.

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

The matrix is built from numpy index arrays over whole (slot, participant) blocks with masks
(no Python loop over variables) and handed to HiGHS as one column-wise sparse matrix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from typing import TypeAlias

import numpy as np

from peergrid.assets import ev, shiftable, thermal
from peergrid.assets.params import AssetParams, BoolArray, FloatArray, IntArray, Profiles
from peergrid.coordination.network import NetworkConstraints
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import NetworkSchedule, Schedule
from peergrid.errors import InputError, PeergridError
from peergrid.network.feeder import S_BASE_MVA
from peergrid.optim.highs import HighsLp, LpModel, LpSolver, column_values

_INF = np.inf
_MIN_PRICE_SCALE = 0.01  # floor of the price scale of the penalties [currency/kWh]
_HOLD_TOL_K = 1e-9  # a band counts as holdable with this much to spare [K]
_KW_PER_PU = 1000.0 * S_BASE_MVA
_BINDING_DUAL = 1e-6  # a limit binds where its shadow price exceeds this × the price scale
# the feeder's rows start in the slots whose inflexible injections come this near a limit
# (voltage [pu], share of a rating): measured, the closest that mostly spares a second round
_PREDICT_WITHIN_PU = 0.02
_PREDICT_WITHIN_FRAC = 0.2


class ScheduleError(PeergridError):
    """The solver returned no usable solution."""


def _safe_eta(eta: FloatArray) -> FloatArray:
    out: FloatArray = np.where(eta > 0.0, eta, 1.0).astype(np.float64)
    return out


def _scatter(h: int, p: int, cols: IntArray, block: FloatArray) -> FloatArray:
    out = np.zeros((h, p))
    out[:, cols] = block
    return out


@dataclass(frozen=True, eq=False)
class _Jobs:
    """The runs of one schedule: fixed loads, and the free runs the LP places."""

    fixed_kwh: FloatArray  # (H, P)
    fixed: IntArray  # ids of the started runs that draw energy in the horizon
    fixed_energy_kwh: FloatArray  # (len(fixed), H)
    free: IntArray  # job ids
    free_es: IntArray  # first usable row of each free run
    free_end: IntArray  # row after its effective window (may exceed H)
    free_e_kwh: FloatArray  # energy still to draw
    free_slot_kwh: FloatArray  # p·Δt
    free_latest: IntArray  # latest start row
    start_slot: IntArray  # (J,) fixed start slot on the run grid, −1 for free


def _jobs(problem: ScheduleProblem) -> _Jobs:
    jobs = problem.assets.jobs
    h, p, t0, dt = problem.n_slots, problem.n_participants, problem.t0, problem.dt_h
    n_jobs = jobs.n_jobs
    start = (
        np.full(n_jobs, shiftable.NOT_STARTED, dtype=np.int64)
        if problem.job_start_slot is None
        else np.asarray(problem.job_start_slot, dtype=np.int64).copy()
    )
    done = np.zeros(n_jobs) if problem.job_done_kwh is None else problem.job_done_kwh
    latest = shiftable.latest_start_slot(jobs.earliest_start, jobs.latest_end, jobs.duration_slots)
    # a free run past its latest start starts now, as `shiftable.must_start` would have it
    overdue = (start == shiftable.NOT_STARTED) & (latest < t0) & (done <= 0.0)
    start[overdue] = t0
    fixed = np.zeros((h, p))
    started = np.flatnonzero(start != shiftable.NOT_STARTED)
    if started.size:
        d = jobs.duration_slots[started]
        rep = np.repeat(np.arange(started.size), d)
        offs = np.arange(rep.size) - np.repeat(np.cumsum(d) - d, d)
        row = start[started][rep] + offs - t0
        ok = (row >= 0) & (row < h)
        j = started[rep[ok]]
        np.add.at(fixed, (row[ok], jobs.participant[j]), jobs.p_kw[j] * dt)
        in_horizon, local = np.unique(rep[ok], return_inverse=True)
        fixed_ids = started[in_horizon]
        fixed_energy = np.zeros((fixed_ids.size, h))
        np.add.at(fixed_energy, (local, row[ok]), jobs.p_kw[j] * dt)
    else:
        fixed_ids, fixed_energy = started, np.zeros((0, h))
    slot_kwh = jobs.p_kw * dt
    energy = slot_kwh * jobs.duration_slots - done
    free_mask = (
        (start == shiftable.NOT_STARTED)
        & (energy > 1e-12)
        & (jobs.earliest_start < t0 + h)
        & (latest + jobs.duration_slots > t0)
    )
    free = np.flatnonzero(free_mask).astype(np.int64)
    return _Jobs(
        fixed_kwh=fixed,
        fixed=fixed_ids.astype(np.int64),
        fixed_energy_kwh=fixed_energy,
        free=free,
        free_es=np.maximum(jobs.earliest_start[free] - t0, 0),
        free_end=latest[free] + jobs.duration_slots[free] - t0,
        free_e_kwh=energy[free],
        free_slot_kwh=slot_kwh[free],
        free_latest=latest[free] - t0,
        start_slot=start,
    )


def _ranges(first: IntArray, stop: IntArray) -> tuple[IntArray, IntArray]:
    """Flattened ranges [first_i, stop_i): (group index, value) per element."""
    n = np.maximum(stop - first, 0)
    group = np.repeat(np.arange(n.size), n)
    value = np.arange(group.size) - np.repeat(np.cumsum(n) - n, n) + first[group]
    return group.astype(np.int64), value.astype(np.int64)


# --------------------------------------------------------------------------------------------
# The network

# A block of a participant's net export: (slot rows, participants, columns, coefficient [kWh
# of net export per unit of the column]), broadcast together; −1 columns are absent.
_Term: TypeAlias = tuple[IntArray, IntArray, IntArray, float | FloatArray]


@dataclass(frozen=True, eq=False)
class _NetIndex:
    """Columns and rows of the network part of the LP, (H, B) per branch (its child bus) or
    (H, P) per participant; −1 where absent."""

    active: BoolArray  # (H,) slots with the feeder's rows
    flow: IntArray  # P_b [kW]
    w_hi: IntArray  # cumulative drop with q = 0 [kW·pu], the upper voltage limit's
    w_lo: IntArray  # with q = tan φ·p, the lower limit's (w_hi itself without reactive power)
    cons: IntArray  # flow conservation rows [kWh]
    cut: IntArray  # (H, P) PV curtailment [kWh]
    bus_imp: IntArray  # network import excess [kWh]
    lim_exp: IntArray  # participant export excess [kWh]
    lim_imp: IntArray  # participant import excess [kWh]


def _network_model(
    m: LpModel,
    problem: ScheduleProblem,
    net: NetworkConstraints,
    const_kwh: FloatArray,
    terms: list[_Term],
    pen: float,
    active: BoolArray,
    bal: IntArray,
    cut_cost: float,
) -> _NetIndex:
    """Add PV curtailment, the feeder's LinDistFlow rows for the `active` slots (H,) and the
    participants' limits for all (module docstring).

    `const_kwh` is every participant's fixed net export (H, P) [kWh]; `terms` the rest of it
    (curtailment is added to them and to the balance rows `bal`).
    """
    h, dt = problem.n_slots, problem.dt_h
    pv = np.asarray(problem.pv_kwh, dtype=np.float64)
    cut = m.cols(pv > 0.0, 0.0, pv, cut_cost)
    m.coef(bal[:, None], cut, -1.0)
    terms = [*terms, (np.arange(h)[:, None], np.arange(problem.n_participants)[None, :], cut, -1.0)]
    n, nb = net.n_bus, net.n_branch
    to, bus_of = net.branch_to, net.bus_of
    hb = np.repeat(active[:, None], nb, axis=1)
    up = net.parent_branch

    # flows, bounded at the monitored branches
    f_lo, f_hi = np.full(nb, -_INF), np.full(nb, _INF)
    f_lo[net.monitored_branches] = -net.rating_kw
    f_hi[net.monitored_branches] = net.rating_kw
    flow = m.cols(hb, f_lo, f_hi, 0.0)

    # conservation at every bus but the slack [kWh]: dt·(P_b − Σ_children P_c) + injection = 0
    const_bus = np.zeros((h, n))
    np.add.at(const_bus.T, bus_of, const_kwh.T)
    cons = m.rows(hb, -const_bus[:, to], -const_bus[:, to])
    m.coef(cons, flow, dt)
    m.coef(np.where(up >= 0, cons[:, np.maximum(up, 0)], -1), flow, -dt)  # −1 stays −1
    bus_row = np.full((h, n), -1, dtype=np.int64)
    bus_row[:, to] = cons
    for t_idx, p_idx, col, val in terms:
        m.coef(bus_row[t_idx, bus_of[p_idx]], col, val)
    has_part = np.zeros(n, dtype=bool)
    has_part[bus_of] = True
    bus_imp = m.cols(hb & has_part[to][None, :], 0.0, _INF, pen)
    m.coef(cons, bus_imp, 1.0)

    # voltages: w_n = w_parent + (r_b + x_b·tan φ)·P_b, bounded at the monitored buses
    v0 = net.v0_pu[to]
    monitored = np.zeros(n, dtype=bool)
    monitored[net.monitored_buses] = True
    mon = monitored[to]
    scale = _KW_PER_PU * v0
    w_lo_bound = np.where(
        mon, np.minimum(scale * (v0 - net.v_max_pu + net.voltage_margin_pu), 0.0), -_INF
    )  # the upper voltage limit
    w_hi_bound = np.where(
        mon, np.maximum(scale * (v0 - net.v_min_pu - net.voltage_margin_pu), 0.0), _INF
    )  # the lower voltage limit

    def drops(lo: FloatArray, hi: FloatArray, per_kw: FloatArray) -> IntArray:
        w = m.cols(hb, lo, hi, 0.0)
        row = m.rows(hb, 0.0, 0.0)
        m.coef(row, w, 1.0)
        m.coef(row, np.where(up >= 0, w[:, np.maximum(up, 0)], -1), -1.0)
        m.coef(row, flow, -per_kw)
        return w

    if net.load_tan_phi > 0.0:
        w_hi = drops(w_lo_bound, np.full(nb, _INF), net.r_pu)
        w_lo = drops(np.full(nb, -_INF), w_hi_bound, net.r_pu + net.load_tan_phi * net.x_pu)
    else:
        w_hi = w_lo = drops(w_lo_bound, w_hi_bound, net.r_pu)

    # per-participant limits: −import·dt ≤ net − export excess + import excess ≤ export·dt
    exp_kw, imp_kw = net.limits(problem.t0, h)
    shape = (h, problem.n_participants)
    fin_e = np.zeros(shape, dtype=bool) if exp_kw is None else np.isfinite(exp_kw)
    fin_i = np.zeros(shape, dtype=bool) if imp_kw is None else np.isfinite(imp_kw)
    hi = np.where(fin_e, (exp_kw if exp_kw is not None else 0.0) * dt - const_kwh, _INF)
    lo = np.where(fin_i, -(imp_kw if imp_kw is not None else 0.0) * dt - const_kwh, -_INF)
    lim = m.rows(fin_e | fin_i, lo, hi)
    lim_exp = m.cols(fin_e, 0.0, _INF, pen)
    lim_imp = m.cols(fin_i, 0.0, _INF, pen)
    m.coef(lim, lim_exp, -1.0)
    m.coef(lim, lim_imp, 1.0)
    if (fin_e | fin_i).any():
        for t_idx, p_idx, col, val in terms:
            m.coef(lim[t_idx, p_idx], col, val)
    return _NetIndex(active, flow, w_hi, w_lo, cons, cut, bus_imp, lim_exp, lim_imp)


def _network_result(
    net: NetworkConstraints,
    idx: _NetIndex,
    net_kwh: FloatArray,
    dt: float,
    xv: FloatArray,
    duals: FloatArray | None,
    col_duals: FloatArray | None,
    lam: FloatArray,
    price_scale: float,
) -> NetworkSchedule:
    """Read the network part of a solution (`net_kwh`: every participant's net before
    curtailment, (H, P)).

    In the active slots flows and voltages are the LP's columns; in the others (where no limit
    binds) the same linear model of the injections.
    """
    h = net_kwh.shape[0]
    n, nb, to = net.n_bus, net.n_branch, net.branch_to
    act = idx.active
    v0 = net.v0_pu[to]

    def per_bus(block: FloatArray) -> FloatArray:
        out = np.zeros((h, n))
        out[:, to] = block
        return out

    bus_imp = per_bus(column_values(xv, idx.bus_imp))
    cut = column_values(xv, idx.cut)
    inj = np.zeros((h, n))
    np.add.at(inj.T, net.bus_of, (net_kwh - cut).T)
    inj = (inj + bus_imp) / dt
    flow = net.branch_flow_kw(inj)
    flow[act] = xv[idx.flow[act]]

    def voltage(w: IntArray, tan_phi: float) -> FloatArray:
        out = net.voltage_pu(flow, tan_phi)
        out[np.ix_(act, to)] = v0 - xv[w[act]] / (_KW_PER_PU * v0)
        return out

    v_hi = voltage(idx.w_hi, 0.0)
    v_lo = v_hi if idx.w_lo is idx.w_hi else voltage(idx.w_lo, net.load_tan_phi)
    v_shadow = np.zeros((h, n))
    v_bind = np.zeros((h, n), dtype=np.int8)
    f_shadow = np.zeros((h, nb))
    f_bind = np.zeros((h, nb), dtype=np.int8)
    bus_price = np.full((h, n), np.nan)
    if duals is not None and col_duals is not None:
        bus_price = np.repeat(lam[:, None], n, axis=1)
        bus_price[np.ix_(act, to)] += duals[idx.cons[act]]
        tol = _BINDING_DUAL * price_scale
        # reduced costs: ∂objective/∂(bound of w) [currency per kW·pu]; w's lower bound is the
        # upper voltage limit (d ≥ 0 where it binds), its upper bound the lower limit (d ≤ 0)
        upper = np.maximum(col_duals[idx.w_hi[act]], 0.0) * (_KW_PER_PU * v0)
        lower = np.maximum(-col_duals[idx.w_lo[act]], 0.0) * (_KW_PER_PU * v0)
        v_shadow[np.ix_(act, to)] = upper + lower
        v_bind[np.ix_(act, to)] = np.where(upper > tol, 1, np.where(lower > tol, -1, 0))
        d_flow = col_duals[idx.flow[act]]  # ≤ 0 at the upper bound, ≥ 0 at the lower
        f_shadow[act] = np.abs(d_flow)
        f_bind[act] = np.where(d_flow < -tol, 1, np.where(d_flow > tol, -1, 0))
    return NetworkSchedule(
        bus_injection_kw=inj,
        p_from_kw=flow,
        voltage_pu=v_hi,
        voltage_low_pu=v_lo,
        bus_price=bus_price,
        voltage_shadow_price=v_shadow,
        voltage_binding=v_bind,
        flow_shadow_price=f_shadow,
        flow_binding=f_bind,
        pv_curtailment_kwh=cut,
        network_import_excess_kwh=bus_imp,
        participant_export_excess_kwh=column_values(xv, idx.lim_exp),
        participant_import_excess_kwh=column_values(xv, idx.lim_imp),
        network_slots=act.copy(),
    )


def _highs(
    lp: HighsLp,
    integer_cols: IntArray,
    options: ScheduleOptions,
    n_cols: int,
    battery_share: float,
    feeder_rows: bool = False,
) -> tuple[LpSolver, str]:
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
        return _solve_lp(problem, opts, None)
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
    const_kw = (problem.pv_kwh - problem.base_demand_kwh - _jobs(problem).fixed_kwh) / problem.dt_h
    inj = np.zeros((problem.n_slots, net.n_bus))
    np.add.at(inj.T, net.bus_of, const_kw.T)
    active = _with_neighbours(
        net.violated_slots(inj, within_pu=_PREDICT_WITHIN_PU, within_frac=_PREDICT_WITHIN_FRAC)
    )
    build_s = solve_s = 0.0
    rounds = 0
    while True:
        s = _solve_lp(problem, opts, active)
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


def _solve_lp(
    problem: ScheduleProblem, opts: ScheduleOptions, active: BoolArray | None
) -> Schedule:
    """The LP; with a network, its rows for the `active` slots (H,)."""
    t_build = time.perf_counter()
    a = problem.assets
    h, p, dt = problem.n_slots, problem.n_participants, problem.dt_h
    m = LpModel()
    full = np.ones((h,), dtype=bool)

    retail = np.asarray(problem.retail_price, dtype=np.float64)
    feed_in = np.minimum(np.asarray(problem.feed_in_price, dtype=np.float64), retail)
    price_scale = max(
        float(np.abs(retail).max(initial=0.0)),
        float(np.abs(problem.feed_in_price).max(initial=0.0)),
        _MIN_PRICE_SCALE,
    )
    eta_ev = _safe_eta(a.ev.efficiency_charge[(a.ev.capacity_kwh > 0.0) & (a.ev.power_kw > 0.0)])
    pen = (
        float(opts.penalty_per_kwh)
        if opts.penalty_per_kwh is not None
        else opts.penalty_factor * price_scale / float(eta_ev.min(initial=1.0))
    )

    # --- community connection ---------------------------------------------------------------
    imp_ub = _INF if opts.import_limit_kw is None else opts.import_limit_kw * dt
    exp_ub = _INF if opts.export_limit_kw is None else opts.export_limit_kw * dt
    gp = m.cols(full, 0.0, imp_ub, retail)
    gm = m.cols(full, 0.0, exp_ub, -feed_in)
    gp_over = m.cols(full & (opts.import_limit_kw is not None), 0.0, _INF, retail + pen)
    gm_over = m.cols(full & (opts.export_limit_kw is not None), 0.0, _INF, pen - feed_in)

    jobs = _jobs(problem)
    net_demand = (problem.base_demand_kwh - problem.pv_kwh).sum(axis=1) + jobs.fixed_kwh.sum(axis=1)
    bal = m.rows(full, net_demand, net_demand)
    m.coef(bal, gp, 1.0)
    m.coef(bal, gp_over, 1.0)
    m.coef(bal, gm, -1.0)
    m.coef(bal, gm_over, -1.0)
    bal_col = bal[:, None]
    rows_h = np.arange(h)[:, None]
    # every participant's net export as columns: (slot, participant, column, coefficient) blocks,
    # for the network's rows (the balance takes the same columns above)
    terms: list[_Term] = []

    # --- battery ------------------------------------------------------------------------------
    b = a.battery
    has_b = (b.capacity_kwh > 0.0) & (b.power_kw > 0.0) & (b.soc_max_kwh > b.soc_min_kwh)
    bi = np.flatnonzero(has_b)
    hb = np.ones((h, bi.size), dtype=bool)
    soc0_b = np.asarray(problem.battery_soc_kwh, dtype=np.float64)
    eta_c_b, eta_d_b = _safe_eta(b.efficiency_charge[bi]), _safe_eta(b.efficiency_discharge[bi])
    e_max_b = b.power_kw[bi] * dt
    b_ch = m.cols(hb, 0.0, e_max_b, opts.wear_per_kwh)
    b_dis = m.cols(hb, 0.0, e_max_b, opts.wear_per_kwh)
    b_soc = m.cols(
        hb,
        np.minimum(b.soc_min_kwh[bi], soc0_b[bi]),
        np.maximum(b.soc_max_kwh[bi], soc0_b[bi]),
        0.0,
    )
    rhs = np.zeros((h, bi.size))
    rhs[0] = soc0_b[bi]
    b_dyn = m.rows(hb, rhs, rhs)
    m.coef(b_dyn, b_soc, 1.0)
    m.coef(b_dyn[1:], b_soc[:-1], -1.0)
    m.coef(b_dyn, b_ch, -eta_c_b)
    m.coef(b_dyn, b_dis, 1.0 / eta_d_b)
    m.coef(bal_col, b_ch, -1.0)
    m.coef(bal_col, b_dis, 1.0)
    terms += [(rows_h, bi[None, :], b_ch, -1.0), (rows_h, bi[None, :], b_dis, 1.0)]

    # --- EV -------------------------------------------------------------------------------------
    e = a.ev
    has_e = (e.capacity_kwh > 0.0) & (e.power_kw > 0.0)
    ei = np.flatnonzero(has_e)
    he = np.ones((h, ei.size), dtype=bool)
    plugged = np.asarray(problem.ev_plugged[:, ei], dtype=bool)
    v2h = np.asarray(e.v2h[ei], dtype=bool)
    trips = np.asarray(problem.ev_trip_kwh[:, ei], dtype=np.float64)
    soc0_e = np.asarray(problem.ev_soc_kwh, dtype=np.float64)[ei]
    cap_e = np.maximum(e.capacity_kwh[ei], soc0_e)
    eta_c_e, eta_d_e = _safe_eta(e.efficiency_charge[ei]), _safe_eta(e.efficiency_discharge[ei])
    e_max_e = e.power_kw[ei] * dt
    target = ev.reachable_target_kwh(e.target_kwh[ei], e.capacity_kwh[ei])
    e_ch = m.cols(plugged, 0.0, e_max_e, opts.wear_per_kwh)
    e_dis = m.cols(plugged & v2h, 0.0, e_max_e, opts.wear_per_kwh)
    e_soc = m.cols(he, 0.0, cap_e, 0.0)
    has_trip = trips > 0.0
    e_uns = m.cols(has_trip, 0.0, trips, pen)
    rhs = -trips
    rhs[0] += soc0_e
    e_dyn = m.rows(he, rhs, rhs)
    m.coef(e_dyn, e_soc, 1.0)
    m.coef(e_dyn[1:], e_soc[:-1], -1.0)
    m.coef(e_dyn, e_ch, -eta_c_e)
    m.coef(e_dyn, e_dis, 1.0 / eta_d_e)
    m.coef(e_dyn, e_uns, -1.0)
    # the after-trip state is >= 0: soc_t + unserved_t >= trip_t (slot 0: soc0 is data)
    trip_lo = trips.copy()
    trip_lo[0] -= soc0_e
    e_trip = m.rows(has_trip, trip_lo, _INF)
    m.coef(e_trip, e_uns, 1.0)
    m.coef(e_trip[1:], e_soc[:-1], 1.0)
    m.coef(bal_col, e_ch, -1.0)
    m.coef(bal_col, e_dis, 1.0)
    terms += [(rows_h, ei[None, :], e_ch, -1.0), (rows_h, ei[None, :], e_dis, 1.0)]
    # departures: soc at state d (1..H) >= target, soft
    leaves = np.zeros((h, ei.size), dtype=bool)  # row d − 1 <-> state d
    leaves[:-1] = plugged[:-1] & ~plugged[1:]
    if opts.ev_target_at_horizon_end:
        leaves[-1] = plugged[-1]
    leaves &= target[None, :] > 0.0
    e_short = m.cols(leaves, 0.0, target, pen)
    e_dep = m.rows(leaves, target, _INF)
    m.coef(e_dep, e_soc, 1.0)
    m.coef(e_dep, e_short, 1.0)
    # v2h reserve while plugged in, soft
    soc_min_e = np.asarray(e.soc_min_kwh[ei], dtype=np.float64)
    reserve = plugged & v2h & (soc_min_e > 0.0)
    e_res = m.cols(reserve, 0.0, soc_min_e, pen)
    e_resrow = m.rows(reserve, soc_min_e, _INF)
    m.coef(e_resrow, e_soc, 1.0)
    m.coef(e_resrow, e_res, 1.0)

    # --- heat pump / air conditioner -----------------------------------------------------------
    th = a.thermal
    sign = thermal.heat_sign(th.kind)
    decay, gain = thermal.response(th.ua_kw_per_k, th.capacity_kwh_per_k, dt)
    valid = (sign != 0.0) & (th.cop > 0.0) & (gain > 0.0) & (th.p_max_kw > 0.0)
    ki = np.flatnonzero(valid)
    hk = np.ones((h, ki.size), dtype=bool)
    temp_out = np.asarray(problem.temp_out_c, dtype=np.float64)
    cop = np.stack([thermal.cop(th.cop[ki], th.kind[ki], float(x)) for x in temp_out]).reshape(
        h, ki.size
    )
    effect = thermal.effect_k_per_kwh(sign[ki], cop, gain[ki])  # (H, K) [K/kWh]
    a_k = decay[ki]
    t0_k = np.asarray(problem.indoor_temp_c, dtype=np.float64)[ki]
    e_max_k = th.p_max_kw[ki] * dt
    t_min_k, t_max_k = th.t_min_c[ki], np.maximum(th.t_max_c[ki], th.t_min_c[ki])
    k_e = m.cols(hk, 0.0, e_max_k, 0.0)
    # the band as bounds; "virtual heat" slacks [K] in the dynamics keep it feasible where it
    # cannot be held, and are left out where it provably can (by induction over the slots:
    # from inside the band, full power keeps the near edge and no power the far edge)
    k_t = m.cols(hk, t_min_k, t_max_k, 0.0)
    gap_lo = (1.0 - a_k)[None, :] * (t_min_k[None, :] - temp_out[:, None])  # heat to hold t_min
    gap_hi = (1.0 - a_k)[None, :] * (temp_out[:, None] - t_max_k[None, :])  # cooling for t_max
    reach = np.abs(effect) * e_max_k[None, :] - _HOLD_TOL_K
    heating = sign[ki] > 0.0
    need_lo = np.where(heating, (gap_lo > reach).any(axis=0), (gap_lo > 0.0).any(axis=0))
    need_hi = np.where(heating, (gap_hi > 0.0).any(axis=0), (gap_hi > reach).any(axis=0))
    need_lo |= t0_k < t_min_k
    need_hi |= t0_k > t_max_k
    comfort_cost = (
        np.full((h, ki.size), opts.comfort_penalty_per_k)
        if opts.comfort_penalty_per_k is not None
        else opts.penalty_factor * price_scale / np.maximum(np.abs(effect).min(axis=0), 1e-9)
    )
    k_lo = m.cols(hk & need_lo[None, :], 0.0, _INF, comfort_cost)
    k_hi = m.cols(hk & need_hi[None, :], 0.0, _INF, comfort_cost)
    rhs = (1.0 - a_k)[None, :] * temp_out[:, None]
    rhs[0] += a_k * t0_k
    k_dyn = m.rows(hk, rhs, rhs)
    m.coef(k_dyn, k_t, 1.0)
    m.coef(k_dyn[1:], k_t[:-1], -a_k)
    m.coef(k_dyn, k_e, -effect)
    m.coef(k_dyn, k_lo, -1.0)
    m.coef(k_dyn, k_hi, 1.0)
    m.coef(bal_col, k_e, -1.0)
    terms.append((rows_h, ki[None, :], k_e, -1.0))

    # --- shiftable runs -------------------------------------------------------------------------
    n_free = jobs.free.size
    job_owner = a.jobs.participant[jobs.free]
    milp = opts.shiftable == "milp"
    if milp:
        # one binary per feasible start inside the horizon, one for "later"
        s_grp, s_row = _ranges(
            jobs.free_es, np.minimum(jobs.free_latest, h - 1) + 1
        )  # starts in the horizon
        later = jobs.free_latest >= h
        y = m.cols(np.ones(s_grp.size, dtype=bool), 0.0, 1.0, 0.0, integer=True)
        y_later = m.cols(later, 0.0, 1.0, 0.0, integer=True)
        one = m.rows(np.ones(n_free, dtype=bool), 1.0, 1.0)
        m.coef(one[s_grp], y, 1.0)
        m.coef(one, y_later, 1.0)
        dur = a.jobs.duration_slots[jobs.free][s_grp]
        rep = np.repeat(np.arange(s_grp.size), dur)
        row = s_row[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(dur) - dur, dur))
        inside = row < h
        m.coef(bal[row[inside]], y[rep[inside]], -jobs.free_slot_kwh[s_grp[rep[inside]]])
        g_in = s_grp[rep[inside]]
        terms.append((row[inside], job_owner[g_in], y[rep[inside]], -jobs.free_slot_kwh[g_in]))
        x_grp, x_row = s_grp, s_row
        x = y
    else:
        x_grp, x_row = _ranges(jobs.free_es, np.minimum(jobs.free_end, h))
        x = m.cols(np.ones(x_grp.size, dtype=bool), 0.0, jobs.free_slot_kwh[x_grp], 0.0)
        beyond = np.maximum(jobs.free_end - h, 0) * jobs.free_slot_kwh
        need = m.rows(
            np.ones(n_free, dtype=bool),
            np.maximum(jobs.free_e_kwh - beyond, 0.0),
            jobs.free_e_kwh,
        )
        m.coef(need[x_grp], x, 1.0)
        m.coef(bal[x_row], x, -1.0)
        terms.append((x_row, job_owner[x_grp], x, -1.0))

    net_idx = None
    if problem.network is not None and active is not None:
        const_kwh = problem.pv_kwh - problem.base_demand_kwh - jobs.fixed_kwh
        net_idx = _network_model(
            m, problem, problem.network, const_kwh, terms, pen, active, bal, opts.wear_per_kwh
        )

    lp, integer_cols, nnz = m.lp()
    has_int = bool(integer_cols.size)
    build_s = time.perf_counter() - t_build

    # --- solve ----------------------------------------------------------------------------------
    t_solve = time.perf_counter()
    battery_share = 3 * b_soc.size / max(m.n_cols, 1)  # charge, discharge, state
    feeder_rows = net_idx is not None and bool(net_idx.active.any())
    hs, solver = _highs(lp, integer_cols, opts, m.n_cols, battery_share, feeder_rows)
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

    # --- read back ------------------------------------------------------------------------------
    def states(init: FloatArray, cols: IntArray, idx: IntArray) -> FloatArray:
        out = np.empty((h + 1, p))
        out[:] = init
        out[1:, cols] = column_values(xv, idx)
        return out

    ev_soc_traj = states(np.asarray(problem.ev_soc_kwh, dtype=np.float64), ei, e_soc)
    thermal_kwh = _scatter(h, p, ki, column_values(xv, k_e))
    temp_traj = _indoor_temperatures(problem, decay, ki, effect, thermal_kwh)
    shift = jobs.fixed_kwh.copy()
    job_energy = np.zeros((n_free, h))
    job_start = jobs.start_slot.copy()
    if milp:
        yv = xv[x]
        dur = a.jobs.duration_slots[jobs.free][x_grp]
        rep = np.repeat(np.arange(x_grp.size), dur)
        row = x_row[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(dur) - dur, dur))
        inside = row < h
        g = x_grp[rep[inside]]
        np.add.at(job_energy, (g, row[inside]), yv[rep[inside]] * jobs.free_slot_kwh[g])
        chosen = yv > 0.5
        job_start[jobs.free[x_grp[chosen]]] = x_row[chosen] + problem.t0
    else:
        np.add.at(job_energy, (x_grp, x_row), xv[x])
    if n_free:
        np.add.at(shift.T, a.jobs.participant[jobs.free], job_energy)

    comfort = np.zeros((h + 1, p))
    t_k = temp_traj[1:, ki]
    comfort[1:, ki] = np.maximum(t_min_k - t_k, 0.0) + np.maximum(t_k - t_max_k, 0.0)
    ev_short = np.zeros((h + 1, p))
    ev_short[1:, ei] = column_values(xv, e_short)
    ev_res = np.zeros((h + 1, p))
    ev_res[1:, ei] = column_values(xv, e_res)
    g_imp = xv[gp] + column_values(xv, gp_over)
    g_exp = xv[gm] + column_values(xv, gm_over)
    b_ch_v, b_dis_v = (
        _scatter(h, p, bi, column_values(xv, b_ch)),
        _scatter(h, p, bi, column_values(xv, b_dis)),
    )
    e_ch_v, e_dis_v = (
        _scatter(h, p, ei, column_values(xv, e_ch)),
        _scatter(h, p, ei, column_values(xv, e_dis)),
    )
    wear = opts.wear_per_kwh * (b_ch_v + b_dis_v + e_ch_v + e_dis_v)  # (H, P)
    unserved = _scatter(h, p, ei, column_values(xv, e_uns))
    own_penalty = pen * (ev_short[1:] + ev_res[1:] + unserved)  # (H, P)
    own_penalty[:, ki] += (column_values(xv, k_lo) + column_values(xv, k_hi)) * comfort_cost
    import_excess, export_excess = column_values(xv, gp_over), column_values(xv, gm_over)
    lam = duals[bal] if duals is not None else np.full(h, np.nan)
    network = None
    community_penalty = pen * (import_excess + export_excess)
    if net_idx is not None:
        assert problem.network is not None
        net_kwh = (
            problem.pv_kwh
            + b_dis_v
            + e_dis_v
            - problem.base_demand_kwh
            - thermal_kwh
            - shift
            - b_ch_v
            - e_ch_v
        )
        network = _network_result(
            problem.network, net_idx, net_kwh, dt, xv, duals, col_duals, lam, price_scale
        )
        own_penalty += pen * (
            network.participant_export_excess_kwh + network.participant_import_excess_kwh
        )
        community_penalty = community_penalty + pen * network.network_import_excess_kwh.sum(axis=1)
        wear = wear + opts.wear_per_kwh * network.pv_curtailment_kwh
    penalty = own_penalty.sum(axis=1) + community_penalty
    return Schedule(
        battery_charge_kwh=b_ch_v,
        battery_discharge_kwh=b_dis_v,
        ev_charge_kwh=e_ch_v,
        ev_discharge_kwh=e_dis_v,
        thermal_kwh=thermal_kwh,
        shiftable_kwh=shift,
        battery_soc_kwh=states(soc0_b, bi, b_soc),
        ev_soc_kwh=ev_soc_traj,
        indoor_temp_c=temp_traj,
        grid_import_kwh=g_imp,
        grid_export_kwh=g_exp,
        marginal_price=lam,
        objective=sol.objective,
        energy_cost_per_slot=retail * g_imp - np.asarray(problem.feed_in_price) * g_exp,
        wear_cost_per_slot=wear.sum(axis=1),
        penalty_cost_per_slot=penalty,
        own_cost_per_slot=wear + own_penalty,
        ev_shortfall_kwh=ev_short,
        ev_unserved_kwh=unserved,
        ev_reserve_shortfall_kwh=ev_res,
        comfort_violation_k=comfort,
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


def _indoor_temperatures(
    problem: ScheduleProblem,
    decay: FloatArray,
    ki: IntArray,
    effect: FloatArray,
    thermal_kwh: FloatArray,
) -> FloatArray:
    """Indoor temperatures (H + 1, P) [°C] of the planned thermal energy, by the physics of
    `assets/thermal.py` (free drift where nothing is controlled)."""
    h = problem.n_slots
    out = np.empty((h + 1, problem.n_participants))
    out[0] = problem.indoor_temp_c
    temp_out = np.asarray(problem.temp_out_c, dtype=np.float64)
    eff = np.zeros((h, problem.n_participants))
    eff[:, ki] = effect
    for t in range(h):  # a first-order recurrence over slots, vectorised across participants
        free = thermal.free_temperature_c(out[t], float(temp_out[t]), decay)
        out[t + 1] = thermal.next_temperature_c(free, thermal_kwh[t], eff[t])
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
    grp, start = _ranges(first, latest + 1)
    stop = start + dur[grp]
    overlap = np.round((cum_x[grp, stop] - cum_x[grp, start]) / slot_kwh[grp], 6)
    cost = cum_lam[stop] - cum_lam[start]
    order = np.lexsort((start, cost, -overlap, grp))
    g_sorted = grp[order]
    best = order[np.concatenate([[True], g_sorted[1:] != g_sorted[:-1]])]
    chosen: IntArray = start[best] + t0
    return ids, chosen
