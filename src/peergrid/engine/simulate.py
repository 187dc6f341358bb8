"""A whole run: resolve the scenario, build the community, run the slots, settle, summarise.

The baseline is the same community with the same EMS and no market: everyone imports at the
retail price and exports at the feed-in price. When the EMS policy does not look at market
outcomes (`observes_market = False`, true of every shipped policy) its decisions, and so every
participant's net position, are identical with and without P2P, and the baseline is settled from
the same dispatch; otherwise the engine simulates the baseline in a second pass.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from peergrid.data.weather import weather_site
from peergrid.ems.registry import make_policy
from peergrid.engine.community import Community, build_community
from peergrid.engine.loop import ProgressFn, Recorded, run_slots
from peergrid.engine.result import SimulationResult
from peergrid.markets.registry import get_mechanism
from peergrid.metrics import kpi
from peergrid.rng import child_rng
from peergrid.scenario.resolve import resolve
from peergrid.scenario.schema import EmsSpec, MarketSpec, Scenario
from peergrid.settlement.slot import retailer_only_cost


def resolve_full(scenario: Scenario, market: str | None = None) -> Scenario:
    """Groups expanded, location and mechanism/EMS parameters explicit, market overridden."""
    site = weather_site(scenario.location.weather)
    station = (site.latitude, site.longitude, site.altitude_m) if site is not None else None
    resolved = resolve(scenario, station)
    if resolved.network is not None:
        from peergrid.engine.network import resolve_buses

        resolved = resolve_buses(resolved, scenario.base_dir)
    if resolved.data is not None and scenario.base_dir is not None:
        # absolute, so that scenario.resolved.toml finds the same file from the run directory
        meter = (scenario.base_dir / resolved.data.meter_file).resolve()
        resolved = resolved.model_copy(
            update={"data": resolved.data.model_copy(update={"meter_file": str(meter)})}
        )
    m = resolved.market
    if market is not None and market != m.mechanism:
        m = MarketSpec(mechanism=market, params={})
    mech = get_mechanism(m.mechanism, m.params)
    n = len(resolved.participants)
    policy = make_policy(resolved.ems.policy, resolved.ems.params, n, child_rng(0, "probe"))
    return resolved.model_copy(
        update={
            "market": MarketSpec(
                mechanism=m.mechanism, params=mech.params.model_dump(exclude_none=True)
            ),
            "ems": EmsSpec(
                policy=resolved.ems.policy, params=policy.params.model_dump(exclude_none=True)
            ),
        }
    )


def simulate(
    scenario: Scenario,
    *,
    market: str | None = None,
    on_progress: ProgressFn | None = None,
    community: Community | None = None,
) -> SimulationResult:
    """Simulate a scenario under its market (or `market`) and against the no-P2P baseline.

    `community` reuses the arrays of an earlier run of the same scenario (as `compare` does), so
    that designs are compared on identical data.
    """
    t0 = time.perf_counter()
    resolved = resolve_full(scenario, market)
    if community is None:
        community = build_community(resolved, scenario.base_dir)
    else:
        community = dataclasses.replace(community, scenario=resolved)
    mechanism = get_mechanism(resolved.market.mechanism, resolved.market.params)
    n = community.n_participants
    own_ems = resolved.ems.policy
    # A mechanism may need its own EMS policy for the P2P run (the coordinated market's central
    # scheduler, the Stackelberg game's leader and followers); the baseline keeps each home alone
    # with its own EMS.
    run_ems: str = getattr(mechanism, "ems_policy", None) or own_ems

    def policy_named(name: str) -> Any:
        params: dict[str, Any] | None = resolved.ems.params
        if name != own_ems:
            params = getattr(mechanism, "ems_params", lambda: None)()
        return make_policy(name, params, n, child_rng(resolved.seed, "ems"))

    grid_ctx = None
    if resolved.network is not None:
        from peergrid.engine import network as netmod

        setup = community.network
        if setup is None:
            setup = netmod.build_setup(resolved, scenario.base_dir)
            community = dataclasses.replace(community, network=setup)
        assert setup is not None
        grid_ctx = netmod.RunNetwork.prepare(setup, community)

    def policy_for(name: str, *, p2p: bool) -> Any:
        policy = policy_named(name)
        if grid_ctx is not None:
            policy = grid_ctx.wrap(policy, p2p=p2p)
        return policy

    policy = policy_for(run_ems, p2p=True)
    t_build = time.perf_counter()
    view = grid_ctx.view if grid_ctx is not None else None
    recorded = run_slots(community, policy, mechanism, on_progress, network=view)
    base_rec = recorded
    if policy.observes_market or run_ems != own_ems:
        base_rec = run_slots(community, policy_for(own_ems, p2p=False), None)
    base_net = base_rec.series["net_kwh"]
    baseline = _baseline(community, base_net)
    baseline["generation_kwh"] = base_rec.series["generation_kwh"]
    period_cost = None
    settle = getattr(mechanism, "settle_period", None)
    if settle is not None:  # bill sharing, coordinated allocation rules: priced after the fact
        period_cost = settle(
            recorded.series["net_kwh"], community.retail_price, community.feed_in_price
        )
    network_out = None
    if grid_ctx is not None:
        network_out = grid_ctx.after_run(community, recorded, baseline)
    t_run = time.perf_counter()
    summary, participants = summarise(
        community,
        recorded,
        baseline,
        period_cost,
        None if network_out is None else network_out.charges(),
    )
    if network_out is not None:
        network_out.amend(summary, participants)
        if resolved.network is not None and resolved.network.compare_unconstrained:
            network_out.compare(summary, _unconstrained(scenario, resolved, market, community))
    core = getattr(mechanism, "core_check", None)
    if core is not None:
        energy = recorded.series["cost"].sum(axis=0) if period_cost is None else period_cost
        net = recorded.series["net_kwh"]
        check = core(net, community.retail_price, community.feed_in_price, energy)
        summary["core"] = (
            {"checked": False, "reason": f"more than the limit of participants ({n})"}
            if check is None
            else {
                "checked": True,
                "in_core": bool(check.in_core),
                "efficient": bool(check.efficient),
                "max_violation": round(float(check.max_violation), 6),
                "worst_coalition": [community.names[i] for i in sorted(check.worst_coalition)],
            }
        )
    runtime = time.perf_counter() - t0
    summary["runtime_s"] = round(runtime, 3)
    summary["ems"] = run_ems
    summary["baseline_ems"] = own_ems
    diagnostics = getattr(recorded.final_state, "diagnostics", None)
    if diagnostics:
        summary["ems_info"] = {k: round(float(v), 6) for k, v in diagnostics.items()}
    summary["timing_s"] = {
        "build": round(t_build - t0, 3),
        "slots": round(t_run - t_build, 3),
        "summarise": round(time.perf_counter() - t_run, 3),
    }
    return SimulationResult(
        scenario=resolved,
        community=community,
        recorded=recorded,
        baseline=baseline,
        summary=summary,
        participants=participants,
        extra={} if network_out is None else {"network": network_out},
    )


def _unconstrained(
    scenario: Scenario, resolved: Scenario, market: str | None, community: Community
) -> dict[str, Any]:
    """Summary of the same run without the operator's network rules (envelopes, caps,
    permissioning, network constraints): what unconstrained P2P would do to the feeder."""
    assert resolved.network is not None
    free = resolved.network.model_copy(
        update={
            "envelopes": "none",
            "export_limit_kw": None,
            "import_limit_kw": None,
            "permissioning": False,
            "coordinated_constraints": False,
            "compare_unconstrained": False,
        }
    )
    other = scenario.model_copy(update={"network": free}).with_base_dir(scenario.base_dir)
    setup = community.network
    assert setup is not None
    same = dataclasses.replace(community, network=dataclasses.replace(setup, spec=free))
    return simulate(other, market=market, community=same).summary


def _baseline(community: Community, net_kwh: np.ndarray) -> dict[str, np.ndarray]:
    retail = community.retail_price[:, None]
    feed_in = community.feed_in_price[:, None]
    return {
        "net_kwh": net_kwh,
        "grid_import_kwh": np.maximum(-net_kwh, 0.0),
        "grid_export_kwh": np.maximum(net_kwh, 0.0),
        "cost": retailer_only_cost(net_kwh, retail, feed_in),
    }


def _stats(values: np.ndarray) -> dict[str, float | int]:
    """Mean and max of a mechanism diagnostic over the slots where it is finite."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"slots": 0}
    return {
        "slots": int(finite.size),
        "mean": round(float(finite.mean()), 6),
        "max": round(float(finite.max()), 6),
    }


def summarise(
    community: Community,
    rec: Recorded,
    baseline: dict[str, np.ndarray],
    period_cost: np.ndarray | None = None,
    network_cost: np.ndarray | None = None,
) -> tuple[dict[str, Any], Any]:
    """The summary dict and the per-participant table.

    `period_cost` (P,) replaces the sum of per-slot costs for mechanisms that settle the whole
    period after the fact; the difference is reported as `period_adjustment`. `network_cost`
    (P,) is what each participant pays the network operator for its trades (usage and loss
    charges), part of its bill.
    """
    import pandas as pd

    s = rec.series
    grid = community.grid
    sc = community.scenario
    days = grid.days
    fixed = community.daily_charge * days
    slot_cost = s["cost"].sum(axis=0)
    energy_cost = slot_cost if period_cost is None else np.asarray(period_cost, dtype=float)
    bill = energy_cost + fixed
    if network_cost is not None:
        bill = bill + network_cost
    baseline_bill = baseline["cost"].sum(axis=0) + fixed
    saving = baseline_bill - bill
    a = community.assets
    participants = pd.DataFrame(
        {
            "participant": community.names,
            "baseline_bill": baseline_bill,
            "bill": bill,
            "saving": saving,
            "saving_pct": kpi.saving_pct(baseline_bill, bill),
            "grid_import_kwh": s["grid_import_kwh"].sum(axis=0),
            "grid_export_kwh": s["grid_export_kwh"].sum(axis=0),
            "p2p_bought_kwh": s["p2p_bought_kwh"].sum(axis=0),
            "p2p_sold_kwh": s["p2p_sold_kwh"].sum(axis=0),
            "period_adjustment": energy_cost - slot_cost,
            "baseline_grid_import_kwh": baseline["grid_import_kwh"].sum(axis=0),
            "baseline_grid_export_kwh": baseline["grid_export_kwh"].sum(axis=0),
            "demand_kwh": s["demand_kwh"].sum(axis=0),
            "generation_kwh": s["generation_kwh"].sum(axis=0),
            "pv_kwp": [p.pv.kwp if p.pv else 0.0 for p in sc.participants],
            "battery_kwh": a.battery.capacity_kwh,
            "ev_kwh": a.ev.capacity_kwh,
            "heating": [p.heating.kind if p.heating else "" for p in sc.participants],
        }
    )
    demand = float(s["demand_kwh"].sum())
    gen = float(s["generation_kwh"].sum())
    charge = float(s["battery_charge_kwh"].sum() + s["ev_charge_kwh"].sum())
    discharge = float(s["battery_discharge_kwh"].sum() + s["ev_discharge_kwh"].sum())
    consumption = demand + charge - discharge
    imp = float(s["grid_import_kwh"].sum())
    exp = float(s["grid_export_kwh"].sum())
    b_imp = float(baseline["grid_import_kwh"].sum())
    b_exp = float(baseline["grid_export_kwh"].sum())
    peak, par = kpi.peak_and_par(s["grid_import_kwh"].sum(axis=1), grid.dt_h)
    b_peak, b_par = kpi.peak_and_par(baseline["grid_import_kwh"].sum(axis=1), grid.dt_h)
    total = float(bill.sum())
    b_total = float(baseline_bill.sum())
    surplus = rec.market["operator_surplus"]

    def r(x: float, nd: int = 4) -> float:
        return round(float(x), nd)

    summary: dict[str, Any] = {
        "scenario": sc.name,
        "market": sc.market.mechanism,
        "ems": sc.ems.policy,
        "participants": community.n_participants,
        "slots": grid.n_slots,
        "slot_minutes": grid.slot_minutes,
        "days": days,
        "start_local": sc.time.start.isoformat(),
        "timezone": grid.timezone,
        "seed": sc.seed,
        "runtime_s": 0.0,
        "energy": {
            "demand_kwh": r(demand, 3),
            "generation_kwh": r(gen, 3),
            "storage_charge_kwh": r(charge, 3),
            "storage_discharge_kwh": r(discharge, 3),
            "grid_import_kwh": r(imp, 3),
            "grid_export_kwh": r(exp, 3),
            "p2p_traded_kwh": r(float(s["p2p_bought_kwh"].sum()), 3),
            "baseline_grid_import_kwh": r(b_imp, 3),
            "baseline_grid_export_kwh": r(b_exp, 3),
            "ev_unserved_kwh": r(float(s["ev_unserved_kwh"].sum()), 3),
        },
        "cost": {
            "currency": sc.tariff.currency,
            "baseline_total": r(b_total, 2),
            "total": r(total, 2),
            "savings": r(b_total - total, 2),
            "savings_pct": r(float(kpi.saving_pct(np.array([b_total]), np.array([total]))[0]), 3),
            "fixed_charges": r(fixed * community.n_participants, 2),
            "settlement": "slot" if period_cost is None else "period",
            "operator_surplus": r(float(np.nansum(surplus)), 4),
        },
        "kpi": {
            "self_sufficiency": r(kpi.self_sufficiency(consumption, imp)),
            "self_consumption": r(kpi.self_consumption(gen, exp)),
            "baseline_self_sufficiency": r(kpi.self_sufficiency(consumption, b_imp)),
            "baseline_self_consumption": r(kpi.self_consumption(gen, b_exp)),
            "peak_import_kw": r(peak, 3),
            "baseline_peak_import_kw": r(b_peak, 3),
            "peak_to_average": r(par, 3),
            "baseline_peak_to_average": r(b_par, 3),
            "fairness_jain": r(kpi.jain_index(saving)),
            "participants_worse_off": int(np.sum(saving < -kpi.WORSE_OFF_TOL)),
        },
        "market_info": {k: _stats(v) for k, v in rec.info.items()},
    }
    return summary, participants
