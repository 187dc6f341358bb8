"""The market lifecycle of a slot: bid → clear → deliver → settle (docs/lifecycle.md).

This is the engine's contract. Each phase is a pure function of typed inputs and explicit,
frozen state; the simulator's loop (`engine/loop.py`) calls them in time order, a live server
calls them at wall-clock times with what the agents and meters reported.

- `bid(policy, runtime, gate, assets)`: at a gate closure, the EMS re-anchors its plan to the
  measured state, rolls its policy through the slots the gate closes on the forecasts issued
  at the gate (inside the slot's network limits) and turns each planned net position into
  orders.
- `clear(mechanism, book, ctx, n)`: the mechanism clears one slot's book; each participant's
  commitment follows.
- `deliver(runtime, slot, actual, committed, ...)`: the actual demand, PV, weather and trips
  are revealed; the home follows its plan with storage absorbing the forecast error
  (`ems/deliver.py`); the meter reads the result.
- `settle(commitment, delivered, ...)`: the commitment at the market's prices, the deviation by
  the scenario's rule, the rest with the retailer (`settlement/slot.py`).
- `step_realtime(policy, state, inputs, forecast, assets)`: a home without a market (the
  baseline) runs its policy on the slot's actual inputs.

`EmsRuntime` is what a participant's EMS carries between phases: the policy's own state rolled
through every planned slot, the plans committed but not yet delivered, and the measured
physical state. It is a frozen value that `engine/state_codec.py` writes to bytes and reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from peergrid.assets.params import AssetParams, BoolArray, FloatArray, IntArray
from peergrid.ems.base import (
    Dispatch,
    EmsPolicy,
    EmsState,
    Forecast,
    PhysicalState,
    SlotInputs,
    physical_of,
)
from peergrid.ems.common import Constants
from peergrid.ems.deliver import Delivered, PlannedSlot, follow_plan
from peergrid.ems.envelope import step_within_limits
from peergrid.markets.base import ClearingResult, MarketContext, Mechanism, OrderBook
from peergrid.settlement.deviation import DeviationRule
from peergrid.settlement.slot import (
    Commitment,
    SlotSettlement,
    commit,
    orders_from_net,
    settle_slot,
)

S = TypeVar("S", bound=EmsState)


@dataclass(frozen=True, eq=False)
class EmsRuntime(Generic[S]):
    """The EMS side of the lifecycle for every participant.

    Attributes:
        plan: the policy's state rolled through slot `planned_until` − 1.
        planned_until: one past the last slot planned (and committed).
        pending: the plans of slots [next_delivery, planned_until), oldest first.
        physical: the measured state at the start of slot `next_delivery`.
        next_delivery: the next slot to deliver.
        trip_estimate_kwh: the energy each EV's next trip is expected to take (the last
            observed trip; 0 before any), (P,) [kWh].
        drift: the sum of the re-anchoring shifts applied to the plan so far
            (`reanchored`), per state.
        pending_drift: `drift` when each pending plan was made, aligned with `pending`: a
            pending plan's states are its recorded ones + (drift − its drift).
    """

    plan: S
    planned_until: int
    pending: tuple[PlannedSlot, ...]
    physical: PhysicalState
    next_delivery: int
    trip_estimate_kwh: FloatArray
    drift: PhysicalState
    pending_drift: tuple[PhysicalState, ...]


def init_runtime(policy: EmsPolicy[S], assets: AssetParams, first_slot: int = 0) -> EmsRuntime[S]:
    """The runtime before the first gate: the policy's initial state, nothing planned."""
    state = policy.init_state(assets)
    return EmsRuntime(
        plan=state,
        planned_until=first_slot,
        pending=(),
        physical=physical_of(state),
        next_delivery=first_slot,
        trip_estimate_kwh=np.zeros(assets.n_participants),
        drift=_zero_state(assets.n_participants),
        pending_drift=(),
    )


def _zero_state(n: int) -> PhysicalState:
    return PhysicalState(np.zeros(n), np.zeros(n), np.zeros(n))


@dataclass(frozen=True, eq=False)
class GateInputs:
    """What is known at one gate closure, for the slots it closes and the look-ahead.

    Attributes:
        gate_slot: the slot at whose start the gate closes.
        first_slot: the first slot it closes (= the runtime's `planned_until`).
        n_slots: how many consecutive slots it closes.
        dt_h: slot length [h].
        forecast: rows for slots first_slot, first_slot + 1, ... (at least `n_slots`; the rest
            is the look-ahead), as known at the gate: demand, PV and temperature from the
            forecaster, the declared EV schedule, the tariff, the network limits.
        horizon_slots: the rows of look-ahead each planned slot's policy step sees.
        ev_returns: the EV comes home in the row's slot (a trip is booked there), (rows, P).
        ev_trip_kwh: the trip energies to plan with, (rows, P) [kWh]; None: each return
            takes the runtime's `trip_estimate_kwh`.
    """

    gate_slot: int
    first_slot: int
    n_slots: int
    dt_h: float
    forecast: Forecast
    horizon_slots: int
    ev_returns: BoolArray
    ev_trip_kwh: FloatArray | None = None


@dataclass(frozen=True, eq=False)
class Bids:
    """What a gate closure produced: for each slot it closes, the book and the plan.

    Attributes:
        first_slot: the first slot closed.
        books: the orders of each slot closed.
        plans: the plan of each slot closed.
    """

    first_slot: int
    books: tuple[OrderBook, ...]
    plans: tuple[PlannedSlot, ...]


def _window(f: Forecast, k: int, n: int) -> Forecast:
    """Rows [k, k + n) of a forecast, as views (the forecast itself when that is all of it)."""
    end = k + n
    if k == 0 and end >= f.retail_price.shape[0]:
        return f
    return Forecast(
        base_demand_kwh=f.base_demand_kwh[k:end],
        pv_kwh=f.pv_kwh[k:end],
        temp_out_c=f.temp_out_c[k:end],
        ev_plugged=f.ev_plugged[k:end],
        retail_price=f.retail_price[k:end],
        feed_in_price=f.feed_in_price[k:end],
        export_limit_kwh=None if f.export_limit_kwh is None else f.export_limit_kwh[k:end],
        import_limit_kwh=None if f.import_limit_kwh is None else f.import_limit_kwh[k:end],
    )


_FIELDS = ("battery_soc_kwh", "ev_soc_kwh", "indoor_temp_c")


def reanchored(runtime: EmsRuntime[S], clip: Constants | None = None) -> EmsRuntime[S]:
    """The runtime with its plan re-anchored to the measured state.

    The difference δ between what was measured at the start of `next_delivery` and what the
    plan assumed there is new information: the plan's future states move by δ (the plan state at
    its end, clipped to the assets' limits when `clip` is given; the pending plans' states through
    `drift`), so the next gate plans from where the assets will really be and a later gate sees
    only the error that arose since — a deficit is corrected once, not once per pending slot.
    Exactly the measured state when nothing is pending; unchanged when delivery went exactly as
    planned."""
    if not runtime.pending:
        return _with(runtime, plan=runtime.plan.with_physical(runtime.physical))
    measured = runtime.physical
    start, made_at = runtime.pending[0].start, runtime.pending_drift[0]
    unshifted = made_at is runtime.drift
    if (
        unshifted
        and measured.battery_soc_kwh is start.battery_soc_kwh
        and measured.ev_soc_kwh is start.ev_soc_kwh
        and measured.indoor_temp_c is start.indoor_temp_c
    ):
        return runtime  # delivered exactly as planned (the same arrays)
    offsets = []
    for name in _FIELDS:
        assumed = getattr(start, name)
        if not unshifted:
            assumed = assumed + (getattr(runtime.drift, name) - getattr(made_at, name))
        offsets.append(getattr(measured, name) - assumed)
    if not any(np.count_nonzero(d) for d in offsets):
        return runtime
    plan = runtime.plan
    bat = plan.battery_soc_kwh + offsets[0]
    car = plan.ev_soc_kwh + offsets[1]
    temp = plan.indoor_temp_c + offsets[2]
    if clip is not None:
        bat = np.minimum(
            np.maximum(bat, clip.bat_soc_min_kwh), np.maximum(clip.bat_soc_max_kwh, 0.0)
        )
        car = np.minimum(np.maximum(car, 0.0), clip.ev_capacity_kwh)
    drift = PhysicalState(
        *(getattr(runtime.drift, name) + d for name, d in zip(_FIELDS, offsets, strict=True))
    )
    return _with(
        runtime, plan=runtime.plan.with_physical(PhysicalState(bat, car, temp)), drift=drift
    )


def _with(
    runtime: EmsRuntime[S],
    *,
    plan: S | None = None,
    drift: PhysicalState | None = None,
) -> EmsRuntime[S]:
    """The runtime with another plan state and drift."""
    return EmsRuntime(
        plan=runtime.plan if plan is None else plan,
        planned_until=runtime.planned_until,
        pending=runtime.pending,
        physical=runtime.physical,
        next_delivery=runtime.next_delivery,
        trip_estimate_kwh=runtime.trip_estimate_kwh,
        drift=runtime.drift if drift is None else drift,
        pending_drift=runtime.pending_drift,
    )


def bid(
    policy: EmsPolicy[S],
    runtime: EmsRuntime[S],
    gate: GateInputs,
    assets: AssetParams,
    *,
    clip: Constants | None = None,
) -> tuple[EmsRuntime[S], Bids]:
    """Plan and bid the slots a gate closes (module docstring).

    Raises:
        ValueError: the gate does not close the next unplanned slot.
    """
    if gate.first_slot != runtime.planned_until:
        raise ValueError(
            f"the gate at slot {gate.gate_slot} closes slot {gate.first_slot}, but the next "
            f"slot to plan is {runtime.planned_until}"
        )
    f = gate.forecast
    runtime = reanchored(runtime, clip)
    state = runtime.plan
    zeros = np.zeros(assets.n_participants)
    books: list[OrderBook] = []
    plans: list[PlannedSlot] = []
    for k in range(gate.n_slots):
        t = gate.first_slot + k
        if gate.ev_trip_kwh is not None:
            trip = gate.ev_trip_kwh[k]
        elif np.count_nonzero(gate.ev_returns[k]):
            trip = np.where(gate.ev_returns[k], runtime.trip_estimate_kwh, 0.0)
        else:
            trip = zeros
        inputs = SlotInputs(
            t=t,
            dt_h=gate.dt_h,
            base_demand_kwh=f.base_demand_kwh[k],
            pv_kwh=f.pv_kwh[k],
            temp_out_c=float(f.temp_out_c[k]),
            ev_plugged=f.ev_plugged[k],
            ev_trip_kwh=trip,
            retail_price=float(f.retail_price[k]),
            feed_in_price=float(f.feed_in_price[k]),
        )
        exp = None if f.export_limit_kwh is None else f.export_limit_kwh[k]
        imp = None if f.import_limit_kwh is None else f.import_limit_kwh[k]
        window = _window(f, k, gate.horizon_slots)
        new, d = step_within_limits(policy, state, inputs, window, assets, exp, imp)
        start = physical_of(state) if not plans else plans[-1].end
        plans.append(
            PlannedSlot(
                dispatch=d,
                start=start,
                end=physical_of(new),
                base_demand_kwh=inputs.base_demand_kwh,
                pv_kwh=inputs.pv_kwh,
                temp_out_c=inputs.temp_out_c,
                ev_trip_kwh=trip,
            )
        )
        books.append(orders_from_net(d.net_kwh, d.buy_limit_price, d.sell_limit_price))
        state = new
    out = EmsRuntime(
        plan=state,
        planned_until=gate.first_slot + gate.n_slots,
        pending=runtime.pending + tuple(plans),
        physical=runtime.physical,
        next_delivery=runtime.next_delivery,
        trip_estimate_kwh=runtime.trip_estimate_kwh,
        drift=runtime.drift,
        pending_drift=runtime.pending_drift + (runtime.drift,) * len(plans),
    )
    return out, Bids(first_slot=gate.first_slot, books=tuple(books), plans=tuple(plans))


@dataclass(frozen=True, eq=False)
class Cleared:
    """One slot cleared: the book, the mechanism's result and everyone's commitment."""

    book: OrderBook
    result: ClearingResult
    commitment: Commitment


def clear(
    mechanism: Mechanism | None,
    book: OrderBook,
    ctx: MarketContext,
    n_participants: int,
    position_kwh: FloatArray | None = None,
) -> Cleared:
    """Clear one slot's book. `mechanism=None` (no market): nothing fills, every commitment
    goes to the retailer. `position_kwh`: the planned net positions behind the book (a
    position too small for an order is committed as it is, `settlement.slot.commit`)."""
    if mechanism is None or book.n_orders == 0:
        result = ClearingResult.nothing(book.n_orders)
    else:
        result = mechanism.clear(book, ctx)
    c = commit(book, result, n_participants, ctx.retail_price, ctx.feed_in_price, position_kwh)
    return Cleared(book, result, c)


def deliver(
    runtime: EmsRuntime[S],
    slot: int,
    actual: SlotInputs,
    committed_net_kwh: FloatArray,
    *,
    c: Constants,
    ev_slots_to_departure: IntArray,
    export_limit_kwh: FloatArray | None = None,
    import_limit_kwh: FloatArray | None = None,
) -> tuple[EmsRuntime[S], Delivered]:
    """Deliver `slot` following its plan (`ems.deliver.follow_plan`).

    Raises:
        ValueError: `slot` is not the next slot to deliver, or it was never planned.
    """
    if slot != runtime.next_delivery or not runtime.pending:
        raise ValueError(
            f"cannot deliver slot {slot}: the next slot to deliver is {runtime.next_delivery} "
            f"and slots before {runtime.planned_until} are planned"
        )
    plan = runtime.pending[0]
    out = follow_plan(
        plan,
        runtime.physical,
        actual,
        committed_net_kwh,
        c=c,
        ev_slots_to_departure=ev_slots_to_departure,
        export_limit_kwh=export_limit_kwh,
        import_limit_kwh=import_limit_kwh,
    )
    trips = actual.ev_trip_kwh
    estimate = runtime.trip_estimate_kwh
    if np.count_nonzero(trips):
        estimate = np.where(trips > 0.0, trips, estimate)
    new = EmsRuntime(
        plan=runtime.plan,
        planned_until=runtime.planned_until,
        pending=runtime.pending[1:],
        physical=out.end,
        next_delivery=slot + 1,
        trip_estimate_kwh=estimate,
        drift=runtime.drift,
        pending_drift=runtime.pending_drift[1:],
    )
    return new, out


def settle(
    commitment: Commitment,
    delivered: Delivered,
    retail_price: float,
    feed_in_price: float,
    rule: DeviationRule = "retail",
    penalty_per_kwh: float = 0.0,
) -> SlotSettlement:
    """Settle one delivered slot (`settlement.slot.settle_slot`)."""
    return settle_metered(
        commitment, delivered.dispatch.net_kwh, retail_price, feed_in_price, rule, penalty_per_kwh
    )


def settle_metered(
    commitment: Commitment,
    metered_net_kwh: FloatArray,
    retail_price: float,
    feed_in_price: float,
    rule: DeviationRule = "retail",
    penalty_per_kwh: float = 0.0,
) -> SlotSettlement:
    """Settle one slot on what the meters read (export positive) [kWh], (P,): the live
    platform's settle, with readings from the smart meters instead of the simulated home."""
    return settle_slot(
        commitment, metered_net_kwh, retail_price, feed_in_price, rule, penalty_per_kwh
    )


def step_realtime(
    policy: EmsPolicy[S],
    state: S,
    inputs: SlotInputs,
    forecast: Forecast,
    assets: AssetParams,
    export_limit_kwh: FloatArray | None = None,
    import_limit_kwh: FloatArray | None = None,
) -> tuple[S, Dispatch]:
    """A home without a market: its policy decides the slot on the actual inputs, with the
    forecast for the slots ahead, inside the network limits."""
    return step_within_limits(
        policy, state, inputs, forecast, assets, export_limit_kwh, import_limit_kwh
    )
