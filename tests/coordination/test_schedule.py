"""The coordinator's schedule LP: physics, the balance, λ, relaxations, rolling horizon."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid.assets import thermal
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import Schedule, net_kwh_of
from peergrid.coordination.rolling import block_starts, rolling_schedule
from peergrid.coordination.schedule import schedule
from tests.ems.ems_community import (
    Community,
    battery,
    ev,
    hand_built,
    heat_pump,
    jobs_of,
    random_community,
    run,
    suburb,
)

TOL = 1e-6


def _problem(comm: Community, stop: int | None = None) -> ScheduleProblem:
    return ScheduleProblem.from_profiles(
        comm.assets, comm.profiles, comm.retail, comm.feed_in, comm.dt_h, stop=stop
    )


def _community_cost(comm: Community, net: np.ndarray) -> float:
    """Cost of the community with the retailer when it nets internally [currency]."""
    g = net.sum(axis=1)
    return float((np.maximum(-g, 0.0) * comm.retail - np.maximum(g, 0.0) * comm.feed_in).sum())


def _check_physics(problem: ScheduleProblem, s: Schedule) -> None:
    """Every limit of the LP's schedule, to the solver's tolerance."""
    a, dt = problem.assets, problem.dt_h
    b = a.battery
    ch, dis, soc = s.battery_charge_kwh, s.battery_discharge_kwh, s.battery_soc_kwh
    assert (ch >= -TOL).all() and (dis >= -TOL).all()
    assert (ch <= b.power_kw * dt + TOL).all() and (dis <= b.power_kw * dt + TOL).all()
    has_b = (b.capacity_kwh > 0) & (b.power_kw > 0) & (b.soc_max_kwh > b.soc_min_kwh)
    lo = np.minimum(b.soc_min_kwh, b.soc_initial_kwh)
    hi = np.maximum(b.soc_max_kwh, b.soc_initial_kwh)
    assert (soc[:, has_b] >= lo[has_b] - TOL).all() and (soc[:, has_b] <= hi[has_b] + TOL).all()
    eta_c = np.where(b.efficiency_charge > 0, b.efficiency_charge, 1.0)
    eta_d = np.where(b.efficiency_discharge > 0, b.efficiency_discharge, 1.0)
    np.testing.assert_allclose(soc[1:], soc[:-1] + eta_c * ch - dis / eta_d, atol=TOL)
    # EV: only while plugged in, v2h only where allowed, state in [0, capacity]
    e = a.ev
    plugged = problem.ev_plugged
    assert (s.ev_charge_kwh[~plugged] == 0.0).all()
    assert (s.ev_discharge_kwh[~(plugged & e.v2h)] == 0.0).all()
    assert (s.ev_charge_kwh <= e.power_kw * dt + TOL).all()
    assert (s.ev_soc_kwh >= -TOL).all() and (s.ev_soc_kwh <= e.capacity_kwh + TOL).all()
    # thermal: the exact discretisation of assets/thermal.py, power limit
    th = a.thermal
    assert (s.thermal_kwh >= -TOL).all() and (s.thermal_kwh <= th.p_max_kw * dt + TOL).all()
    decay, gain = thermal.response(th.ua_kw_per_k, th.capacity_kwh_per_k, dt)
    sign = thermal.heat_sign(th.kind)
    for t in range(problem.n_slots):
        t_out = float(problem.temp_out_c[t])
        free = thermal.free_temperature_c(s.indoor_temp_c[t], t_out, decay)
        effect = sign * thermal.cop(th.cop, th.kind, t_out) * gain
        np.testing.assert_allclose(
            s.indoor_temp_c[t + 1], free + effect * s.thermal_kwh[t], atol=1e-9
        )
    # community balance: Σ net = export − import
    net = net_kwh_of(problem, s)
    np.testing.assert_allclose(net.sum(axis=1), s.grid_export_kwh - s.grid_import_kwh, atol=TOL)


# --------------------------------------------------------------------------------------------
# worked examples


def test_two_neighbours_share_without_the_grid() -> None:
    """One exports 1 kWh, the other needs 1 kWh, nothing is flexible: the community needs no
    grid at all and costs 0."""
    n_slots, dt = 1, 1.0
    comm = hand_built(n_slots, dt, n=2, base_kw=0.0, pv_kwh=np.array([[1.0, 0.0]]))
    comm = replace(
        comm,
        profiles=replace(comm.profiles, base_demand_kwh=np.array([[0.0, 1.0]])),
    )
    s = schedule(_problem(comm))
    assert s.status == "Optimal"
    assert s.grid_import_kwh[0] == pytest.approx(0.0, abs=1e-9)
    assert s.grid_export_kwh[0] == pytest.approx(0.0, abs=1e-9)
    assert s.energy_cost == pytest.approx(0.0, abs=1e-9)
    # exactly balanced: λ is any price in [feed-in, retail]
    assert comm.feed_in[0] - 1e-9 <= s.marginal_price[0] <= comm.retail[0] + 1e-9


def test_battery_arbitrage_on_a_two_price_day() -> None:
    """4 slots of 1 h, 1 kW base load; retail 0.1 cheap, then 0.5; a lossless 2 kWh battery
    with 2 kW, empty: it charges 2 kWh in the cheap slot (plus the load) and covers the two
    dear slots' load. Cost = 0.1·(1 + 2) + 0.5·(1 + 0 + 0)... = 0.3 + 0.5 = 0.8 (the battery
    covers 2 of the 3 dear kWh)."""
    comm = hand_built(
        4,
        1.0,
        base_kw=1.0,
        battery_params=battery(1, capacity=2.0, power=2.0, eta=1.0, soc=0.0),
        retail=np.array([0.1, 0.5, 0.5, 0.5]),
        feed_in=np.zeros(4),
    )
    s = schedule(_problem(comm), ScheduleOptions(wear_per_kwh=0.0))
    assert s.energy_cost == pytest.approx(0.8, abs=1e-7)
    assert s.battery_charge_kwh[0, 0] == pytest.approx(2.0, abs=1e-7)
    # λ: the cheap slot's price, then the dear price where the community still imports
    assert s.marginal_price[0] == pytest.approx(0.1, abs=1e-7)
    assert s.marginal_price.max() == pytest.approx(0.5, abs=1e-7)


def test_ev_meets_its_departure_target_in_the_cheapest_slots() -> None:
    """EV plugged in slots 0..3, leaves in slot 4; needs 10 kWh more; 5 kW charger, 1 h slots:
    the two cheapest plugged slots carry the charge."""
    plugged = np.array([[True], [True], [True], [True], [False], [False]])
    comm = hand_built(
        6,
        1.0,
        base_kw=0.0,
        ev_params=ev(1, capacity=50.0, power=5.0, eta=1.0, soc=10.0, target=20.0),
        plugged=plugged,
        retail=np.array([0.4, 0.2, 0.3, 0.1, 0.1, 0.1]),
        feed_in=np.zeros(6),
    )
    s = schedule(_problem(comm), ScheduleOptions(wear_per_kwh=0.0))
    np.testing.assert_allclose(s.ev_charge_kwh[:, 0], [0, 5, 0, 5, 0, 0], atol=1e-7)
    assert s.ev_soc_kwh[4, 0] == pytest.approx(20.0, abs=1e-7)
    assert s.ev_shortfall_kwh.sum() == pytest.approx(0.0, abs=1e-9)


def test_unreachable_target_is_a_reported_shortfall() -> None:
    plugged = np.array([[True], [False]])
    comm = hand_built(
        2,
        1.0,
        ev_params=ev(1, capacity=50.0, power=5.0, eta=1.0, soc=10.0, target=40.0),
        plugged=plugged,
    )
    s = schedule(_problem(comm))
    assert s.status == "Optimal"
    assert s.ev_charge_kwh[0, 0] == pytest.approx(5.0, abs=1e-7)
    assert s.ev_shortfall_kwh[1, 0] == pytest.approx(25.0, abs=1e-6)
    assert s.penalty_cost > 0.0


def test_trip_larger_than_the_battery_is_unserved() -> None:
    plugged = np.array([[False], [True], [True]])
    trips = np.array([[0.0], [15.0], [0.0]])
    comm = hand_built(
        3,
        1.0,
        ev_params=ev(1, capacity=50.0, power=5.0, eta=1.0, soc=10.0, target=0.0),
        plugged=plugged,
        trips=trips,
    )
    s = schedule(_problem(comm), ScheduleOptions(ev_target_at_horizon_end=False))
    assert s.ev_unserved_kwh[1, 0] == pytest.approx(5.0, abs=1e-6)
    assert s.ev_soc_kwh[2, 0] == pytest.approx(0.0, abs=1e-6)


def test_heat_pump_holds_the_band_at_least_cost() -> None:
    """A heat pump pre-heats in the cheap slots and keeps the comfort band everywhere."""
    n_slots, dt = 24, 1.0
    retail = np.where(np.arange(n_slots) % 24 < 6, 0.1, 0.4)
    comm = hand_built(
        n_slots,
        dt,
        thermal_params=heat_pump(1, p_max=5.0, t_min=20.0, t_max=23.0, t0=20.5),
        temp_out_c=0.0,
        retail=retail,
        feed_in=np.zeros(n_slots),
    )
    problem = _problem(comm)
    s = schedule(problem)
    _check_physics(problem, s)
    assert s.comfort_violation_k.max() <= 1e-7
    assert (s.indoor_temp_c[1:] >= 20.0 - 1e-7).all()
    assert s.thermal_kwh[:6].sum() > s.thermal_kwh[6:12].sum()  # pre-heating when cheap
    # the discretisation is the asset module's: heating at the LP's energies
    assert s.penalty_cost == pytest.approx(0.0, abs=1e-7)


def test_relaxed_run_and_milp_block() -> None:
    """A 2-slot, 1 kW run in a 6-slot window; PV covers slots 2 and 4 only (not adjacent): the
    relaxation draws its 2 kWh in slots 2 and 4 for free; the MILP must pay one slot."""
    n_slots = 6
    pv = np.zeros((n_slots, 1))
    pv[[2, 4], 0] = 1.0
    comm = hand_built(
        n_slots,
        1.0,
        base_kw=0.0,
        pv_kwh=pv,
        jobs=jobs_of([(0, 0, 6, 2, 1.0)]),
        retail=np.full(n_slots, 0.3),
        feed_in=np.zeros(n_slots),
    )
    problem = _problem(comm)
    relaxed = schedule(problem)
    milp = schedule(problem, ScheduleOptions(shiftable="milp"))
    assert relaxed.objective == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(relaxed.shiftable_kwh[:, 0], [0, 0, 1, 0, 1, 0], atol=1e-7)
    assert milp.objective == pytest.approx(0.3, abs=1e-7)
    start = int(milp.job_start_slot[0])
    assert start in (1, 2, 3, 4)
    expected = np.zeros(n_slots)
    expected[start : start + 2] = 1.0
    np.testing.assert_allclose(milp.shiftable_kwh[:, 0], expected, atol=1e-9)
    assert milp.objective >= relaxed.objective - 1e-9
    # rounding the relaxation gives a block covering one of the PV slots
    ids, starts = block_starts(problem, relaxed)
    assert list(ids) == [0] and int(starts[0]) in (1, 2, 3, 4)


# --------------------------------------------------------------------------------------------
# λ


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8), minutes=st.sampled_from([15, 60]))
def test_marginal_price_lies_between_feed_in_and_retail(seed: int, n: int, minutes: int) -> None:
    """Without import/export limits λ ∈ [min(feed-in, retail), retail], equal to retail where
    the community imports and to the (clipped) feed-in price where it exports."""
    comm = random_community(seed, n, 1, minutes / 60)
    problem = _problem(comm)
    s = schedule(problem)
    _check_physics(problem, s)
    feed = np.minimum(comm.feed_in, comm.retail)
    lam = s.marginal_price
    assert (lam >= feed - TOL).all() and (lam <= comm.retail + TOL).all()
    imports = s.grid_import_kwh > 1e-6
    exports = s.grid_export_kwh > 1e-6
    np.testing.assert_allclose(lam[imports], comm.retail[imports], atol=TOL)
    np.testing.assert_allclose(lam[exports], feed[exports], atol=TOL)


def test_binding_limits_move_the_price_out_of_the_band() -> None:
    """An import limit below the inflexible load lifts λ above retail (scarcity); an export
    limit below the PV surplus pushes it below the feed-in price. Both excesses are reported."""
    comm = hand_built(2, 1.0, n=2, base_kw=2.0, pv_kwh=np.array([[0.0, 0.0], [4.0, 4.0]]))
    s = schedule(_problem(comm), ScheduleOptions(import_limit_kw=3.0, export_limit_kw=2.0))
    assert s.import_excess_kwh[0] == pytest.approx(1.0, abs=1e-7)
    assert s.export_excess_kwh[1] == pytest.approx(2.0, abs=1e-7)
    assert s.marginal_price[0] > comm.retail[0] + 0.1
    assert s.marginal_price[1] < comm.feed_in[1] - 0.1


def test_ipm_and_simplex_agree() -> None:
    comm = suburb(6, 1, 0.25)
    problem = _problem(comm)
    ipm = schedule(problem, ScheduleOptions(solver="ipm"))
    simplex = schedule(problem, ScheduleOptions(solver="simplex"))
    assert (ipm.solver, simplex.solver) == ("ipm", "simplex")
    assert ipm.objective == pytest.approx(simplex.objective, rel=1e-6)
    np.testing.assert_allclose(ipm.marginal_price, simplex.marginal_price, atol=1e-5)


# --------------------------------------------------------------------------------------------
# optimality against the rule-based policies


def test_lp_is_a_lower_bound_on_self_consumption() -> None:
    """With the whole run as horizon, the trips known and no departure assumed at the end, the
    self-consumption policy's dispatch is feasible for the LP (its runs are blocks, hence in the
    relaxation), so the LP's optimum is at most its community cost + wear."""
    comm = suburb(8, 2, 0.25)
    sc = run("self-consumption", comm)
    opts = ScheduleOptions(ev_target_at_horizon_end=False)
    s = schedule(_problem(comm), opts)
    assert s.penalty_cost == pytest.approx(0.0, abs=1e-6)
    net_sc = (
        sc["generation_kwh"]
        + sc["battery_discharge_kwh"]
        + sc["ev_discharge_kwh"]
        - sc["demand_kwh"]
        - sc["battery_charge_kwh"]
        - sc["ev_charge_kwh"]
    )
    flows = ("battery_charge_kwh", "battery_discharge_kwh", "ev_charge_kwh", "ev_discharge_kwh")
    wear_sc = opts.wear_per_kwh * sum(float(sc[k].sum()) for k in flows)
    assert s.objective <= _community_cost(comm, net_sc) + wear_sc + 1e-6
    assert s.objective < 0.9 * _community_cost(comm, net_sc)


# --------------------------------------------------------------------------------------------
# rolling horizon


def test_rolling_horizon_commits_and_concatenates() -> None:
    comm = suburb(5, 2, 0.5)
    n_slots = comm.n_slots
    full = schedule(_problem(comm))
    one = rolling_schedule(
        comm.assets,
        comm.profiles,
        comm.retail,
        comm.feed_in,
        comm.dt_h,
        horizon_slots=n_slots,
        step_slots=n_slots,
    )
    assert one.objective == pytest.approx(full.objective, rel=1e-9)
    rolled = rolling_schedule(
        comm.assets,
        comm.profiles,
        comm.retail,
        comm.feed_in,
        comm.dt_h,
        horizon_slots=48,
        step_slots=12,
    )
    assert rolled.battery_charge_kwh.shape == (n_slots, 5)
    assert rolled.battery_soc_kwh.shape == (n_slots + 1, 5)
    assert rolled.marginal_price.shape == (n_slots,)
    _check_physics(_problem(comm), rolled)
    # each run's energy is drawn exactly once, inside its window
    jobs = comm.assets.jobs
    np.testing.assert_allclose(
        rolled.job_energy_kwh.sum(axis=1), jobs.p_kw * comm.dt_h * jobs.duration_slots, atol=1e-6
    )
    # perfect foresight over the whole run is at least as good as rolling plans
    assert full.objective <= rolled.objective + 1e-6
    with pytest.raises(ValueError, match="step_slots"):
        rolling_schedule(
            comm.assets,
            comm.profiles,
            comm.retail,
            comm.feed_in,
            comm.dt_h,
            horizon_slots=4,
            step_slots=8,
        )


def test_rolling_milp_keeps_committed_starts() -> None:
    comm = suburb(4, 2, 0.5)
    rolled = rolling_schedule(
        comm.assets,
        comm.profiles,
        comm.retail,
        comm.feed_in,
        comm.dt_h,
        horizon_slots=48,
        step_slots=24,
        options=ScheduleOptions(shiftable="milp", mip_time_limit_s=10.0),
    )
    jobs = comm.assets.jobs
    start = rolled.job_start_slot
    assert (start >= jobs.earliest_start).all()
    assert (start + jobs.duration_slots <= np.maximum(jobs.latest_end, start + 1)).all()
    for j in range(jobs.n_jobs):  # every run is one block at its start
        expected = np.zeros(comm.n_slots)
        expected[start[j] : start[j] + jobs.duration_slots[j]] = jobs.p_kw[j] * comm.dt_h
        np.testing.assert_allclose(rolled.job_energy_kwh[j], expected, atol=1e-7)
