"""The households an agent runs: scenario participants, built with the simulator's machinery.

`build_homes` resolves a scenario (`engine.simulate.resolve_full`: groups drawn, parameters
explicit), keeps the chosen participants and builds their community, forecaster and forecast
feed as a simulation does (`engine.community.build_community`,
`engine.simulate.forecaster_for`, `engine.feed.ForecastFeed`), with the scenario's EMS policy
for all of them at once: one agent process runs many homes, vectorised. A scenario whose
participants have meter data (`[data] meter_file`) replays them: those homes' demand and PV are
the file's.

`bid_gate` and `deliver_slot` are the lifecycle's `bid` and `deliver` (`engine.lifecycle`) fed
from the homes' data the way the simulator's loop feeds them (`engine.loop.run_lifecycle`),
with one difference: a live agent bids *before* its gate closes, during the slot before it, so
its forecaster issues at the last slot boundary it has seen (`issue_slot`), not at the gate.
Their slots are the scenario's: an agent adds the market's `first_slot` to a live slot
(`agent.run`).

Not modelled here: the scenario's `[network]` (the live server's operating envelopes are the
network operator's, `PUT /v1/envelopes`) and a mechanism's imposed EMS (a home runs its own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from peergrid.assets.params import FloatArray, IntArray
from peergrid.ems.base import EmsPolicy
from peergrid.ems.common import Constants, build_constants
from peergrid.ems.deliver import Delivered
from peergrid.ems.driver import energy_forecast_slots, horizon_slots
from peergrid.ems.registry import make_policy
from peergrid.engine.community import Community, build_community
from peergrid.engine.feed import ForecastFeed
from peergrid.engine.lifecycle import Bids, EmsRuntime, GateInputs, bid, deliver, init_runtime
from peergrid.engine.simulate import forecaster_for, resolve_full
from peergrid.errors import InputError
from peergrid.forecast.base import PreparesIssues
from peergrid.markets.gate import GateSchedule
from peergrid.rng import child_rng
from peergrid.scenario.schema import Scenario

IntT = TypeVar("IntT", int, IntArray)


@dataclass(frozen=True, eq=False)
class Homes:
    """The households one agent runs, as the simulator's arrays (P = the homes).

    Attributes:
        scenario: the resolved scenario with the chosen participants only.
        community: their community (assets, profiles, tariff on the scenario's slot grid).
        feed: what their EMS knows at a gate (the scenario's forecaster) and the actuals.
        policy: the scenario's EMS policy for all of them.
        constants: the policy's per-run arrays (`ems.common.build_constants`).
        horizon_slots: forecast rows each planned slot's policy step sees [slots].
        energy_slots: rows of demand, PV and temperature forecast it reads [slots].
    """

    scenario: Scenario
    community: Community
    feed: ForecastFeed
    policy: EmsPolicy[Any]
    constants: Constants
    horizon_slots: int
    energy_slots: int

    @property
    def names(self) -> list[str]:
        """The scenario names of the homes, in home order."""
        return self.community.names

    @property
    def n_homes(self) -> int:
        return self.community.n_participants

    @property
    def dt_h(self) -> float:
        """Slot length [h]."""
        return self.feed.dt_h

    @property
    def n_slots(self) -> int:
        """Slots of the scenario's period (a live market runs a window of them)."""
        return self.feed.n_slots

    @property
    def pv_kwp(self) -> FloatArray:
        """Peak PV of each home [kWp] (0 without)."""
        return np.array([p.pv.kwp if p.pv is not None else 0.0 for p in self.scenario.participants])


def pick_participants(scenario: Scenario, picks: Sequence[int | str]) -> list[int]:
    """The participant index of each pick: an index (an int, or a string of digits) or a name.

    Raises:
        InputError: an index out of range, an unknown name, or a participant picked twice.
    """
    names = [p.name for p in scenario.participants]
    out: list[int] = []
    for pick in picks:
        text = str(pick).strip()
        if isinstance(pick, int) or text.isdigit():
            i = int(text)
            if not 0 <= i < len(names):
                raise InputError(
                    f"the scenario {scenario.name!r} has participants 0 to {len(names) - 1}, "
                    f"not {i}",
                    source="--profile",
                )
        elif text in names:
            i = names.index(text)
        else:
            shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            raise InputError(
                f"no participant {text!r} in the scenario {scenario.name!r} ({shown})",
                source="--profile",
            )
        if i in out:
            raise InputError(f"participant {names[i]!r} is picked twice", source="--profile")
        out.append(i)
    if not out:
        raise InputError("pick at least one participant", source="--profile")
    return out


def build_homes(scenario: Scenario, picks: Sequence[int | str]) -> Homes:
    """The chosen participants of `scenario` as homes (module docstring).

    Raises:
        InputError: a bad pick, or a problem with the scenario or its meter data.
    """
    resolved = resolve_full(scenario)
    keep = pick_participants(resolved, picks)
    chosen = resolved.model_copy(
        update={"participants": [resolved.participants[i] for i in keep], "data": None}
    )
    community = build_community(chosen, scenario.base_dir)
    if resolved.data is not None:
        community = _with_meter_data(community, resolved, scenario.base_dir)
    forecaster, community = forecaster_for(community, chosen.forecast, chosen.seed)
    n = community.n_participants
    ems = chosen.ems
    policy = make_policy(ems.policy, ems.params, n, child_rng(chosen.seed, "ems"))
    dt_h = community.grid.dt_h
    feed = ForecastFeed.build(
        community.profiles, community.retail_price, community.feed_in_price, dt_h, forecaster
    )
    return Homes(
        scenario=community.scenario,
        community=community,
        feed=feed,
        policy=policy,
        constants=build_constants(community.assets, dt_h, 0.0),
        horizon_slots=horizon_slots(policy, dt_h),
        energy_slots=energy_forecast_slots(policy, dt_h),
    )


def _with_meter_data(community: Community, resolved: Scenario, base_dir: Path | None) -> Community:
    """The community with the demand and PV of the homes the meter file names (read for the
    scenario's whole list of participants, so a file of the whole community is fine)."""
    from peergrid.data.meter import read_meter_data

    data = resolved.data
    assert data is not None
    if base_dir is None:
        raise InputError("data.meter_file: a built-in scenario cannot name a meter file")
    meter = read_meter_data(
        base_dir / data.meter_file,
        community.grid,
        [p.name for p in resolved.participants],
        data.unit,
        data.fill,
    )
    p = community.profiles
    demand, pv = p.base_demand_kwh.copy(), p.pv_kwh.copy()
    replayed = [name for name in community.names if name in meter.names]
    for name in replayed:
        j, k = community.names.index(name), meter.names.index(name)
        demand[:, j] = meter.demand_kwh[:, k]
        pv[:, j] = meter.generation_kwh[:, k]
    return dataclasses.replace(
        community,
        scenario=community.scenario.model_copy(update={"data": data}),
        profiles=dataclasses.replace(p, base_demand_kwh=demand, pv_kwh=pv),
        meter_names=replayed,
    )


def issue_slot(gate_slot: IntT) -> IntT:
    """The slot at whose start a forecast for a gate is issued: the one before the gate, since
    the agent bids during that slot and its meter has measured only the slots before it."""
    return gate_slot - 1


def prepare(homes: Homes, gates: GateSchedule, first_gate: int = 0, *, first_slot: int = 0) -> None:
    """Let the forecaster compute up front what the agent's gates from `first_gate` on will ask
    of it (`forecast.base.PreparesIssues`; the answers are the same without). `gates` count a
    live market's slots, its slot 0 being the scenario's slot `first_slot`."""
    forecaster = homes.feed.forecaster
    if not isinstance(forecaster, PreparesIssues) or first_gate >= gates.n_gates:
        return
    issued = issue_slot(gates.gate_slot[first_gate:] + first_slot)
    stop = gates.stop_slot[first_gate:] + first_slot
    reach = int(np.max(stop - issued)) + homes.energy_slots - 1
    forecaster.prepare(issued, reach)


def start_runtime(homes: Homes, first_slot: int) -> EmsRuntime[Any]:
    """The homes' EMS before their first gate, which closes `first_slot`."""
    return init_runtime(homes.policy, homes.community.assets, first_slot)


def bid_gate(
    homes: Homes, runtime: EmsRuntime[Any], gate_slot: int, first_slot: int, n_slots: int
) -> tuple[EmsRuntime[Any], Bids]:
    """Plan and bid the slots [first_slot, first_slot + n_slots) of the gate at `gate_slot`
    (`engine.lifecycle.bid`, fed as `engine.loop.run_lifecycle` feeds it; the forecast issued
    at `issue_slot`)."""
    feed = homes.feed
    rows = min(feed.n_slots - first_slot, n_slots + homes.horizon_slots - 1)
    window = feed.window(issue_slot(gate_slot), first_slot, rows, n_slots + homes.energy_slots - 1)
    gate = GateInputs(
        gate_slot=gate_slot,
        first_slot=first_slot,
        n_slots=n_slots,
        dt_h=homes.dt_h,
        forecast=window,
        horizon_slots=homes.horizon_slots,
        ev_returns=feed.returns[first_slot : first_slot + rows],
        ev_trip_kwh=feed.trips(first_slot, rows),
    )
    return bid(homes.policy, runtime, gate, homes.community.assets, clip=homes.constants)


def deliver_slot(
    homes: Homes, runtime: EmsRuntime[Any], slot: int, committed_kwh: FloatArray
) -> tuple[EmsRuntime[Any], Delivered]:
    """Deliver `slot` with each home's commitment (export positive), (P,) [kWh]
    (`engine.lifecycle.deliver`); the result's `dispatch.net_kwh` is what the meters read."""
    feed = homes.feed
    exp, imp = feed.limits(slot)
    return deliver(
        runtime,
        slot,
        feed.actual(slot),
        committed_kwh,
        c=homes.constants,
        ev_slots_to_departure=feed.departure[slot],
        export_limit_kwh=exp,
        import_limit_kwh=imp,
    )
