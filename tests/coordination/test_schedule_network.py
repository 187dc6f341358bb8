"""The coordinator's schedule within a feeder's limits (LinDistFlow) and per-participant limits.

The feeder is SimBench's rural LV grid 3 (129 buses, no-load voltage 1.025 pu behind the
transformer's tap); 30 households with PV and batteries sit at the 30 connection points where a
kW moves the voltage most. The AC check is power-grid-model's power flow of the scheduled bus
injections (`PgmPowerFlow`, within 2e-6 pu of pandapower).

Measured on these cases (documented tolerances):
- exports: the AC voltage never exceeds the LP's linear voltage (LinDistFlow without losses
  overestimates the rise; AC − linear ∈ [−1.5e-3, +1e-8] pu), so v ≤ v_max holds with no
  tolerance beyond the LP's 0.005 pu margin;
- imports of 3 kW per household net at power factor 0.95: the LP's lower-limit voltage (with
  q = tan φ·p) is 2.7e-3–3.9e-3 pu above AC, inside the margin; ignoring the reactive power
  would be 0.02 pu above AC, four times the margin.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid.coordination.network import NetworkConstraints, network_constraints
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import Schedule, net_kwh_of
from peergrid.coordination.rolling import rolling_schedule
from peergrid.coordination.schedule import schedule
from peergrid.ems.coordinated import Coordinated, CoordinatedParams
from peergrid.ems.driver import run_policy
from peergrid.errors import InputError
from peergrid.network.feeder import Feeder
from peergrid.network.linear import LinearFeeder, linearise
from tests.ems.ems_community import Community, battery, hand_built, pv_shape

N = 30
DT_H = 0.5
T = 48
TAN_PHI_095 = float(np.tan(np.arccos(0.95)))


class Grid:
    def __init__(self) -> None:
        from peergrid.network.feeders import load_network
        from peergrid.network.powerflow import PgmPowerFlow

        self.net, self.feeder = load_network("simbench-lv-rural3")
        self.lin: LinearFeeder = linearise(self.feeder)
        self.pf = PgmPowerFlow(self.feeder, self.net)
        conn = np.unique(self.feeder.conn_bus)
        own = np.diag(self.lin.dv_dp_pu_per_kw)[conn]
        self.bus_of = conn[np.argsort(-own)[:N]].astype(np.int64)

    def injections_kw(self, net_kwh: np.ndarray, dt_h: float = DT_H) -> np.ndarray:
        """Bus injections (T, N) [kW] of participants' nets (T, P) [kWh]."""
        out = np.zeros((net_kwh.shape[0], self.feeder.n_bus))
        np.add.at(out.T, self.bus_of, net_kwh.T)
        return out / dt_h

    def ac(self, p_kw: np.ndarray, tan_phi: float = 0.0) -> Any:
        """AC power flow; imports draw tan φ kvar per kW, exports at unity power factor."""
        return self.pf.run(p_kw, tan_phi * np.minimum(p_kw, 0.0))


@pytest.fixture(scope="module")
def grid() -> Grid:
    return Grid()


def _sunny(seed: int = 0) -> Community:
    """30 households with 5–12 kWp of PV and a 15 kWh / 5 kW battery; evening peak tariff."""
    rng = np.random.default_rng(seed)
    pv = pv_shape(T, DT_H)[:, None] * rng.uniform(5.0, 12.0, (1, N))
    comm = hand_built(
        T,
        DT_H,
        n=N,
        base_kw=0.4,
        pv_kwh=pv,
        battery_params=battery(N, capacity=15.0, power=5.0, eta=0.95, soc=2.0),
    )
    hours = np.arange(T) * DT_H
    retail = np.where((hours >= 17) & (hours < 21), 0.40, 0.25)
    return replace(comm, retail=retail, feed_in=np.full(T, 0.08))


def _evening(load_kw: float = 7.0) -> Community:
    """30 households drawing `load_kw` at 17–21 h, each with a 10 kWh / 4 kW battery."""
    hours = np.arange(T) * DT_H
    base = np.where((hours >= 17) & (hours < 21), load_kw, 0.4)[:, None] * np.ones((1, N)) * DT_H
    comm = hand_built(
        T, DT_H, n=N, battery_params=battery(N, capacity=10.0, power=4.0, eta=0.95, soc=5.0)
    )
    return replace(comm, profiles=replace(comm.profiles, base_demand_kwh=base))


def _problem(comm: Community, network: NetworkConstraints | None = None) -> ScheduleProblem:
    return ScheduleProblem.from_profiles(
        comm.assets, comm.profiles, comm.retail, comm.feed_in, comm.dt_h, network=network
    )


@pytest.fixture(scope="module")
def sunny(grid: Grid) -> dict[str, Any]:
    """The sunny day without and with v_max = 1.06 pu."""
    comm = _sunny()
    free = schedule(_problem(comm))
    nc = network_constraints(grid.feeder, grid.bus_of, v_max_pu=1.06)
    problem = _problem(comm, nc)
    return {"comm": comm, "free": free, "nc": nc, "problem": problem, "s": schedule(problem)}


# --------------------------------------------------------------------------------------------
# voltages, flows, costs against the AC power flow


def test_constrained_schedule_keeps_the_ac_voltages_in_limits(
    grid: Grid, sunny: dict[str, Any]
) -> None:
    """Unconstrained, noon exports push the far end past 1.06 pu; the constrained schedule
    stores the peak instead, and the AC voltages stay below v_max with no tolerance (the
    linear model overestimates the rise; measured AC − linear ≤ 1e-8 pu). It costs more."""
    free, s, nc = sunny["free"], sunny["s"], sunny["nc"]
    v_free = grid.ac(grid.injections_kw(net_kwh_of(sunny["problem"], free))).v_pu
    assert v_free.max() > 1.07
    assert s.status == "Optimal" and s.network is not None
    ns = s.network
    assert ns.pv_curtailment_kwh.max() < 1e-6  # the batteries can take it all
    v = grid.ac(ns.bus_injection_kw).v_pu
    assert v.max() <= nc.v_max_pu
    assert v.min() >= nc.v_min_pu
    lp_v = ns.voltage_pu[:, nc.monitored_buses]
    assert lp_v.max() <= nc.v_max_pu - nc.voltage_margin_pu + 1e-7
    error = v[:, nc.monitored_buses] - lp_v
    assert error.max() <= 1e-6 and error.min() >= -2e-3
    # the constraint costs something, and the same nets reach the grid as scheduled
    assert s.objective >= free.objective + 0.1
    np.testing.assert_allclose(
        ns.bus_injection_kw, grid.injections_kw(net_kwh_of(sunny["problem"], s)), atol=1e-9
    )


def test_lp_voltages_and_flows_are_the_linearised_feeder(grid: Grid, sunny: dict[str, Any]) -> None:
    """The LP's sparse LinDistFlow (one flow and one voltage per branch) is exactly the dense
    `linearise(feeder)` model of the same injections, in slots with the feeder's rows (the
    LP's columns) and without (the same model computed)."""
    ns = sunny["s"].network
    assert 0 < ns.network_slots.sum() < T  # both kinds of slot are checked
    inj = ns.bus_injection_kw
    np.testing.assert_allclose(
        ns.voltage_pu, grid.lin.voltage_pu(inj, np.zeros_like(inj)), rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(ns.voltage_low_pu, ns.voltage_pu)  # no reactive power
    np.testing.assert_allclose(ns.p_from_kw, grid.lin.branch_flow_kw(inj), rtol=0, atol=1e-7)


def test_binding_voltages_and_bus_prices(grid: Grid, sunny: dict[str, Any]) -> None:
    """Where the upper voltage limit binds the voltage sits on it, and exporting there is worth
    less than the community's λ (the bus price is λ + the conservation dual). The bus price is
    the marginal cost of demand at the bus: one more kWh of load there changes the optimum by
    it (finite difference on a vertex solution)."""
    s, nc = sunny["s"], sunny["nc"]
    ns = s.network
    bind = ns.voltage_binding == 1
    assert bind.any() and not (ns.voltage_binding == -1).any()
    assert np.abs(ns.voltage_pu[bind] - (nc.v_max_pu - nc.voltage_margin_pu)).max() < 1e-4
    assert (ns.voltage_shadow_price[bind] > 0).all()
    t_bind = np.flatnonzero(bind.any(axis=1))
    far = ns.bus_price[t_bind][:, grid.bus_of] < s.marginal_price[t_bind, None] - 1e-3
    assert far.any()

    problem = sunny["problem"]
    opts = ScheduleOptions(solver="simplex")
    base = schedule(problem, opts)
    t = int(t_bind[len(t_bind) // 2])
    k = int(np.argmin(base.network.bus_price[t, grid.bus_of]))
    bus = int(grid.bus_of[k])
    eps = 1e-3
    demand = problem.base_demand_kwh.copy()
    demand[t, k] += eps
    bumped = schedule(replace(problem, base_demand_kwh=demand), opts)
    price = base.network.bus_price[t, bus]
    assert price < base.marginal_price[t] - 1e-3
    assert (bumped.objective - base.objective) / eps == pytest.approx(price, abs=1e-6)


def test_branch_flows_stay_within_their_ratings(grid: Grid) -> None:
    """At 40 % loading the noon exports overload lines (54 % unconstrained, AC); constrained,
    every monitored flow stays within rating_kw = rating_kva·0.4·0.95 and the AC loading
    within 40 % (measured 36 %)."""
    comm = _sunny()
    nc = network_constraints(grid.feeder, grid.bus_of, max_loading_pct=40.0)
    free = schedule(_problem(comm))
    assert grid.ac(grid.injections_kw(net_kwh_of(_problem(comm), free))).loading_pct.max() > 45
    s = schedule(_problem(comm, nc))
    ns = s.network
    k = nc.monitored_branches
    np.testing.assert_allclose(nc.rating_kw, grid.feeder.rating_kva[k] * 0.4 * 0.95, rtol=1e-12)
    assert (np.abs(ns.p_from_kw[:, k]) <= nc.rating_kw + 1e-6).all()
    assert (ns.flow_binding == -1).any()  # an export limit binds ...
    assert not (ns.flow_binding == 1).any()  # ... and no import limit
    assert (ns.flow_shadow_price[ns.flow_binding != 0] > 0).all()
    assert grid.ac(ns.bus_injection_kw).loading_pct.max() <= 40.0
    assert s.objective >= free.objective - 1e-7


# --------------------------------------------------------------------------------------------
# per-participant limits and the excess that keeps the LP feasible


def test_participant_limits_hold(grid: Grid) -> None:
    """A static 6 kW export cap for everyone, a 2 kW import cap, and a dynamic envelope that
    forbids the smallest PV system to export at 11–13 h: every net stays inside, and it
    costs."""
    comm = _sunny()
    small = int(np.argmin(comm.profiles.pv_kwh.max(axis=0)))
    exp = np.full((T, N), 6.0)
    exp[22:26, small] = 0.0
    imp = np.full((T, N), 2.0)
    imp[:, 1] = np.inf  # no import limit for participant 1
    nc = network_constraints(grid.feeder, grid.bus_of, export_limit_kw=exp, import_limit_kw=imp)
    problem = _problem(comm, nc)
    s = schedule(problem)
    net = net_kwh_of(problem, s)
    ns = s.network
    assert ns.participant_export_excess_kwh.max() < 1e-7
    assert ns.participant_import_excess_kwh.max() < 1e-7
    assert (net <= exp * DT_H + 1e-7).all()
    assert (net >= -imp * DT_H - 1e-7).all()
    assert net[22:26, small].max() <= 1e-7
    free = schedule(_problem(comm))
    assert net_kwh_of(problem, free).max() > 6.0 * DT_H  # the caps bind
    assert s.objective >= free.objective + 0.1


def test_what_no_schedule_can_hold_is_reported_as_excess(grid: Grid) -> None:
    """Without flexibility nothing can help: a 5 kW load under a 3 kW import limit imports
    2 kW·Δt too much in every slot; loads that pull the far end below v_min need that much
    shed at their buses, and the network rows with the excess hold the limits. The LP stays
    feasible and the penalties are counted."""
    comm = hand_built(T, DT_H, n=N, base_kw=0.4)
    base = comm.profiles.base_demand_kwh.copy()
    base[:, 0] = 5.0 * DT_H
    base[34:40, 1:] = 10.0 * DT_H  # 10 kW everywhere else at 17–20 h
    comm = replace(comm, profiles=replace(comm.profiles, base_demand_kwh=base))
    imp = np.full((T, N), np.inf)
    imp[:, 0] = 3.0
    nc = network_constraints(grid.feeder, grid.bus_of, v_min_pu=0.95, import_limit_kw=imp)
    problem = _problem(comm, nc)
    s = schedule(problem)
    assert s.status == "Optimal"
    ns = s.network
    np.testing.assert_allclose(ns.participant_import_excess_kwh[:, 0], 2.0 * DT_H, atol=1e-7)
    assert ns.participant_import_excess_kwh[:, 1:].max() < 1e-7
    shed = ns.network_import_excess_kwh
    assert shed[34:40].sum(axis=1).min() > 0.1 and shed[:34].max() < 1e-7
    v = ns.voltage_pu[:, nc.monitored_buses]
    assert v.min() >= nc.v_min_pu + nc.voltage_margin_pu - 1e-7
    # the LP sheds no more than needed: the binding bus sits on the limit
    assert v[34:40].min(axis=1) == pytest.approx(nc.v_min_pu + nc.voltage_margin_pu, abs=1e-6)
    assert (ns.voltage_binding[34:40] == -1).any()
    pen = 4.0 * 0.30  # penalty_factor × the dearest price, per kWh
    expected = pen * (ns.participant_import_excess_kwh.sum() + shed.sum())
    assert s.penalty_cost == pytest.approx(expected, rel=1e-6)


def test_reactive_power_of_imports(grid: Grid) -> None:
    """Evening loads of 7 kW at power factor 0.95 pull the far end to 0.944 pu (AC). The LP
    bounds the lower limit on voltages with q = tan φ·p and keeps the AC voltages above
    0.96 pu; ignoring q it would believe 0.967 pu where AC gives 0.944 pu, 0.02 pu off."""
    comm = _evening()
    tan = TAN_PHI_095
    nc = network_constraints(grid.feeder, grid.bus_of, v_min_pu=0.96, load_tan_phi=tan)
    s = schedule(_problem(comm, nc))
    ns = s.network
    inj = ns.bus_injection_kw
    np.testing.assert_allclose(ns.voltage_low_pu, grid.lin.voltage_pu(inj, tan * inj), atol=1e-9)
    np.testing.assert_allclose(
        ns.voltage_pu, grid.lin.voltage_pu(inj, np.zeros_like(inj)), atol=1e-9
    )
    v = grid.ac(inj, tan).v_pu
    assert v.min() >= 0.96
    assert ns.network_import_excess_kwh.max() < 1e-7
    error = v[:, nc.monitored_buses] - ns.voltage_low_pu[:, nc.monitored_buses]
    assert -nc.voltage_margin_pu < error.min() < -1e-3  # inside the margin, and not nothing
    blind = schedule(_problem(comm, replace(nc, load_tan_phi=0.0)))
    v_blind = grid.ac(blind.network.bus_injection_kw, tan).v_pu
    assert v_blind.min() < 0.96 - 0.01


# --------------------------------------------------------------------------------------------
# no network, rolling horizon, the EMS


def _fields_equal(a: Schedule, b: Schedule) -> list[str]:
    differ = []
    for f in fields(Schedule):
        if f.name in ("build_s", "solve_s", "network"):
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        same = np.array_equal(x, y, equal_nan=True) if isinstance(x, np.ndarray) else x == y
        if not same:
            differ.append(f.name)
    return differ


def test_a_network_that_never_binds_changes_nothing(grid: Grid, sunny: dict[str, Any]) -> None:
    """Without a network the schedule has none; with one whose limits are nowhere near, no
    slot gets the feeder's rows and the schedule is identical, bit for bit (the LP only has
    the curtailment columns more, which stay at zero)."""
    free = sunny["free"]
    assert free.network is None
    wide = network_constraints(
        grid.feeder, grid.bus_of, v_min_pu=0.5, v_max_pu=1.5, max_loading_pct=1e6
    )
    s = schedule(_problem(sunny["comm"], wide))
    assert s.network is not None and not s.network.network_slots.any()
    assert s.network.rounds == 1
    assert _fields_equal(s, free) == ["n_cols", "n_nonzeros"]
    assert s.n_rows == free.n_rows
    assert s.n_cols == free.n_cols + np.count_nonzero(sunny["comm"].profiles.pv_kwh)
    np.testing.assert_array_equal(s.network.pv_curtailment_kwh, 0.0)
    np.testing.assert_array_equal(
        s.network.bus_price, np.repeat(free.marginal_price[:, None], 129, 1)
    )


def test_rolling_schedule_takes_each_plans_rows_of_the_run_long_limits(grid: Grid) -> None:
    """Limits are (T, P) on the run's grid; each plan takes its window's rows, so an envelope
    that only a later plan sees is kept, and the network results concatenate."""
    comm = _sunny()
    exp = np.full((T, N), np.inf)
    exp[28:32, :] = 1.0  # 14–16 h, seen only from the second plan on
    nc = network_constraints(grid.feeder, grid.bus_of, v_max_pu=1.06, export_limit_kw=exp)
    s = rolling_schedule(
        comm.assets,
        comm.profiles,
        comm.retail,
        comm.feed_in,
        DT_H,
        horizon_slots=24,
        step_slots=12,
        network=nc,
    )
    ns = s.network
    assert ns is not None and ns.voltage_pu.shape == (T, 129) and ns.network_slots.shape == (T,)
    net = net_kwh_of(_problem(comm), s)
    assert (net[28:32] <= 1.0 * DT_H + 1e-7).all()
    assert ns.voltage_pu[:, nc.monitored_buses].max() <= 1.06 - 0.005 + 1e-7
    with pytest.raises(InputError, match="cover 10 slots"):
        schedule(_problem(comm, replace(nc, export_limit_kw=exp[:10])))


def test_coordinated_policy_plans_within_the_network(grid: Grid) -> None:
    """`with_network` returns a configured copy; its rolling plans keep the executed nets
    inside the feeder's voltage limit (linear and AC) and the participants' run-long limits;
    where a plan curtails PV the participants generate less."""
    comm = _sunny()
    exp = np.full((T, N), np.inf)
    exp[30:34, 3] = 0.5
    nc = network_constraints(grid.feeder, grid.bus_of, v_max_pu=1.06, export_limit_kw=exp)
    params = CoordinatedParams(horizon_h=12.0, replan_h=6.0)
    plain = Coordinated(params, N, np.random.default_rng(0))
    policy = plain.with_network(nc)
    assert plain.network is None and policy.network is nc
    with pytest.raises(ValueError, match="places 30 participants"):
        Coordinated(params, N + 1, np.random.default_rng(0), network=nc)
    r = run_policy(policy, comm.assets, comm.profiles, comm.retail, comm.feed_in, DT_H)
    net = (
        r["generation_kwh"] + r["battery_discharge_kwh"] - r["demand_kwh"] - r["battery_charge_kwh"]
    )
    assert (net[30:34, 3] <= 0.5 * DT_H + 1e-6).all()
    v = nc.voltage_pu(nc.branch_flow_kw(grid.injections_kw(net)))
    assert v[:, nc.monitored_buses].max() <= 1.06 - 0.005 + 1e-6
    assert grid.ac(grid.injections_kw(net)).v_pu.max() <= 1.06
    # a 12 h look-ahead fills the batteries before it sees the afternoon: the later plans
    # curtail PV, and the participants generate that much less
    curtailed = comm.profiles.pv_kwh - r["generation_kwh"]
    assert curtailed.sum() > 1.0 and curtailed.min() >= 0.0
    free = run_policy(plain, comm.assets, comm.profiles, comm.retail, comm.feed_in, DT_H)
    free_net = free["generation_kwh"] - free["demand_kwh"]
    free_net = free_net + free["battery_discharge_kwh"] - free["battery_charge_kwh"]
    v_free = nc.voltage_pu(nc.branch_flow_kw(grid.injections_kw(free_net)))
    assert v_free.max() > 1.06


# --------------------------------------------------------------------------------------------
# the sparse model on random radial feeders


def _random_feeder(rng: np.random.Generator, n_bus: int) -> Feeder:
    """A random radial feeder: bus 0 the slack, every other bus hung below an earlier one."""
    parent = np.array([int(rng.integers(0, k)) for k in range(1, n_bus)], dtype=np.int64)
    child = np.arange(1, n_bus, dtype=np.int64)
    path = np.zeros((n_bus - 1, n_bus), dtype=bool)
    for b in range(n_bus - 1):  # branch b feeds bus b + 1 and everything below it
        for n in range(1, n_bus):
            k = n
            while k != 0:
                if k == b + 1:
                    path[b, n] = True
                k = int(parent[k - 1])
    v0 = np.full(n_bus, float(rng.uniform(0.98, 1.04)))
    return Feeder(
        name="random",
        bus_ids=np.arange(n_bus, dtype=np.int64),
        bus_names=np.array([f"b{i}" for i in range(n_bus)]),
        vn_kv=np.full(n_bus, 0.4),
        slack=0,
        v_slack_pu=float(v0[0]),
        v0_pu=v0,
        branch_kind=np.full(n_bus - 1, "line"),
        branch_ids=np.arange(n_bus - 1, dtype=np.int64),
        branch_from=parent,
        branch_to=child,
        r_pu=rng.uniform(0.01, 0.3, n_bus - 1),
        x_pu=rng.uniform(0.0, 0.1, n_bus - 1),
        rating_kva=rng.uniform(20.0, 80.0, n_bus - 1),
        path=path,
        conn_bus=child,
        conn_type=np.full(n_bus - 1, "household"),
        conn_name=np.array([f"c{i}" for i in range(n_bus - 1)]),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_bus=st.integers(2, 9), n=st.integers(1, 6))
def test_random_feeders_hold_their_limits(seed: int, n_bus: int, n: int) -> None:
    """On any radial feeder the LP's voltages and flows are `linearise`'s of its injections,
    and wherever no excess was needed they are inside the limits."""
    rng = np.random.default_rng(seed)
    feeder = _random_feeder(rng, n_bus)
    bus_of = rng.integers(0, n_bus, n).astype(np.int64)  # the slack bus included
    n_slots, dt = 8, 1.0
    pv = rng.uniform(0.0, 15.0, (n_slots, n))
    comm = hand_built(
        n_slots,
        dt,
        n=n,
        base_kw=float(rng.uniform(0.0, 3.0)),
        pv_kwh=pv,
        battery_params=battery(n, capacity=20.0, power=6.0, soc=5.0),
    )
    nc = network_constraints(
        feeder, bus_of, v_min_pu=0.97, v_max_pu=1.05, load_tan_phi=float(rng.uniform(0, 0.5))
    )
    s = schedule(_problem(comm, nc))
    ns = s.network
    assert s.status == "Optimal" and ns is not None
    lin = linearise(feeder)
    inj = ns.bus_injection_kw
    q = nc.load_tan_phi * inj
    np.testing.assert_allclose(ns.voltage_pu, lin.voltage_pu(inj, 0 * inj), atol=1e-9)
    np.testing.assert_allclose(ns.voltage_low_pu, lin.voltage_pu(inj, q), atol=1e-9)
    np.testing.assert_allclose(ns.p_from_kw, lin.branch_flow_kw(inj), atol=1e-6)
    ok = ns.network_import_excess_kwh.sum(axis=1) < 1e-7
    mon = nc.monitored_buses
    hi = np.maximum(nc.v_max_pu - nc.voltage_margin_pu, feeder.v0_pu[mon]) + 1e-7
    lo = np.minimum(nc.v_min_pu + nc.voltage_margin_pu, feeder.v0_pu[mon]) - 1e-7
    assert (ns.voltage_pu[ok][:, mon] <= hi).all()
    assert (ns.voltage_low_pu[ok][:, mon] >= lo).all()
    assert (np.abs(ns.p_from_kw[ok]) <= nc.rating_kw + 1e-6).all()
    # the bus injections are the participants' nets (after curtailment) less the shed load
    problem = _problem(comm, nc)
    inj_nets = np.zeros_like(inj)
    np.add.at(inj_nets.T, bus_of, net_kwh_of(problem, s).T)
    np.testing.assert_allclose(inj, (inj_nets + ns.network_import_excess_kwh) / dt, atol=1e-9)
    assert (ns.pv_curtailment_kwh <= pv + 1e-9).all()


def test_constraints_are_validated(grid: Grid) -> None:
    f = grid.feeder
    with pytest.raises(InputError, match="bus indices"):
        network_constraints(f, np.array([0, 500]))
    with pytest.raises(InputError, match=r"\(T, P\)"):
        network_constraints(f, grid.bus_of, export_limit_kw=np.ones((T, N + 1)))
    with pytest.raises(InputError, match=">= 0"):
        network_constraints(f, grid.bus_of, import_limit_kw=-np.ones((T, N)))
    with pytest.raises(InputError, match="v_min"):
        network_constraints(f, grid.bus_of, v_min_pu=1.0, v_max_pu=1.005)
    with pytest.raises(InputError, match="child of exactly one"):
        nc = network_constraints(f, grid.bus_of)
        NetworkConstraints(
            **{**{k.name: getattr(nc, k.name) for k in fields(nc)}, "branch_to": nc.branch_from}
        )
    with pytest.raises(InputError, match="loop"):  # buses 1 and 2 feed each other
        NetworkConstraints(
            bus_of=np.array([1]),
            slack=0,
            v0_pu=np.ones(4),
            branch_from=np.array([2, 1, 0]),
            branch_to=np.array([1, 2, 3]),
            r_pu=np.full(3, 0.1),
            x_pu=np.zeros(3),
            monitored_buses=np.array([1, 2, 3]),
            monitored_branches=np.array([0]),
            rating_kw=np.array([10.0]),
        )
    with pytest.raises(InputError, match="places 30 participants"):
        schedule(_problem(hand_built(4, 1.0, n=2), network_constraints(f, grid.bus_of)))
