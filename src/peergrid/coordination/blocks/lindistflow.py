"""The feeder's rows in the schedule LP: LinDistFlow (`coordination.network`) written sparsely,
PV curtailment, and the participants' limits.

Per slot, one flow column P_b [kW] and one voltage column per branch (its child bus): flow
conservation dt·(P_b − Σ_children P_c) + injection_n = 0 at every bus, where the injection is
the sum of the nets of the bus's participants (the same columns as the balance, `NetTerm`), and
w_n = w_parent + r_b·P_b with v_n = v0_n − w_n/(1000·v0_n); v_min + margin ≤ v ≤ v_max − margin
at monitored buses (bounds widened to include the no-load voltage), |P_b| ≤ rating_kw at
monitored branches (column bounds). That is O((N + B)·H) rows, not N×N per slot, and only for
the slots that need them (row generation, `coordination.schedule`). With a network the
coordinator may also curtail PV (a column per participant and slot up to its generation,
costing `wear_per_kwh` per kWh on top of the energy it loses): when the batteries are full it is
the only executable way to export less, since a battery that charges and discharges at once to
burn energy is netted by the executing EMS (and with wear > 0 burning costs more than
curtailing). Where no schedule can hold the limits (inflexible loads), penalised excess columns
at each bus with participants take the load the network cannot carry out of its rows
(`network_import_excess_kwh`: what would have to be shed). Per-participant limits
[−import, export]·Δt on each participant's net (static caps or operating envelopes) are ranged
rows with penalised excess columns in the same way. The network prices: the dual of the
conservation row at bus n, μ_t,n, makes bus_price_t,n = λ_t + μ_t,n the marginal cost of a kWh
more demand at that bus; the reduced costs of the voltage and flow columns are the shadow prices
of the limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets.params import BoolArray, FloatArray, IntArray
from peergrid.coordination.blocks.base import NetTerm, add_to_balance
from peergrid.coordination.network import KW_PER_PU, NetworkConstraints
from peergrid.coordination.problem import ScheduleProblem
from peergrid.coordination.result import NetworkSchedule
from peergrid.optim.highs import LpModel, column_values

_BINDING_DUAL = 1e-6  # a limit binds where its shadow price exceeds this × the price scale


@dataclass(frozen=True, eq=False)
class FeederColumns:
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


def add_feeder(
    m: LpModel,
    problem: ScheduleProblem,
    net: NetworkConstraints,
    const_kwh: FloatArray,
    terms: list[NetTerm],
    pen: float,
    active: BoolArray,
    bal: IntArray,
    cut_cost: float,
) -> FeederColumns:
    """Add PV curtailment, the feeder's LinDistFlow rows for the `active` slots (H,) and the
    participants' limits for all (module docstring).

    `const_kwh` is every participant's fixed net export (H, P) [kWh]; `terms` the rest of it
    (curtailment is added to them and to the balance rows `bal`).
    """
    h, dt = problem.n_slots, problem.dt_h
    pv = np.asarray(problem.pv_kwh, dtype=np.float64)
    cut = m.cols(pv > 0.0, 0.0, pv, cut_cost)
    curtail: NetTerm = (
        np.arange(h)[:, None],
        np.arange(problem.n_participants)[None, :],
        cut,
        -1.0,
    )
    add_to_balance(m, bal, [curtail])
    terms = [*terms, curtail]
    n, nb = net.n_bus, net.n_branch
    to, bus_of = net.branch_to, net.bus_of
    hb = np.repeat(active[:, None], nb, axis=1)
    up = net.parent_branch

    # flows, bounded at the monitored branches
    f_lo, f_hi = np.full(nb, -np.inf), np.full(nb, np.inf)
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
    bus_imp = m.cols(hb & has_part[to][None, :], 0.0, np.inf, pen)
    m.coef(cons, bus_imp, 1.0)

    # voltages: w_n = w_parent + (r_b + x_b·tan φ)·P_b, bounded at the monitored buses
    v0 = net.v0_pu[to]
    monitored = np.zeros(n, dtype=bool)
    monitored[net.monitored_buses] = True
    mon = monitored[to]
    scale = KW_PER_PU * v0
    w_lo_bound = np.where(
        mon, np.minimum(scale * (v0 - net.v_max_pu + net.voltage_margin_pu), 0.0), -np.inf
    )  # the upper voltage limit
    w_hi_bound = np.where(
        mon, np.maximum(scale * (v0 - net.v_min_pu - net.voltage_margin_pu), 0.0), np.inf
    )  # the lower voltage limit

    def drops(lo: FloatArray, hi: FloatArray, per_kw: FloatArray) -> IntArray:
        w = m.cols(hb, lo, hi, 0.0)
        row = m.rows(hb, 0.0, 0.0)
        m.coef(row, w, 1.0)
        m.coef(row, np.where(up >= 0, w[:, np.maximum(up, 0)], -1), -1.0)
        m.coef(row, flow, -per_kw)
        return w

    if net.load_tan_phi > 0.0:
        w_hi = drops(w_lo_bound, np.full(nb, np.inf), net.r_pu)
        w_lo = drops(np.full(nb, -np.inf), w_hi_bound, net.r_pu + net.load_tan_phi * net.x_pu)
    else:
        w_hi = w_lo = drops(w_lo_bound, w_hi_bound, net.r_pu)

    # per-participant limits: −import·dt ≤ net − export excess + import excess ≤ export·dt
    exp_kw, imp_kw = net.limits(problem.t0, h)
    if problem.export_limit_kwh is not None:
        exp_kw = problem.export_limit_kwh / dt
    if problem.import_limit_kwh is not None:
        imp_kw = problem.import_limit_kwh / dt
    shape = (h, problem.n_participants)
    fin_e = np.zeros(shape, dtype=bool) if exp_kw is None else np.isfinite(exp_kw)
    fin_i = np.zeros(shape, dtype=bool) if imp_kw is None else np.isfinite(imp_kw)
    hi = np.where(fin_e, (exp_kw if exp_kw is not None else 0.0) * dt - const_kwh, np.inf)
    lo = np.where(fin_i, -(imp_kw if imp_kw is not None else 0.0) * dt - const_kwh, -np.inf)
    lim = m.rows(fin_e | fin_i, lo, hi)
    lim_exp = m.cols(fin_e, 0.0, np.inf, pen)
    lim_imp = m.cols(fin_i, 0.0, np.inf, pen)
    m.coef(lim, lim_exp, -1.0)
    m.coef(lim, lim_imp, 1.0)
    if (fin_e | fin_i).any():
        for t_idx, p_idx, col, val in terms:
            m.coef(lim[t_idx, p_idx], col, val)
    return FeederColumns(active, flow, w_hi, w_lo, cons, cut, bus_imp, lim_exp, lim_imp)


def read_feeder(
    net: NetworkConstraints,
    idx: FeederColumns,
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
        out[np.ix_(act, to)] = v0 - xv[w[act]] / (KW_PER_PU * v0)
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
        upper = np.maximum(col_duals[idx.w_hi[act]], 0.0) * (KW_PER_PU * v0)
        lower = np.maximum(-col_duals[idx.w_lo[act]], 0.0) * (KW_PER_PU * v0)
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
