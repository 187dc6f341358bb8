"""A whole run: resolve the scenario, build the community, run the lifecycle, settle, summarise.

The P2P run goes through the market lifecycle (`engine/lifecycle.py`): each home's EMS bids
from forecasts at gate closure, the market clears, delivery is metered, deviations are
settled. Two more runs on the same data measure it:

- the **baseline**: the same community with each home's own EMS and no market — every home
  decides each slot on its actual demand and PV and deals with the retailer alone. With
  perfect forecasts and the homes' own policy in the market, its dispatch is the P2P run's
  (the lifecycle then reproduces the real-time decisions exactly) and is reused;
- the **perfect-foresight twin** (unless the run itself has perfect forecasts): the same
  market with `perfect` forecasts, so the summary can say what forecast error costs each
  participant and the community.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from peergrid.data.weather import weather_site
from peergrid.ems.base import EmsPolicy, PlansWithNetwork, ReportsDiagnostics
from peergrid.ems.driver import energy_forecast_slots
from peergrid.ems.registry import make_policy
from peergrid.engine.community import Community, build_community
from peergrid.engine.feed import ForecastFeed
from peergrid.engine.loop import ProgressFn, Recorded, run_lifecycle, run_realtime
from peergrid.engine.result import SimulationResult
from peergrid.forecast.base import Forecaster, PreparesIssues
from peergrid.ledger.store import LedgerStore
from peergrid.markets.base import CoreChecked, ImposesPolicy, PeriodSettled
from peergrid.markets.gate import (
    GateSchedule,
    default_gate_closure,
    gate_schedule,
    parse_gate_closure,
)
from peergrid.markets.registry import get_mechanism
from peergrid.metrics import kpi
from peergrid.rng import child_rng
from peergrid.scenario.resolve import resolve
from peergrid.scenario.schema import EmsSpec, ForecastSpec, MarketSpec, Scenario
from peergrid.settlement.slot import retailer_only_cost

PERFECT = "perfect"


def resolve_full(
    scenario: Scenario, market: str | None = None, forecast: str | None = None
) -> Scenario:
    """Groups expanded; location, gate closure, forecaster and mechanism/EMS parameters
    explicit; market and forecaster overridden where asked."""
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
    gate = m.gate_closure or default_gate_closure(resolved.time.slot_minutes)
    str(parse_gate_closure(gate, resolved.time.slot_minutes))  # checked where it came from
    if market is not None and market != m.mechanism:
        m = MarketSpec(mechanism=market, params={})
    mech = get_mechanism(m.mechanism, m.params)
    n = len(resolved.participants)
    policy = make_policy(resolved.ems.policy, resolved.ems.params, n, child_rng(0, "probe"))
    f = resolved.forecast
    if forecast is not None and forecast != f.method:
        f = ForecastSpec(method=forecast, params={}, history_days=f.history_days)
    f = ForecastSpec(method=f.method, params=_forecast_params(f), history_days=f.history_days)
    return resolved.model_copy(
        update={
            "market": MarketSpec(
                mechanism=m.mechanism,
                params=mech.params.model_dump(exclude_none=True),
                gate_closure=str(parse_gate_closure(gate, resolved.time.slot_minutes)),
            ),
            "forecast": f,
            "ems": EmsSpec(
                policy=resolved.ems.policy, params=policy.params.model_dump(exclude_none=True)
            ),
        }
    )


def _forecast_params(spec: ForecastSpec) -> dict[str, Any]:
    """The forecaster's parameters with every default explicit (validated)."""
    if spec.method == PERFECT and not spec.params:
        return {}
    from peergrid.forecast.registry import forecaster_params

    return forecaster_params(spec.method, spec.params)


def forecaster_for(
    community: Community, spec: ForecastSpec, seed: int
) -> tuple[Forecaster | None, Community]:
    """The run's forecaster (None for perfect foresight) and the community with its
    forecasting data cached, so that the designs of a comparison share them."""
    if spec.method == PERFECT:
        return None, community
    from peergrid.engine.forecast_data import forecast_data_of
    from peergrid.forecast.registry import make_forecaster

    data = community.forecast_data
    if data is None or data.n_history != community.history_slots(spec.history_days):
        from peergrid.engine.community import build_history

        history = build_history(community.scenario, spec.history_days, community.meter_names)
        data = forecast_data_of(community, history, seed=seed)
        community = dataclasses.replace(community, forecast_data=data)
    return make_forecaster(spec.method, spec.params, data, seed=seed), community


def _prepare_forecaster(
    forecaster: PreparesIssues, gates: GateSchedule, n_slots: int, run_h: int, baseline_h: int
) -> None:
    """Let the forecaster compute up front what the run will ask of it: an issue at every
    gate for the slots it closes and the look-ahead of `run_h` slots from the last of them
    (`run_lifecycle`), and the baseline's issue at every slot for `baseline_h` slots
    (`run_realtime`); the look-aheads are the rows of demand and PV each policy reads
    (`energy_forecast_slots`)."""
    reach = int(np.max(gates.stop_slot - gates.gate_slot)) + run_h - 1 if gates.n_gates else 0
    slots = np.concatenate([gates.gate_slot, np.arange(n_slots, dtype=np.int64)])
    forecaster.prepare(slots, max(reach, baseline_h))


def expected_at_gates(feed: ForecastFeed, gates: GateSchedule) -> tuple[Any, Any]:
    """The base demand and PV each slot was expected to have at its gate closure, (T, P)
    each [kWh] (the realised values under perfect foresight)."""
    p = feed.profiles
    if feed.forecaster is None:
        return p.base_demand_kwh, p.pv_kwh
    demand = np.empty_like(p.base_demand_kwh)
    pv = np.empty_like(p.pv_kwh)
    for g, a, b in zip(gates.gate_slot, gates.first_slot, gates.stop_slot, strict=True):
        issued = feed.forecaster.issue(int(g), int(a), int(b - a))
        demand[a:b] = issued.demand_kwh
        pv[a:b] = issued.pv_kwh
    return demand, pv


def simulate(
    scenario: Scenario,
    *,
    market: str | None = None,
    forecast: str | None = None,
    on_progress: ProgressFn | None = None,
    community: Community | None = None,
    twin: bool = True,
    ledger_path: str | Path | LedgerStore | None = None,
    publish: bool = True,
) -> SimulationResult:
    """Simulate a scenario under its market (or `market`) and forecaster (or `forecast`),
    against the no-P2P baseline and, unless `twin` is False or the forecasts are perfect,
    against its perfect-foresight twin.

    `community` reuses the arrays of an earlier run of the same scenario (as `compare` does), so
    that designs are compared on identical data. `ledger_path`: write the run's ledger there
    (a new SQLite file, `engine.ledger`, which the run directory's writer moves in; or an empty
    `LedgerStore`, e.g. the live platform's database). `publish`: put what the community may
    publish through disclosure control or DP (`engine.publish`); the twin and the unconstrained
    comparison, whose results only feed this run's figures, skip it.
    """
    t0 = time.perf_counter()
    resolved = resolve_full(scenario, market, forecast)
    if community is None:
        community = build_community(resolved, scenario.base_dir)
    else:
        community = dataclasses.replace(community, scenario=resolved)
    mechanism = get_mechanism(resolved.market.mechanism, resolved.market.params)
    n = community.n_participants
    grid = community.grid
    own_ems = resolved.ems.policy
    # A mechanism may need its own EMS policy for the P2P run (the coordinated market's central
    # scheduler, the Stackelberg game's leader and followers); the baseline keeps each home alone
    # with its own EMS.
    imposed = isinstance(mechanism, ImposesPolicy)
    run_ems = mechanism.ems_policy if isinstance(mechanism, ImposesPolicy) else own_ems

    def policy_named(name: str) -> EmsPolicy[Any]:
        params: dict[str, Any] | None = resolved.ems.params
        if name != own_ems and isinstance(mechanism, ImposesPolicy):
            params = mechanism.ems_params()
        return make_policy(name, params, n, child_rng(resolved.seed, "ems"))

    t_fc = time.perf_counter()
    forecaster, community = forecaster_for(community, resolved.forecast, resolved.seed)
    gates = gate_schedule(
        grid, parse_gate_closure(str(resolved.market.gate_closure), grid.slot_minutes)
    )
    if isinstance(forecaster, PreparesIssues):
        run_h, own_h = (
            energy_forecast_slots(policy_named(e), grid.dt_h) for e in (run_ems, own_ems)
        )
        _prepare_forecaster(forecaster, gates, grid.n_slots, run_h, own_h)
    feed = ForecastFeed.build(
        community.profiles, community.retail_price, community.feed_in_price, grid.dt_h, forecaster
    )
    grid_ctx = None
    if resolved.network is not None:
        from peergrid.engine import network as netmod

        setup = community.network
        if setup is None:
            setup = netmod.build_setup(resolved, scenario.base_dir)
            community = dataclasses.replace(community, network=setup)
        assert setup is not None
        expected_demand, expected_pv = expected_at_gates(feed, gates)
        grid_ctx = netmod.RunNetwork.prepare(setup, community, expected_demand, expected_pv)
        feed = dataclasses.replace(
            feed,
            export_limit_kwh=grid_ctx.export_limit_kwh,
            import_limit_kwh=grid_ctx.import_limit_kwh,
        )

    # the perfect-foresight twin first, so that its arrays are gone before the run's exist
    t_twin = time.perf_counter()
    twin_bill: Any = None
    twin_slots = None
    if forecaster is not None and twin:
        twin_result = simulate(
            scenario,
            market=market,
            forecast=PERFECT,
            community=community,
            twin=False,
            publish=False,
        )
        twin_bill = twin_result.participants["bill"].to_numpy()
        twin_slots = twin_result.summary["timing_s"]["slots"]
        del twin_result
    twin_s = time.perf_counter() - t_twin

    policy = policy_named(run_ems)
    if grid_ctx is not None and isinstance(policy, PlansWithNetwork):
        constraints = grid_ctx.constraints()
        if constraints is not None:
            policy = policy.with_network(constraints)
    t_build = time.perf_counter()
    rules = resolved.settlement
    journal = None
    if ledger_path is not None:
        from peergrid.engine.ledger import RunLedger

        journal = RunLedger.create(
            ledger_path, community, resolved.market.mechanism, rules.deviation_rule
        )
    try:
        recorded = run_lifecycle(
            feed,
            community.assets,
            policy,
            mechanism,
            gates,
            network=grid_ctx.view if grid_ctx is not None else None,
            deviation_rule=rules.deviation_rule,
            penalty_per_kwh=rules.penalty_per_kwh,
            on_progress=on_progress,
            journal=journal,
        )
    except BaseException:
        if journal is not None:
            journal.close_workers()
        raise
    t_run = time.perf_counter()
    if forecaster is None and not imposed and not policy.observes_market:
        base_rec = recorded
    else:
        base_rec = run_realtime(
            feed, community.assets, policy_named(own_ems), ("net_kwh", "generation_kwh")
        )
    base_net = base_rec.series["net_kwh"]
    baseline = _baseline(community, base_net)
    baseline["generation_kwh"] = base_rec.series["generation_kwh"]
    t_base = time.perf_counter()
    period_cost = None
    if isinstance(mechanism, PeriodSettled):
        # bill sharing, coordinated allocation rules: priced after the fact on metered energy
        period_cost = mechanism.settle_period(
            recorded.series["net_kwh"], community.retail_price, community.feed_in_price
        )
    network_out = None
    if grid_ctx is not None:
        network_out = grid_ctx.after_run(
            community,
            recorded,
            baseline,
            {"p2p": recorded.curtailed_kwh, "baseline": base_rec.curtailed_kwh},
        )
    summary, participants = summarise(
        community,
        recorded,
        baseline,
        period_cost,
        None if network_out is None else network_out.charges(),
    )
    _forecast_block(summary, participants, community, recorded, resolved.forecast, forecaster)
    _settlement_block(summary, recorded, resolved)
    if network_out is not None:
        network_out.amend(summary, participants)
        if resolved.network is not None and resolved.network.compare_unconstrained:
            network_out.compare(
                summary, _unconstrained(scenario, resolved, market, forecast, community)
            )
    if isinstance(mechanism, CoreChecked):
        energy = recorded.series["cost"].sum(axis=0) if period_cost is None else period_cost
        net = recorded.series["net_kwh"]
        check = mechanism.core_check(net, community.retail_price, community.feed_in_price, energy)
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
    from peergrid.engine.ledger import public_keys_hex
    from peergrid.engine.publish import publish as publish_run

    t_pub = time.perf_counter()
    publication = None
    if publish:
        publication = publish_run(recorded.series, resolved.privacy, grid.dt_h)
        summary["privacy"] = publication.summary()
    publish_s = time.perf_counter() - t_pub
    ledger_s = None

    participants["public_key"] = public_keys_hex(resolved.seed, n)
    if journal is not None:
        net_slot = loss_slot = None
        if network_out is not None:
            net_slot, loss_slot = network_out.network_charge_slot, network_out.loss_charge_slot
        adjustment = None
        if period_cost is not None:
            adjustment = participants["period_adjustment"].to_numpy()
        info = journal.finish(net_slot, loss_slot, adjustment, resolved.market.mechanism)
        ledger_s = info.pop("seconds")
        scale = 10.0 ** info.pop("minor_exponent")
        ledger_bill = np.asarray(info.pop("bill_minor"), dtype=np.float64) / scale
        participants["ledger_bill"] = ledger_bill
        info["max_bill_difference"] = float(
            np.max(np.abs(ledger_bill - participants["bill"].to_numpy()), initial=0.0)
        )
        summary["ledger"] = info
    t_done = time.perf_counter()
    if forecaster is None:
        twin_bill = participants["bill"].to_numpy()
    if twin_bill is not None:
        bill = participants["bill"].to_numpy()
        participants["perfect_foresight_bill"] = twin_bill
        participants["forecast_error_cost"] = bill - twin_bill
        summary["cost"]["perfect_foresight_total"] = round(float(twin_bill.sum()), 2)
        summary["cost"]["forecast_error_cost"] = round(float((bill - twin_bill).sum()), 2)
        baseline_total = float(participants["baseline_bill"].sum())
        summary["cost"]["perfect_foresight_savings"] = round(
            baseline_total - float(twin_bill.sum()), 2
        )
        summary["cost"]["perfect_foresight_savings_pct"] = round(
            float(kpi.saving_pct(np.array([baseline_total]), np.array([twin_bill.sum()]))[0]), 3
        )
    runtime = time.perf_counter() - t0
    summary["runtime_s"] = round(runtime, 3)
    summary["ems"] = run_ems
    summary["baseline_ems"] = own_ems
    state = recorded.final_state
    diagnostics = state.diagnostics if isinstance(state, ReportsDiagnostics) else None
    if diagnostics:
        summary["ems_info"] = {k: round(float(v), 6) for k, v in diagnostics.items()}
    summary["timing_s"] = {
        "build": round(t_fc - t0, 3),
        "forecast_setup": round(t_twin - t_fc, 3),
        "slots": round(t_run - t_build, 3),
        "baseline": round(t_base - t_run, 3),
        "summarise": round(t_done - t_base, 3),
        "twin": round(twin_s, 3),
    }
    summary["timing_s"]["publish"] = round(publish_s, 3)
    if ledger_s is not None:
        summary["timing_s"]["ledger"] = ledger_s
    if twin_slots is not None:
        summary["timing_s"]["twin_slots"] = twin_slots
    if forecaster is not None:
        summary["timing_s"]["forecaster"] = {
            k: round(float(v), 3) for k, v in forecaster.timings().items()
        }
    return SimulationResult(
        scenario=resolved,
        community=community,
        recorded=recorded,
        baseline=baseline,
        summary=summary,
        participants=participants,
        extra={
            **({} if network_out is None else {"network": network_out}),
            **({"ledger_path": Path(ledger_path)} if isinstance(ledger_path, str | Path) else {}),
            **({} if publication is None else {"publication": publication}),
        },
    )


def _forecast_block(
    summary: dict[str, Any],
    participants: Any,
    community: Community,
    recorded: Recorded,
    spec: ForecastSpec,
    forecaster: Forecaster | None,
) -> None:
    """summary["forecast"] and per-participant forecast errors: MAE, RMSE, bias of the
    forecasts the bids used, and their skill against persistence at the same gates."""
    from peergrid.forecast.metrics import error_metrics, skill

    actual_d = community.profiles.base_demand_kwh
    actual_g = community.profiles.pv_kwh
    fc_d = recorded.series["forecast_demand_kwh"]
    fc_g = recorded.series["forecast_generation_kwh"]
    reference = None if forecaster is None else _persistence_at_gates(community, recorded)
    block: dict[str, Any] = {
        "method": spec.method,
        "params": dict(spec.params),
        "history_days": spec.history_days,
    }
    skills: dict[str, float | None] = {}
    for label, fc, actual, ref in (
        ("demand", fc_d, actual_d, None if reference is None else reference[0]),
        ("generation", fc_g, actual_g, None if reference is None else reference[1]),
    ):
        e = error_metrics(fc, actual)
        block[f"{label}_mae_kwh"] = round(e.mean_mae_kwh, 6)
        block[f"{label}_rmse_kwh"] = round(e.mean_rmse_kwh, 6)
        block[f"{label}_bias_kwh"] = round(float(np.mean(e.bias_kwh)), 6)
        block[f"community_{label}_rmse_kwh"] = round(e.community_rmse_kwh, 6)
        participants[f"forecast_{label}_mae_kwh"] = e.mae_kwh
        participants[f"forecast_{label}_rmse_kwh"] = e.rmse_kwh
        participants[f"forecast_{label}_bias_kwh"] = e.bias_kwh
        if ref is None:
            skills[label] = 1.0
            participants[f"forecast_{label}_skill"] = 1.0
        else:
            s = skill(e, error_metrics(ref, actual))
            skills[label] = _round_or_none(s.pooled)
            block[f"community_{label}_skill"] = _round_or_none(s.community)
            participants[f"forecast_{label}_skill"] = s.per_participant
    block["skill_vs_persistence"] = skills
    summary["forecast"] = block


def _round_or_none(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def _persistence_at_gates(community: Community, recorded: Recorded) -> tuple[Any, Any]:
    """What persistence would have forecast for every slot at the same gates."""
    from peergrid.forecast.registry import make_forecaster

    data = community.forecast_data
    assert data is not None
    gates = gate_schedule(
        community.grid,
        parse_gate_closure(
            str(community.scenario.market.gate_closure), community.grid.slot_minutes
        ),
    )
    ref = make_forecaster("persistence", None, data, seed=community.scenario.seed)
    feed = ForecastFeed.build(
        community.profiles, community.retail_price, community.feed_in_price,
        community.grid.dt_h, ref,
    )  # fmt: skip
    del recorded
    return expected_at_gates(feed, gates)


def _settlement_block(summary: dict[str, Any], recorded: Recorded, resolved: Scenario) -> None:
    """summary["settlement"]: the rules, the deviations and where the money went."""
    s, m = recorded.series, recorded.market
    dev = s["deviation_kwh"]
    rules = resolved.settlement
    block: dict[str, Any] = {
        "deviation_rule": rules.deviation_rule,
        "gate_closure": resolved.market.gate_closure,
        "deviation_short_kwh": round(float(np.maximum(-dev, 0.0).sum()), 4),
        "deviation_long_kwh": round(float(np.maximum(dev, 0.0).sum()), 4),
        "deviation_cost": round(float(s["deviation_cost"].sum()), 4),
        "participants_paid": round(float(s["cost"].sum()), 4),
        "retailer_revenue": round(float(np.nansum(m["retailer_revenue"])), 4),
        "operator_revenue": round(float(np.nansum(m["operator_revenue"])), 4),
    }
    if rules.deviation_rule == "penalty":
        block["penalty_per_kwh"] = rules.penalty_per_kwh
    summary["settlement"] = block


def _unconstrained(
    scenario: Scenario,
    resolved: Scenario,
    market: str | None,
    forecast: str | None,
    community: Community,
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
    return simulate(
        other, market=market, forecast=forecast, community=same, twin=False, publish=False
    ).summary


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
