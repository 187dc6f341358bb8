"""Every registered EMS policy, stepped inside per-slot limits (`step_within_limits`, as the
lifecycle's bid and real-time steps do), keeps each participant's net position inside its
export and import limits wherever its battery, EV and PV can, without breaking any asset limit;
with infinite limits it is the policy alone, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from peergrid.assets import battery as battery_physics
from peergrid.ems.base import Dispatch, PhysicalState, physical_of
from peergrid.ems.driver import DISPATCH_FIELDS, run_policy
from peergrid.ems.envelope import enforce_envelope
from peergrid.ems.registry import make_policy, policy_names
from tests.ems import ems_community as cm
from tests.ems.ems_checks import check_battery, check_ev, check_jobs, check_thermal
from tests.ems.ems_community import Community, net_of, random_community

TOL = 1e-9
SEEDS = [11, 29]


def _params(policy_name: str) -> dict[str, object] | None:
    return {"max_iterations": 2} if policy_name == "stackelberg" else None


def _limits(comm: Community, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight limits: exports 0–1.5 kW (a fifth of them 0), imports 0.3–2 kW [kWh per slot]."""
    rng = np.random.default_rng(seed + 1000)
    shape = comm.profiles.base_demand_kwh.shape
    exp = rng.uniform(0.0, 1.5, shape) * (rng.random(shape) > 0.2) * comm.dt_h
    imp = rng.uniform(0.3, 2.0, shape) * comm.dt_h
    return exp, imp


def _run(
    policy_name: str, comm: Community, seed: int, limits: tuple[np.ndarray, np.ndarray] | None
) -> dict[str, Any]:
    policy: Any = make_policy(
        policy_name,
        _params(policy_name),
        comm.assets.n_participants,
        np.random.default_rng(seed),
    )
    exp, imp = limits if limits is not None else (None, None)
    return run_policy(
        policy,
        comm.assets,
        comm.profiles,
        comm.retail,
        comm.feed_in,
        comm.dt_h,
        export_limit_kwh=exp,
        import_limit_kwh=imp,
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("policy_name", policy_names())
def test_limits_hold_and_assets_stay_within_bounds(policy_name: str, seed: int) -> None:
    comm = random_community(seed, 8, 2, 0.5)
    exp, imp = _limits(comm, seed)
    r = _run(policy_name, comm, seed, (exp, imp))
    net = net_of(r)
    curtailed = comm.profiles.pv_kwh - r["generation_kwh"]
    # the limits bind: without the wrapper the policy breaks both somewhere
    free = net_of(_run(policy_name, comm, seed, None))
    assert (free > exp + TOL).any() and (-free > imp + TOL).any()
    assert (curtailed > 0.0).any()

    # exports: always brought within the limit
    assert (net <= exp + TOL).all(), np.argwhere(net > exp + TOL)
    # imports: an excess is left only where the battery is not charging and discharges all
    # it can (the rest is load the EMS must not shed)
    b, dt = comm.assets.battery, comm.dt_h
    soc = r["battery_soc_kwh"]
    eta_d = np.where(b.efficiency_discharge > 0.0, b.efficiency_discharge, 1.0)
    can = battery_physics.discharge_limit_kwh(soc[:-1], b.soc_min_kwh, b.power_kw, eta_d, dt)
    short = -net > imp + TOL
    assert (r["battery_charge_kwh"][short] == 0.0).all()
    assert (r["battery_discharge_kwh"][short] >= can[short] - TOL).all()

    # every asset limit, the battery and EV balances bit for bit, comfort and job windows
    check_battery(comm, r)
    check_ev(comm, r)
    check_jobs(comm, r)
    check_thermal(comm, r, policy=policy_name)
    for name in DISPATCH_FIELDS:
        assert (r[name] >= 0.0).all(), name
    np.testing.assert_array_equal(
        r["demand_kwh"], comm.profiles.base_demand_kwh + r["thermal_kwh"] + r["shiftable_kwh"]
    )
    assert (curtailed >= 0.0).all() and (curtailed <= comm.profiles.pv_kwh).all()
    # curtailment only where the export limit is reached and nothing else was left
    cut = curtailed > 0.0
    assert (net[cut] >= exp[cut] - TOL).all()
    assert (r["battery_discharge_kwh"][cut] == 0.0).all() and (
        r["ev_discharge_kwh"][cut] == 0
    ).all()


@pytest.mark.parametrize("policy_name", policy_names())
def test_infinite_limits_reproduce_the_inner_policy(policy_name: str) -> None:
    comm = random_community(5, 6, 2, 0.5)
    inf = np.full(comm.profiles.base_demand_kwh.shape, np.inf)
    wrapped = _run(policy_name, comm, 5, (inf, inf))
    inner = _run(policy_name, comm, 5, None)
    for key, value in inner.items():
        if key != "step_s":
            np.testing.assert_array_equal(wrapped[key], value, err_msg=key)


@pytest.mark.parametrize("policy_name", policy_names())
def test_every_state_can_be_re_anchored(policy_name: str) -> None:
    """`with_physical` (the typed protocol the limits and the lifecycle use) replaces the
    states of charge and the indoor temperature and keeps everything else."""
    comm = random_community(3, 4, 1, 0.5)
    policy: Any = make_policy(policy_name, _params(policy_name), 4, np.random.default_rng(0))
    state = policy.init_state(comm.assets)
    phys = PhysicalState(np.full(4, 1.5), np.full(4, 2.5), np.full(4, 21.0))
    moved = state.with_physical(phys)
    assert type(moved) is type(state)
    for name in ("battery_soc_kwh", "ev_soc_kwh", "indoor_temp_c"):
        np.testing.assert_array_equal(getattr(physical_of(moved), name), getattr(phys, name))
    np.testing.assert_array_equal(state.battery_soc_kwh, comm.assets.battery.soc_initial_kwh)


def _dispatch(**kw: float) -> Dispatch:
    fields = {name: np.array([kw.get(name.removesuffix("_kwh"), 0.0)]) for name in DISPATCH_FIELDS}
    return Dispatch(**fields)


def test_worked_example_export_then_import() -> None:
    """One participant: PV 3, battery discharging 1, v2h 0.5, demand 1 → net 3.5 kWh against
    an export limit of 0.5. Battery discharge goes (2.5), then v2h (2.0), the battery charges
    what it can (1.0 of its 5 kW · 0.2 h = 1 kWh → 1.0), PV is curtailed by 0.5."""
    comm = cm.hand_built(1, 0.2, battery_params=cm.battery(1, capacity=10.0, power=5.0, soc=4.0))
    b = comm.assets.battery
    d = _dispatch(generation=3.0, battery_discharge=1.0, ev_discharge=0.5, demand=1.0)
    r = enforce_envelope(
        d,
        export_limit_kwh=np.array([0.5]),
        import_limit_kwh=np.array([np.inf]),
        battery_soc_start_kwh=np.array([4.0]),
        battery_soc_end_kwh=np.array([4.0 - 1.0 / 0.95]),
        ev_soc_start_kwh=np.array([20.0]),
        ev_soc_end_kwh=np.array([19.5]),
        assets=comm.assets,
        dt_h=0.2,
    )
    out = r.dispatch
    assert out.battery_discharge_kwh[0] == 0.0 and out.ev_discharge_kwh[0] == 0.0
    assert out.battery_charge_kwh[0] == pytest.approx(1.0)
    assert out.generation_kwh[0] == pytest.approx(2.5)
    assert out.net_kwh[0] == pytest.approx(0.5)
    assert r.battery_soc_kwh[0] == 4.0 + 0.95 * out.battery_charge_kwh[0]
    assert r.ev_soc_kwh[0] == 20.0  # the v2h discharge is gone (η = 1 without an EV)
    assert b.power_kw[0] == 5.0 and r.changed[0]

    # import: demand 4, battery charging 1, limit 2 → no charge, discharge 1 (power limit),
    # 1 kWh above the limit stays
    d = _dispatch(demand=4.0, battery_charge=1.0)
    r = enforce_envelope(
        d,
        export_limit_kwh=np.array([np.inf]),
        import_limit_kwh=np.array([2.0]),
        battery_soc_start_kwh=np.array([4.0]),
        battery_soc_end_kwh=np.array([4.95]),
        ev_soc_start_kwh=np.array([0.0]),
        ev_soc_end_kwh=np.array([0.0]),
        assets=comm.assets,
        dt_h=0.2,
    )
    assert r.dispatch.battery_charge_kwh[0] == 0.0
    assert r.dispatch.battery_discharge_kwh[0] == pytest.approx(1.0)
    assert r.dispatch.net_kwh[0] == pytest.approx(-3.0)
    assert r.battery_soc_kwh[0] == 4.0 - r.dispatch.battery_discharge_kwh[0] / 0.95
