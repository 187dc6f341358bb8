"""The live market: the lifecycle's `clear` and `settle` at wall-clock times (docs/live.md).

A live community's market is a sequence of steps that its calendar fixes in advance: at each gate
closure the slots the gate closes are cleared from the orders the participants signed; after a
slot is delivered and its meters have had `settle_after_s` to report, it is settled on the
readings. `Calendar.steps` lists the steps in the order they happen; `close_gate` and
`settle_delivered` run one step through the run's journal (`engine.ledger.RunLedger`, the same
one a simulation writes); `replay` runs a whole recorded market through the same steps in one
process. The server (`server.clock`) runs step after step as the wall clock reaches them, each
inside one database transaction, so a step is done exactly once or not at all.

A gate whose clearing misses its deadline (the start of the first slot it closes, and at least
half a slot after the gate) falls back to the retail tariff: every order is logged, nothing
fills, every participant's commitment goes to the retailer, and the ledger's CLEARING names
`RETAIL_FALLBACK` as the mechanism that cleared it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peergrid.engine.ledger import RunLedger
from peergrid.engine.lifecycle import Cleared, clear, settle_metered
from peergrid.engine.state_codec import decode_state, encode_state
from peergrid.ledger import encoding as enc
from peergrid.ledger.log import Ledger, Snapshot
from peergrid.ledger.postings import Accrual
from peergrid.ledger.store import LedgerStore, MemoryStore
from peergrid.markets.base import ClearingResult, MarketContext, Mechanism, OrderBook
from peergrid.markets.gate import (
    GateSchedule,
    default_gate_closure,
    gate_schedule,
    parse_gate_closure,
)
from peergrid.markets.registry import get_mechanism
from peergrid.scenario.schema import Scenario
from peergrid.scenario.tariff import feed_in_price_per_kwh, retail_price_per_kwh
from peergrid.settlement.deviation import DeviationRule
from peergrid.settlement.slot import Commitment, SlotSettlement, commit
from peergrid.timegrid import SlotGrid, make_grid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: The mechanism a CLEARING names when its gate fell back to the retail tariff.
RETAIL_FALLBACK = "retail-fallback"

#: Step kinds, in the order they run when due at the same instant.
GATE, SETTLE = 0, 1


@dataclass(frozen=True, eq=False)
class Calendar:
    """When a live market's steps happen.

    Every slot index is a live slot: slot s of the market is slot `first_slot` + s of its
    scenario's period.

    Attributes:
        start_unix_s: wall-clock start of slot 0 (UTC) [s since the epoch].
        slot_seconds: wall-clock length of a slot [s]; the slot's energy length is `dt_h`
            (equal in real operation, shorter in an accelerated demonstration).
        dt_h: the energy length of a slot [h].
        n_slots: the slots of the market.
        gates: the gate schedule on the live slots (`markets.gate.gate_schedule` of the
            scenario's grid, shifted by `first_slot`).
        settle_after_s: how long after a slot ends its meters have to report before it is
            settled [s].
        first_slot: the slot of the scenario's period that is the market's slot 0.
    """

    start_unix_s: float
    slot_seconds: float
    dt_h: float
    n_slots: int
    gates: GateSchedule
    settle_after_s: float
    first_slot: int = 0

    def slot_start_s(self, slot: int) -> float:
        """Wall-clock start of `slot` [s since the epoch]."""
        return self.start_unix_s + slot * self.slot_seconds

    def gate_time_s(self, gate: int) -> float:
        """When gate number `gate` closes [s since the epoch]."""
        return self.slot_start_s(int(self.gates.gate_slot[gate]))

    def clear_deadline_s(self, gate: int) -> float:
        """When gate `gate`'s clearing must be done: the start of the first slot it closes,
        and at least half a slot after the gate [s since the epoch]."""
        return max(
            self.slot_start_s(int(self.gates.first_slot[gate])),
            self.gate_time_s(gate) + 0.5 * self.slot_seconds,
        )

    def settle_time_s(self, slot: int) -> float:
        """When `slot` is settled [s since the epoch]."""
        return self.slot_start_s(slot + 1) + self.settle_after_s

    def gate_of_slot(self, slot: int) -> int:
        """The gate that closes `slot`."""
        return int(np.searchsorted(self.gates.stop_slot, slot, side="right"))

    def steps(self) -> tuple[FloatArray, NDArray[np.int8], IntArray]:
        """Every step in order: (when [s since the epoch], kind `GATE` / `SETTLE`, the gate's
        number or the slot). Ties run gates first, then in number order. Computed once (the
        clock and the API ask often); the arrays are shared, not to be written."""
        return self._steps

    @functools.cached_property
    def _steps(self) -> tuple[FloatArray, NDArray[np.int8], IntArray]:
        n_g = self.gates.n_gates
        times = np.concatenate(
            [
                self.start_unix_s + self.gates.gate_slot * self.slot_seconds,
                self.start_unix_s
                + (np.arange(self.n_slots) + 1) * self.slot_seconds
                + self.settle_after_s,
            ]
        )
        kinds = np.concatenate(
            [np.full(n_g, GATE, np.int8), np.full(self.n_slots, SETTLE, np.int8)]
        )
        index = np.concatenate([np.arange(n_g), np.arange(self.n_slots)]).astype(np.int64)
        order = np.lexsort((index, kinds, times))
        out = times[order], kinds[order], index[order]
        for a in out:
            a.flags.writeable = False
        return out

    def as_utc(self, t_s: float) -> dt.datetime:
        """An instant as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(t_s, tz=dt.UTC)


@dataclass(frozen=True, eq=False)
class LiveMarket:
    """What clears and settles a live community, besides its calendar.

    Attributes:
        mechanism: the configured mechanism; name: its registry name (the ledger records it).
        n_participants: the community's participants (their indices are the ledger's).
        retail_price, feed_in_price: the tariff of every live slot, from the market's slot 0 to
            the end of its scenario's period [currency/kWh].
        dt_h: slot length [h].
        deviation_rule, penalty_per_kwh: the scenario's settlement of deviations.
    """

    mechanism: Mechanism
    name: str
    n_participants: int
    retail_price: FloatArray
    feed_in_price: FloatArray
    dt_h: float
    deviation_rule: DeviationRule = "retail"
    penalty_per_kwh: float = 0.0

    def context(self, slot: int) -> MarketContext:
        return MarketContext(
            retail_price=float(self.retail_price[slot]),
            feed_in_price=float(self.feed_in_price[slot]),
            dt_h=self.dt_h,
            slot=slot,
        )


@dataclass(frozen=True)
class Submission:
    """A participant's signed orders of one gate: the canonical message
    (`ledger.encoding.order_message`) and its Ed25519 signature."""

    participant: int
    message: bytes
    signature: bytes


def books_of(
    messages: Sequence[enc.OrderMessage], first_slot: int, n_slots: int
) -> list[OrderBook]:
    """The book of each slot a gate closes, from the decoded messages in ledger order: each
    slot's orders participant by participant in the order given, each participant's in the order
    it signed them — the order `ledger verify` rebuilds the book in."""
    books = []
    for k in range(n_slots):
        s = first_slot + k
        parts, sides, qs, prices = [], [], [], []
        for m in messages:
            sel = m.slot == s
            if np.count_nonzero(sel):
                parts.append(np.full(int(sel.sum()), m.participant, dtype=np.int64))
                sides.append(m.side[sel].astype(np.int8))
                qs.append(m.quantity_kwh[sel])
                prices.append(m.limit_price[sel])
        if not parts:
            books.append(OrderBook.empty())
            continue
        who = np.concatenate(parts)
        books.append(
            OrderBook(
                id=np.arange(who.size, dtype=np.int64),
                participant=who,
                side=np.concatenate(sides),
                quantity_kwh=np.concatenate(qs),
                price=np.concatenate(prices),
            )
        )
    return books


def close_gate(
    journal: RunLedger,
    market: LiveMarket,
    calendar: Calendar,
    gate: int,
    submissions: Sequence[Submission],
    fallback: str | None = None,
) -> list[Cleared]:
    """Gate `gate` closes: the ledger verifies and logs every submission (in participant
    order), the mechanism clears each slot the gate closes — or, with `fallback` (why), nothing
    fills and everything goes to the retailer — and the operator signs the tree head. Returns
    each slot's clearing."""
    g = calendar.gates
    gate_slot, first = int(g.gate_slot[gate]), int(g.first_slot[gate])
    n = int(g.stop_slot[gate]) - first
    subs = sorted(submissions, key=lambda x: x.participant)
    refused = set(
        journal.signed(
            gate_slot,
            [x.participant for x in subs],
            [x.message for x in subs],
            [x.signature for x in subs],
        )
    )
    accepted = [enc.read_order_message(x.message) for x in subs if x.participant not in refused]
    out = []
    for k, book in enumerate(books_of(accepted, first, n)):
        slot = first + k
        cl = clear(
            None if fallback else market.mechanism,
            book,
            market.context(slot),
            market.n_participants,
        )
        journal.cleared(slot, cl, RETAIL_FALLBACK if fallback else None)
        out.append(cl)
    journal.head(gate_slot)
    return out


def commitment_of(
    market: LiveMarket, slot: int, book: OrderBook, result: ClearingResult
) -> Commitment:
    """A slot's commitments from its book and clearing (`settlement.slot.commit`), as they
    were at its gate (the server keeps the book and result, not the derived arrays)."""
    ctx = market.context(slot)
    return commit(book, result, market.n_participants, ctx.retail_price, ctx.feed_in_price)


def settle_delivered(
    journal: RunLedger,
    market: LiveMarket,
    slot: int,
    commitment: Commitment,
    metered_net_kwh: FloatArray,
) -> SlotSettlement:
    """A delivered slot settles on its meter readings (export positive) [kWh], (P,), by the
    scenario's deviation rule; the ledger gets its METER and SETTLEMENT entries and a signed
    head."""
    ctx = market.context(slot)
    st = settle_metered(
        commitment,
        metered_net_kwh,
        ctx.retail_price,
        ctx.feed_in_price,
        market.deviation_rule,
        market.penalty_per_kwh,
    )
    journal.delivered(slot, metered_net_kwh, st, ctx.retail_price, ctx.feed_in_price)
    return st


# --- a scenario as a live market ------------------------------------------------------------------


def scenario_grid(scenario: Scenario) -> SlotGrid:
    """The scenario's slot grid: slot s of a live market is its slot `first_slot` + s."""
    t = scenario.time
    return make_grid(t.start, t.days, t.slot_minutes, t.timezone)


def window_problem(n_scenario_slots: int, first_slot: int, n_slots: int) -> str | None:
    """Why a live market cannot run `n_slots` slots from slot `first_slot` of a scenario period
    of `n_scenario_slots` slots, or None if it can."""
    if not 0 <= first_slot < n_scenario_slots:
        return (
            f"the scenario's period has slots 0 to {n_scenario_slots - 1}; a live market cannot "
            f"start at its slot {first_slot}"
        )
    left = n_scenario_slots - first_slot
    if not 1 <= n_slots <= left:
        return (
            f"the scenario's period has {n_scenario_slots} slots; from its slot {first_slot} a "
            f"live market runs 1 to {left} of them, not {n_slots}"
        )
    return None


def calendar_for(
    scenario: Scenario,
    start_unix_s: float,
    slot_seconds: float,
    n_slots: int,
    settle_after_s: float,
    *,
    first_slot: int = 0,
) -> Calendar:
    """The live calendar of `scenario`: its gate rule on its slot grid, for the `n_slots` slots
    from its slot `first_slot` on, live slot 0 (the scenario's `first_slot`) starting at
    `start_unix_s` on the wall clock. The gates are the scenario's, in live slots: a gate that
    closes slots on both sides of the window's edge closes the ones inside.

    Raises:
        ValueError: the window does not lie in the scenario's period (`window_problem`).
    """
    grid = scenario_grid(scenario)
    problem = window_problem(grid.n_slots, first_slot, n_slots)
    if problem is not None:
        raise ValueError(problem)
    rule = scenario.market.gate_closure or default_gate_closure(scenario.time.slot_minutes)
    full = gate_schedule(grid, parse_gate_closure(rule, scenario.time.slot_minutes))
    stop = first_slot + n_slots
    keep = (full.stop_slot > first_slot) & (full.first_slot < stop)
    gates = GateSchedule(
        full.gate_slot[keep] - first_slot,
        np.maximum(full.first_slot[keep], first_slot) - first_slot,
        np.minimum(full.stop_slot[keep], stop) - first_slot,
        full.gate_of_slot[first_slot:stop] - first_slot,
        full.closure,
    )
    return Calendar(
        start_unix_s, slot_seconds, grid.dt_h, n_slots, gates, settle_after_s, first_slot
    )


def market_for(scenario: Scenario, n_participants: int, *, first_slot: int = 0) -> LiveMarket:
    """The live market of `scenario` for `n_participants`: its mechanism, its tariff from its
    slot `first_slot` on (live slot s priced as the scenario's slot `first_slot` + s) and its
    deviation rule."""
    grid = scenario_grid(scenario)
    m = scenario.market
    return LiveMarket(
        mechanism=get_mechanism(m.mechanism, m.params),
        name=m.mechanism,
        n_participants=n_participants,
        retail_price=retail_price_per_kwh(scenario.tariff, grid)[first_slot:],
        feed_in_price=feed_in_price_per_kwh(scenario.tariff, grid)[first_slot:],
        dt_h=grid.dt_h,
        deviation_rule=scenario.settlement.deviation_rule,
        penalty_per_kwh=scenario.settlement.penalty_per_kwh,
    )


def day_starts_of(scenario: Scenario, n_slots: int, *, first_slot: int = 0) -> IntArray:
    """The live slots the daily charge is posted on: the first slot of every local day among
    the `n_slots` slots from the scenario's slot `first_slot` on — live slot 0 always, however
    late in its day the market starts."""
    day = scenario_grid(scenario).local_day[first_slot : first_slot + n_slots]
    first = np.ones(day.shape[0], dtype=bool)
    first[1:] = day[1:] != day[:-1]
    return np.flatnonzero(first).astype(np.int64)


# --- the journal between steps ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class JournalState:
    """Where the live journal stands between two steps: the ledger's snapshot and the running
    totals of its postings (`JournalState.encode` is what the server stores)."""

    snapshot: Snapshot
    accrual: dict[str, NDArray[np.generic]]
    rejected: int

    def encode(self) -> bytes:
        """Bytes to store (`decode` reads them back exactly)."""
        s = self.snapshot
        return encode_state(
            {
                "size": s.size,
                "frontier": [h.hex() for h in s.frontier],
                "n_blocks": s.n_blocks,
                "last_head": s.last_head.hex(),
                "bytes_written": s.bytes_written,
                "accrual": dict(self.accrual),
                "rejected": self.rejected,
            }
        )

    @staticmethod
    def decode(data: bytes) -> JournalState:
        """The state `encode` wrote."""
        v = decode_state(data)
        snap = Snapshot(
            size=int(v["size"]),
            frontier=tuple(bytes.fromhex(h) for h in v["frontier"]),
            n_blocks=int(v["n_blocks"]),
            last_head=bytes.fromhex(v["last_head"]),
            bytes_written=int(v["bytes_written"]),
        )
        return JournalState(snap, dict(v["accrual"]), int(v["rejected"]))


def journal_state(journal: RunLedger) -> JournalState:
    """The journal's state after a step (its last action signed a head)."""
    return JournalState(journal.ledger.snapshot(), journal.accrual.state(), journal.rejected)


def resume_journal(
    store: LedgerStore,
    genesis: enc.Genesis,
    operator_key: Any,
    state: JournalState,
    market: LiveMarket,
    daily_charge: float,
    day_starts: IntArray,
) -> RunLedger:
    """The live journal at `state`, appending to `store`."""
    ledger = Ledger.resume(
        store, operator_key=operator_key, genesis=genesis, snapshot=state.snapshot
    )
    accrual = Accrual.from_state(market.n_participants, genesis.minor_exponent, state.accrual)
    return RunLedger(
        ledger,
        [],
        market.name,
        market.deviation_rule,
        daily_charge,
        day_starts,
        accrual=accrual,
        rejected=state.rejected,
    )


# --- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Recording:
    """A live market's inputs, as its database recorded them.

    Attributes:
        submissions: each gate's accepted submissions, by gate number.
        fallback: why a gate fell back to the retail tariff, by gate number (absent: cleared).
        metered_net_kwh: each settled slot's meter values as settled (estimates included),
            by slot [kWh].
        n_steps: how many of the calendar's steps were done.
    """

    submissions: dict[int, list[Submission]]
    fallback: dict[int, str]
    metered_net_kwh: dict[int, FloatArray]
    n_steps: int


@dataclass(frozen=True, eq=False)
class Replayed:
    """What a replay computed: the ledger root and size, each slot's commitments and cost, and
    every participant's bill in the ledger [minor units]."""

    root: bytes
    size: int
    committed_kwh: dict[int, FloatArray]
    cost: dict[int, FloatArray]
    bill_minor: list[int]


def replay(
    market: LiveMarket,
    calendar: Calendar,
    genesis: enc.Genesis,
    operator_key: Any,
    recording: Recording,
    daily_charge: float,
    day_starts: IntArray,
) -> Replayed:
    """Run a recorded live market through the same steps in one process, in memory."""
    ledger = Ledger.create(MemoryStore(), operator_key=operator_key, genesis=genesis)
    ledger.sign_head(-1)
    journal = RunLedger(ledger, [], market.name, market.deviation_rule, daily_charge, day_starts)
    _, kinds, index = calendar.steps()
    cleared: dict[int, Cleared] = {}
    committed: dict[int, FloatArray] = {}
    cost: dict[int, FloatArray] = {}
    for kind, i in zip(
        kinds[: recording.n_steps].tolist(), index[: recording.n_steps].tolist(), strict=True
    ):
        if kind == GATE:
            first = int(calendar.gates.first_slot[i])
            subs = recording.submissions.get(i, [])
            for k, cl in enumerate(
                close_gate(journal, market, calendar, i, subs, recording.fallback.get(i))
            ):
                cleared[first + k] = cl
                committed[first + k] = cl.commitment.committed_kwh
        else:
            cl = cleared.pop(i)
            st = settle_delivered(journal, market, i, cl.commitment, recording.metered_net_kwh[i])
            cost[i] = st.cost
    return Replayed(
        root=ledger.root(),
        size=ledger.size,
        committed_kwh=committed,
        cost=cost,
        bill_minor=journal.accrual.participant_totals(),
    )
