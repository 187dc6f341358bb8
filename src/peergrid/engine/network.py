"""The network side of a run: the feeder the community sits on, what the operator shows the
market, and the power flow of every slot after the run.

The physical coupling is one-way within a slot: participants' net positions (after the EMS and
any envelope) set the bus injections; the power flow of all slots runs once, batched, after the
slot loop (`flow_of`). The operator's rules that act during the run (envelopes, permissioning,
network constraints of the coordinated market) use the linearised feeder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peergrid.engine.loop import POOL
from peergrid.markets.base import NetworkView
from peergrid.network.feeder import Feeder, FloatArray, IntArray
from peergrid.network.feeders import load_network
from peergrid.network.kpi import feeder_kpis
from peergrid.network.linear import LinearFeeder, linearise, loss_sensitivity
from peergrid.network.mapping import assign_buses
from peergrid.network.powerflow import FlowResult, PgmPowerFlow
from peergrid.scenario.schema import NetworkSpec, Scenario


@dataclass(frozen=True, eq=False)
class NetworkSetup:
    """A run's feeder, mapping and operator models (built once per run)."""

    spec: NetworkSpec
    net: Any  # the pandapower network as loaded (participants' loads are added on save)
    feeder: Feeder
    lin: LinearFeeder
    flow: PgmPowerFlow
    bus_of: IntArray  # (P,)
    tan_phi: float  # reactive power per kW of import [kvar/kW]

    @property
    def n_bus(self) -> int:
        return self.feeder.n_bus


def load_setup(spec: NetworkSpec, base_dir: Path | None) -> tuple[Any, Feeder]:
    """The pandapower network and feeder a scenario's `[network]` names."""
    if spec.file is not None:
        path = Path(spec.file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return load_network(file=path)
    return load_network(feeder=spec.feeder)


def _placement(
    scenario: Scenario, spec: NetworkSpec, base_dir: Path | None
) -> tuple[Any, Feeder, list[str], IntArray]:
    """The network, its feeder, the participants' names and the bus of each."""
    net, feeder = load_setup(spec, base_dir)
    names = [p.name for p in scenario.participants]
    return net, feeder, names, assign_buses(feeder, names, spec.buses, scenario.seed)


def resolve_buses(scenario: Scenario, base_dir: Path | None) -> Scenario:
    """The scenario with every participant's bus written out (pandapower bus indices), so that
    scenario.resolved.toml repeats the placement without the seed."""
    spec = scenario.network
    if spec is None:
        return scenario
    _, feeder, names, bus_of = _placement(scenario, spec, base_dir)
    buses = {n: int(feeder.bus_ids[b]) for n, b in zip(names, bus_of, strict=True)}
    update: dict[str, Any] = {"buses": buses}
    if spec.file is not None and base_dir is not None and not Path(spec.file).is_absolute():
        update["file"] = str((base_dir / spec.file).resolve())
    return scenario.model_copy(update={"network": spec.model_copy(update=update)})


def build_setup(scenario: Scenario, base_dir: Path | None) -> NetworkSetup | None:
    """The run's network models, or None when the scenario has no `[network]`."""
    spec = scenario.network
    if spec is None:
        return None
    net, feeder, _, bus_of = _placement(scenario, spec, base_dir)
    return NetworkSetup(
        spec=spec,
        net=net,
        feeder=feeder,
        lin=linearise(feeder),
        flow=PgmPowerFlow(feeder, net),
        bus_of=bus_of,
        tan_phi=float(np.tan(np.arccos(spec.load_power_factor))),
    )


def bus_injections(
    setup: NetworkSetup, net_kwh: FloatArray, dt_h: float
) -> tuple[FloatArray, FloatArray]:
    """Participants' net positions (T, P) [kWh/slot] → bus injections p, q (T, N) [kW, kvar].

    Exports at unity power factor, imports at the scenario's load power factor (lagging)."""
    n_t = net_kwh.shape[0]
    p_part = net_kwh / dt_h
    q_part = -setup.tan_phi * np.maximum(-p_part, 0.0)
    p = np.zeros((n_t, setup.n_bus))
    q = np.zeros((n_t, setup.n_bus))
    for k, bus in enumerate(np.unique(setup.bus_of)):
        members = np.flatnonzero(setup.bus_of == bus)
        p[:, bus] = p_part[:, members].sum(axis=1)
        q[:, bus] = q_part[:, members].sum(axis=1)
        del k
    return p, q


def flow_of(setup: NetworkSetup, net_kwh: FloatArray, dt_h: float) -> FlowResult:
    """AC power flow of every slot for the given net positions (the fast batched path)."""
    p, q = bus_injections(setup, net_kwh, dt_h)
    return setup.flow.run(p, q)


def market_view(setup: NetworkSetup, pair_fee_per_kwh: FloatArray | None) -> NetworkView:
    """What the operator shows the market: linear sensitivities of the LV buses and of the
    rated branches, the no-order state and the limits (the same in every slot)."""
    f = setup.feeder
    spec = setup.spec
    mon_bus = f.lv_buses
    mon_branch = f.monitored_branches
    n_p = setup.bus_of.size
    return NetworkView(
        bus_of=setup.bus_of,
        pair_fee_per_kwh=np.zeros((n_p, n_p)) if pair_fee_per_kwh is None else pair_fee_per_kwh,
        dv_dp_pu_per_kw=setup.lin.dv_dp_pu_per_kw[mon_bus],
        ptdf=setup.lin.ptdf[mon_branch],
        v_base_pu=setup.lin.v0_pu[mon_bus],
        flow_base_kw=np.zeros(mon_branch.size),
        rating_kw=f.rating_kva[mon_branch] * spec.max_loading_pct / 100.0,
        v_min_pu=spec.v_min_pu,
        v_max_pu=spec.v_max_pu,
    )


def network_kpis(setup: NetworkSetup, flow: FlowResult, dt_h: float) -> dict[str, Any]:
    """Voltage, loading and loss KPIs of one run over the LV buses and rated branches: one
    definition and one tolerance for summary.json and the report (`network.kpi`)."""
    spec = setup.spec
    return feeder_kpis(
        setup.feeder,
        flow,
        dt_h,
        v_min_pu=spec.v_min_pu,
        v_max_pu=spec.v_max_pu,
        max_loading_pct=spec.max_loading_pct,
    )


@dataclass(frozen=True, eq=False)
class NetworkOutput:
    """What the network did in a run and what the operator charged for it."""

    setup: NetworkSetup
    flows: dict[str, FlowResult]  # "p2p", "baseline"
    dt_h: float
    curtailed_kwh: dict[str, FloatArray]  # (T, P) per case
    envelope_kind: str
    export_limit_kwh: FloatArray | None
    import_limit_kwh: FloatArray | None
    network_charge: FloatArray  # (P,) [currency]
    loss_kwh: FloatArray  # (P,) losses allocated to each participant [kWh]
    loss_p2p_kwh: float
    loss_grid_kwh: float
    loss_charge: FloatArray  # (P,) [currency]
    import_excess_kwh: float
    timing_s: float
    envelopes_s: float = 0.0
    network_charge_slot: FloatArray | None = None  # (T, P) [currency]
    loss_charge_slot: FloatArray | None = None  # (T, P) [currency]

    def charges(self) -> FloatArray:
        """What each participant pays the network operator for its trades [currency], (P,)."""
        return self.network_charge + self.loss_charge

    def kpis(self, case: str) -> dict[str, Any]:
        out = network_kpis(self.setup, self.flows[case], self.dt_h)
        out["curtailed_kwh"] = round(float(self.curtailed_kwh[case].sum()), 4)
        return out

    def amend(self, summary: dict[str, Any], participants: pd.DataFrame) -> None:
        """Add the network block to summary.json and per-participant columns."""
        f = self.setup.feeder
        spec = self.setup.spec
        block: dict[str, Any] = {
            "feeder": f.name,
            "buses": f.n_bus,
            "lv_buses": int(f.lv_buses.size),
            "branches": int(f.monitored_branches.size),
            "limits": {
                "v_min_pu": spec.v_min_pu,
                "v_max_pu": spec.v_max_pu,
                "max_loading_pct": spec.max_loading_pct,
            },
            "envelopes": self.envelope_kind,
            **self.kpis("p2p"),
            "baseline": self.kpis("baseline"),
            "network_charges": round(float(self.network_charge.sum()), 4),
            "loss_charges": round(float(self.loss_charge.sum()), 4),
            "losses_allocated_p2p_kwh": round(self.loss_p2p_kwh, 4),
            "losses_allocated_grid_kwh": round(self.loss_grid_kwh, 4),
            "import_above_envelope_kwh": round(self.import_excess_kwh, 4),
            "power_flow_s": round(self.timing_s, 3),
            "envelopes_s": round(self.envelopes_s, 3),
        }
        summary["network"] = block
        summary["energy"]["curtailed_kwh"] = block["curtailed_kwh"]
        summary["cost"]["network_charges"] = block["network_charges"]
        summary["cost"]["loss_charges"] = block["loss_charges"]
        participants["bus"] = f.bus_ids[self.setup.bus_of]
        participants["curtailed_kwh"] = self.curtailed_kwh["p2p"].sum(axis=0)
        participants["network_charge"] = self.network_charge
        participants["allocated_loss_kwh"] = self.loss_kwh
        participants["loss_charge"] = self.loss_charge

    def compare(self, summary: dict[str, Any], unconstrained: dict[str, Any]) -> None:
        """Record what P2P without the operator's network rules did, for comparison."""
        net = unconstrained["network"]
        summary["network"]["unconstrained"] = {
            key: net[key]
            for key in (
                "min_voltage_pu",
                "max_voltage_pu",
                "voltage_violation_slots",
                "overload_slots",
                "max_loading_pct",
                "losses_kwh",
                "curtailed_kwh",
            )
        } | {
            "total": unconstrained["cost"]["total"],
            "savings": unconstrained["cost"]["savings"],
            "savings_pct": unconstrained["cost"]["savings_pct"],
        }


def capabilities(
    assets: Any, base_demand_kwh: FloatArray, pv_kwh: FloatArray, ev_plugged: Any, dt_h: float
) -> tuple[FloatArray, FloatArray]:
    """What each connection could export / import in each slot at most [kW], (T, P), from the
    base demand and PV the operator expects (the forecasts issued at each slot's gate
    closure) and the assets' ratings: the operator's input for the envelopes."""
    a = assets
    ev_kw = a.ev.power_kw[None, :] * ev_plugged
    export_kw = pv_kwh / dt_h + a.battery.power_kw[None, :] + ev_kw * a.ev.v2h[None, :]
    jobs = a.jobs
    job_kw = np.zeros(a.n_participants)
    if jobs.participant.size:
        np.maximum.at(job_kw, jobs.participant, jobs.p_kw)
    import_kw = (
        base_demand_kwh / dt_h + (a.battery.power_kw + a.thermal.p_max_kw + job_kw)[None, :] + ev_kw
    )
    return export_kw, import_kw


@dataclass(frozen=True, eq=False)
class RunNetwork:
    """The operator's rules for one run, prepared before the slot loop from what is known at
    each slot's gate closure."""

    setup: NetworkSetup
    spec: NetworkSpec
    view: NetworkView
    envelope_kind: str
    export_limit_kwh: FloatArray | None  # (T, P)
    import_limit_kwh: FloatArray | None
    pair_fee_per_kwh: FloatArray | None  # (P, P)
    dt_h: float
    envelopes_s: float = 0.0

    @staticmethod
    def prepare(
        setup: NetworkSetup,
        community: Any,
        expected_demand_kwh: FloatArray,
        expected_pv_kwh: FloatArray,
    ) -> RunNetwork:
        """The limits, fees and market view of a run; the envelopes are computed from the
        base demand and PV expected at each slot's gate closure, (T, P) [kWh]."""
        spec = community.scenario.network
        assert spec is not None
        setup = NetworkSetup(**{**setup.__dict__, "spec": spec})
        dt_h = community.grid.dt_h
        n_t, n_p = community.grid.n_slots, community.n_participants
        exp_kw = np.full((n_t, n_p), np.inf)
        imp_kw = np.full((n_t, n_p), np.inf)
        kinds = []
        if spec.export_limit_kw is not None or spec.import_limit_kw is not None:
            kinds.append("static")
            if spec.export_limit_kw is not None:
                exp_kw = np.minimum(exp_kw, spec.export_limit_kw)
            if spec.import_limit_kw is not None:
                imp_kw = np.minimum(imp_kw, spec.import_limit_kw)
        t_env = time.perf_counter()
        if spec.envelopes == "dynamic":
            from peergrid.network.envelope import operating_envelopes

            kinds.append("dynamic")
            cap_exp, cap_imp = capabilities(
                community.assets,
                expected_demand_kwh,
                expected_pv_kwh,
                community.profiles.ev_plugged,
                dt_h,
            )
            env = operating_envelopes(
                setup.feeder,
                setup.lin,
                setup.flow,
                setup.bus_of,
                np.minimum(cap_exp, exp_kw),
                np.minimum(cap_imp, imp_kw),
                v_min_pu=spec.v_min_pu,
                v_max_pu=spec.v_max_pu,
                max_loading_pct=spec.max_loading_pct,
                load_power_factor=spec.load_power_factor,
            )
            exp_kw = np.minimum(exp_kw, env.export_kw)
            imp_kw = np.minimum(imp_kw, env.import_kw)
        envelopes_s = time.perf_counter() - t_env
        limited = bool(kinds)
        fees = pair_fees(setup, spec) if spec.charges.kind != "none" else None
        view = market_view(setup, fees)
        if not spec.permissioning:
            view = NetworkView(
                **{
                    **view.__dict__,
                    "v_min_pu": 0.0,
                    "v_max_pu": np.inf,
                    "rating_kw": np.full(view.rating_kw.size, np.inf),
                }
            )
        return RunNetwork(
            setup=setup,
            spec=spec,
            view=view,
            envelope_kind="+".join(kinds) if kinds else "none",
            export_limit_kwh=exp_kw * dt_h if limited else None,
            import_limit_kwh=imp_kw * dt_h if limited else None,
            pair_fee_per_kwh=fees,
            dt_h=dt_h,
            envelopes_s=envelopes_s,
        )

    def constraints(self) -> Any:
        """The feeder's constraints for a scheduler that plans with them (the coordinated
        market), or None when the scenario switches them off. The per-participant limits
        reach the scheduler as per-slot inputs, in the forecast window of each gate."""
        if not self.spec.coordinated_constraints:
            return None
        from peergrid.coordination.network import network_constraints

        f = self.setup.feeder
        return network_constraints(
            f,
            self.setup.bus_of,
            v_min_pu=self.spec.v_min_pu,
            v_max_pu=self.spec.v_max_pu,
            max_loading_pct=self.spec.max_loading_pct,
            load_tan_phi=self.setup.tan_phi,
        )

    def after_run(
        self,
        community: Any,
        recorded: Any,
        baseline: dict[str, Any],
        curtailed_kwh: dict[str, FloatArray],
    ) -> NetworkOutput:
        """Power flow of every slot of both runs, network and loss charges per slot."""
        t0 = time.perf_counter()
        dt_h = self.dt_h
        p2p_net = recorded.series["net_kwh"]
        flows = {
            "p2p": flow_of(self.setup, p2p_net, dt_h),
            "baseline": flow_of(self.setup, baseline["net_kwh"], dt_h),
        }
        n_t, n_p = p2p_net.shape
        tr = recorded.trades.arrays()
        s = recorded.series
        loss_kwh = np.zeros(n_p)
        loss_slot = np.zeros((n_t, n_p))
        loss_p2p = loss_grid = 0.0
        pair_total = None
        if self.spec.loss_allocation:
            no_load = flow_of(self.setup, np.zeros((1, n_p)), dt_h).losses_kw[0]
            actual = np.maximum(flows["p2p"].losses_kw - no_load, 0.0) * dt_h
            lsf = loss_sensitivity(
                self.setup.feeder, flows["p2p"].p_from_kw, flows["p2p"].v_pu, self.setup.lin
            )
            p2p_loss, grid_loss, pair_total = allocate_run_losses(
                lsf,
                self.setup.bus_of,
                tr,
                s["p2p_sold_kwh"],
                s["p2p_bought_kwh"],
                p2p_net,
                actual,
            )
            loss_kwh = p2p_loss.sum(axis=0) + grid_loss.sum(axis=0)
            # the energy lost to P2P trades is bought by the operator at the retail price
            loss_slot = p2p_loss * community.retail_price[:, None]
            loss_p2p = float(p2p_loss.sum())
            loss_grid = float(grid_loss.sum())
        charge_slot = np.zeros((n_t, n_p))
        if self.pair_fee_per_kwh is not None:
            charge_slot = network_charges_of_slots(
                tr,
                s["p2p_sold_kwh"],
                s["p2p_bought_kwh"],
                self.pair_fee_per_kwh,
                self.spec.charges.payer,
            )
        excess = 0.0
        if self.import_limit_kwh is not None:
            excess = float(np.maximum(-p2p_net - self.import_limit_kwh, 0.0).sum())
        del pair_total
        return NetworkOutput(
            setup=self.setup,
            flows=flows,
            dt_h=dt_h,
            curtailed_kwh=curtailed_kwh,
            envelope_kind=self.envelope_kind,
            export_limit_kwh=self.export_limit_kwh,
            import_limit_kwh=self.import_limit_kwh,
            network_charge=charge_slot.sum(axis=0),
            loss_kwh=loss_kwh,
            loss_p2p_kwh=loss_p2p,
            loss_grid_kwh=loss_grid,
            loss_charge=loss_slot.sum(axis=0),
            import_excess_kwh=excess,
            timing_s=time.perf_counter() - t0,
            envelopes_s=self.envelopes_s,
            network_charge_slot=charge_slot,
            loss_charge_slot=loss_slot,
        )


#: Slots per block when building per-slot (seller, buyer) matrices: 256 x 100 x 100 floats.
PAIR_BLOCK_SLOTS = 256


def pair_kwh_of_run(
    trades: dict[str, Any], sold_kwh: FloatArray, bought_kwh: FloatArray, t0: int, t1: int
) -> FloatArray:
    """Energy each participant sold to each other participant in slots [t0, t1), (t, P, P).

    Bilateral trades as recorded; in pool slots every buyer is taken to buy from every seller
    pro rata (q_ij = sold_i · bought_j / traded), as `network.charges.pair_volumes_kwh` does
    for one book."""
    n_p = sold_kwh.shape[1]
    q = np.zeros((t1 - t0, n_p, n_p))
    slot, buyer, seller = trades["slot"], trades["buyer"], trades["seller"]
    rows = (slot >= t0) & (slot < t1)
    pool_rows = rows & ((buyer == POOL) | (seller == POOL))
    pair = rows & ~pool_rows
    np.add.at(q, (slot[pair] - t0, seller[pair], buyer[pair]), trades["quantity_kwh"][pair])
    pool = np.unique(slot[pool_rows]) - t0
    if pool.size:
        s = sold_kwh[t0:t1][pool]
        b = bought_kwh[t0:t1][pool]
        tot = s.sum(axis=1)
        safe = np.where(tot > 0, tot, 1.0)
        q[pool] += s[:, :, None] * b[:, None, :] / safe[:, None, None]
    return q


def pair_totals_of_run(
    trades: dict[str, Any], sold_kwh: FloatArray, bought_kwh: FloatArray
) -> FloatArray:
    """Energy each participant sold to each other participant over the run [kWh], (P, P)."""
    n_t, n_p = sold_kwh.shape
    total = np.zeros((n_p, n_p))
    for t0 in range(0, n_t, PAIR_BLOCK_SLOTS):
        t1 = min(n_t, t0 + PAIR_BLOCK_SLOTS)
        total += pair_kwh_of_run(trades, sold_kwh, bought_kwh, t0, t1).sum(axis=0)
    return total


def charges_of(pair_total_kwh: FloatArray, fee_per_kwh: FloatArray, payer: str) -> FloatArray:
    """Each participant's network usage charges over a run [currency], (P,): the charges are
    linear in the traded volumes, so the period's (seller, buyer) totals are charged once."""
    from peergrid.network.charges import network_charges

    charge, _ = network_charges(pair_total_kwh, fee_per_kwh, payer)  # type: ignore[arg-type]
    return np.asarray(charge, dtype=np.float64)


def network_charges_of_slots(
    trades: dict[str, Any],
    sold_kwh: FloatArray,
    bought_kwh: FloatArray,
    fee_per_kwh: FloatArray,
    payer: str,
) -> FloatArray:
    """Each participant's network usage charges in every slot [currency], (T, P)
    (`network.charges.network_charges`, slot by slot, in blocks of slots)."""
    n_t, n_p = sold_kwh.shape
    out = np.zeros((n_t, n_p))
    for t0 in range(0, n_t, PAIR_BLOCK_SLOTS):
        t1 = min(n_t, t0 + PAIR_BLOCK_SLOTS)
        charge = pair_kwh_of_run(trades, sold_kwh, bought_kwh, t0, t1) * fee_per_kwh[None]
        as_seller = charge.sum(axis=2)
        as_buyer = charge.sum(axis=1)
        if payer == "seller":
            out[t0:t1] = as_seller
        elif payer == "buyer":
            out[t0:t1] = as_buyer
        else:
            out[t0:t1] = 0.5 * (as_seller + as_buyer)
    return out


def network_charges_of_run(
    trades: dict[str, Any],
    sold_kwh: FloatArray,
    bought_kwh: FloatArray,
    fee_per_kwh: FloatArray,
    payer: str,
) -> FloatArray:
    """Each participant's network usage charges over a run [currency], (P,)."""
    return charges_of(pair_totals_of_run(trades, sold_kwh, bought_kwh), fee_per_kwh, payer)


def allocate_run_losses(
    lsf_bus: FloatArray,
    bus_of: IntArray,
    trades: dict[str, Any],
    sold_kwh: FloatArray,
    bought_kwh: FloatArray,
    net_kwh: FloatArray,
    actual_kwh: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Loss allocation by bilateral exchange coefficients (`network.losses.allocate_losses`)
    over a run, in blocks of slots. Returns the P2P and grid parts (T, P) [kWh] and, since the
    blocks' (seller, buyer) matrices are built anyway, the run's pair totals (P, P) [kWh]."""
    from peergrid.network.losses import allocate_losses

    n_t, n_p = net_kwh.shape
    p2p = np.zeros((n_t, n_p))
    grid = np.zeros((n_t, n_p))
    total = np.zeros((n_p, n_p))
    for t0 in range(0, n_t, PAIR_BLOCK_SLOTS):
        t1 = min(n_t, t0 + PAIR_BLOCK_SLOTS)
        q = pair_kwh_of_run(trades, sold_kwh, bought_kwh, t0, t1)
        total += q.sum(axis=0)
        alloc = allocate_losses(lsf_bus[t0:t1], bus_of, q, net_kwh[t0:t1], actual_kwh[t0:t1])
        p2p[t0:t1] = alloc.p2p_kwh
        grid[t0:t1] = alloc.grid_kwh
    return p2p, grid, total


def pair_fees(setup: NetworkSetup, spec: NetworkSpec) -> FloatArray:
    """Network usage fee per kWh for every (seller, buyer) pair [currency/kWh], (P, P)."""
    from peergrid.network.charges import NetworkTariff, electrical_distance, feeder_zones
    from peergrid.network.charges import pair_fees_per_kwh as fees_of

    c = spec.charges
    tariff = NetworkTariff(
        kind=c.kind,
        fee_per_kwh=c.fee_per_kwh,
        fee_per_kwh_per_ohm=c.fee_per_kwh_per_ohm,
        intra_zone_fee_per_kwh=c.intra_zone_fee_per_kwh,
        payer=c.payer,
    )
    distance = electrical_distance(setup.feeder, setup.bus_of)
    zones = feeder_zones(setup.feeder, setup.bus_of)
    return np.asarray(fees_of(tariff, distance, zones), dtype=np.float64)
