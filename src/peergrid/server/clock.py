"""The market clock: the live market's steps (`engine.live`) as the wall clock reaches them.

Each step runs in one database transaction holding the clock's lock (`db.writing`): it reads
where the clock stands (`market_state`), does the step through the journal resumed from its
stored state, writes the ledger's new blocks and heads, the step's results and the clock's new
state, and commits. A server killed at any moment has done a step completely or not at all; the
next server to start (or the other one, when two run) does it again from the same state. Two
servers never do a step twice: the second to take the lock finds the clock past it.

A gate's clearing runs against its deadline (`Calendar.clear_deadline_s`): a server that
reaches a gate after its deadline (it was down), a mechanism that fails, or a clearing that
ends after the deadline, falls back to the retail tariff and says why (`gates.reason`, the
ledger's CLEARING names `engine.live.RETAIL_FALLBACK`).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from peergrid.engine.ledger import RunLedger
from peergrid.engine.lifecycle import Cleared
from peergrid.engine.live import (
    GATE,
    JournalState,
    Submission,
    close_gate,
    commitment_of,
    journal_state,
    resume_journal,
    settle_delivered,
)
from peergrid.engine.state_codec import decode_state, encode_state
from peergrid.ledger.store import MemoryStore
from peergrid.privacy.disclosure import REASON_LABELS, DisclosureRule, disclose
from peergrid.server.db import writing
from peergrid.server.market import MarketSetup, write_ledger
from peergrid.server.metering import ESTIMATED, metered_net
from peergrid.server.schema import gates, market_state, meter_intervals, orders, slots

FloatArray = NDArray[np.float64]
EventFn = Callable[[dict[str, Any]], None]


def f64_bytes(a: FloatArray) -> bytes:
    """A (P,) array as stored: float64, little-endian."""
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def f64_array(b: bytes) -> FloatArray:
    return np.frombuffer(bytes(b), dtype="<f8").astype(np.float64)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _utc(t_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_s, tz=dt.UTC)


@dataclass(frozen=True)
class StepDone:
    """A step this server did: its number, kind and what it published."""

    step: int
    event: dict[str, Any]


class Clock:
    """The clock of one server process (module docstring).

    `now` is the wall clock [s since the epoch] (tests pass their own); `on_event` hears each
    step's public event after its transaction commits (the WebSocket streams)."""

    def __init__(
        self,
        engine: Engine,
        setup: MarketSetup,
        *,
        now: Callable[[], float] = time.time,
        on_event: EventFn | None = None,
    ) -> None:
        self.engine = engine
        self.setup = setup
        self.now = now
        self.on_event = on_event
        self.times, self.kinds, self.index = setup.calendar.steps()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    @property
    def n_steps(self) -> int:
        return int(self.times.size)

    def next_step(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(market_state.c.next_step)).scalar_one())

    def run_due(self) -> list[StepDone]:
        """Do every step whose time has come, in order; returns the ones this server did."""
        done: list[StepDone] = []
        while True:
            i = self.next_step()
            if i >= self.n_steps or self.times[i] > self.now():
                return done
            out = self.step(i)
            if out is not None:
                done.append(out)
                if self.on_event is not None:
                    self.on_event(out.event)

    def step(self, i: int) -> StepDone | None:
        """Do step `i` if it is still the next one (None: another server did it)."""
        kind, idx = int(self.kinds[i]), int(self.index[i])
        with writing(self.engine, lock="clock") as conn:
            row = conn.execute(select(market_state.c.next_step, market_state.c.journal)).one()
            if int(row.next_step) != i:
                return None
            state = JournalState.decode(bytes(row.journal))
            if kind == GATE:
                journal, event = self._gate(conn, state, idx)
            else:
                journal, event = self._settle(conn, state, idx)
            conn.execute(
                update(market_state).values(
                    next_step=i + 1,
                    journal=journal_state(journal).encode(),
                    updated_at=dt.datetime.now(dt.UTC),
                )
            )
        return StepDone(i, event)

    # --- the steps --------------------------------------------------------------------------

    def _journal(self, state: JournalState) -> tuple[RunLedger, MemoryStore]:
        s = self.setup
        store = MemoryStore()
        journal = resume_journal(
            store, s.genesis, s.operator_key, state, s.market, s.daily_charge, s.day_starts
        )
        return journal, store

    def _gate(
        self, conn: Connection, state: JournalState, gate: int
    ) -> tuple[RunLedger, dict[str, Any]]:
        s, cal = self.setup, self.setup.calendar
        o = orders.c
        rows = conn.execute(
            select(o.ledger_index, o.message, o.signature)
            .where(o.gate == gate, o.status == "active")
            .order_by(o.ledger_index)
        ).all()
        subs = [Submission(int(r.ledger_index), bytes(r.message), bytes(r.signature)) for r in rows]
        deadline = cal.clear_deadline_s(gate)
        t0 = time.perf_counter()
        reason: str | None = None
        if self.now() > deadline:
            reason = (
                f"the clock reached the gate {self.now() - deadline:.1f} s after its clearing "
                "deadline (the server was down or behind)"
            )
        cleared: list[Cleared] = []
        journal, store = self._journal(state)
        if reason is None:
            try:
                cleared = close_gate(journal, s.market, cal, gate, subs)
            except Exception as e:  # a mechanism that fails must not stop the market
                reason = f"the mechanism failed: {type(e).__name__}: {e}"
            else:
                if self.now() > deadline:
                    reason = (
                        f"clearing took {time.perf_counter() - t0:.2f} s and ended after its "
                        "deadline"
                    )
        if reason is not None:
            journal, store = self._journal(state)
            cleared = close_gate(journal, s.market, cal, gate, subs, fallback=reason)
        seconds = time.perf_counter() - t0
        journal.ledger.flush()
        write_ledger(conn, store)
        first = int(cal.gates.first_slot[gate])
        conn.execute(
            insert(gates).values(
                gate=gate,
                status="fallback" if reason else "cleared",
                reason=reason,
                n_orders=len(subs),
                clear_seconds=seconds,
                closed_at=dt.datetime.now(dt.UTC),
            )
        )
        published = []
        for k, cl in enumerate(cleared):
            res = cl.result
            slot = first + k
            traded = res.traded_kwh if cl.book.n_orders else 0.0
            pub = self._public(cl.commitment.p2p_bought_kwh)
            conn.execute(
                insert(slots).values(
                    slot=slot,
                    gate=gate,
                    cleared=encode_state((cl.book, res)),
                    committed=f64_bytes(cl.commitment.committed_kwh),
                    clearing_price=_finite(res.clearing_price),
                    buy_price=_finite(res.buy_price),
                    sell_price=_finite(res.sell_price),
                    traded_kwh=float(traded),
                    traded_public_kwh=pub[0],
                    traded_status=pub[1],
                    n_orders=cl.book.n_orders,
                )
            )
            published.append(
                {
                    "slot": slot,
                    "clearing_price": _finite(res.clearing_price),
                    "buy_price": _finite(res.buy_price),
                    "sell_price": _finite(res.sell_price),
                    "traded_kwh": pub[0],
                    "traded_status": pub[1],
                }
            )
        event = {
            "type": "fallback" if reason else "cleared",
            "gate": gate,
            "gate_slot": int(cal.gates.gate_slot[gate]),
            "reason": reason,
            "slots": published,
            "at": _utc(self.now()).isoformat(),
        }
        return journal, event

    def _settle(
        self, conn: Connection, state: JournalState, slot: int
    ) -> tuple[RunLedger, dict[str, Any]]:
        s = self.setup
        row = conn.execute(select(slots.c.cleared).where(slots.c.slot == slot)).one()
        book, result = decode_state(bytes(row.cleared))
        commitment = commitment_of(s.market, slot, book, result)
        net, quality = metered_net(conn, s.participant_id, slot, commitment.committed_kwh)
        journal, store = self._journal(state)
        st = settle_delivered(journal, s.market, slot, commitment, net)
        journal.ledger.flush()
        write_ledger(conn, store)
        conn.execute(
            insert(meter_intervals),
            [
                {"participant_id": int(p), "slot": slot, "net_kwh": float(v), "quality": q}
                for p, v, q in zip(s.participant_id.tolist(), net.tolist(), quality, strict=True)
            ],
        )
        ctx = s.market.context(slot)
        baseline = (
            np.maximum(-net, 0.0) * ctx.retail_price - np.maximum(net, 0.0) * ctx.feed_in_price
        )
        n_est = sum(q == ESTIMATED for q in quality)
        pub = self._public(net)
        conn.execute(
            update(slots)
            .where(slots.c.slot == slot)
            .values(
                metered=f64_bytes(net),
                cost=f64_bytes(st.cost),
                baseline_cost=f64_bytes(baseline),
                n_estimated=n_est,
                net_public_kwh=pub[0],
                net_status=pub[1],
                settled_at=dt.datetime.now(dt.UTC),
            )
        )
        event = {
            "type": "settled",
            "slot": slot,
            "estimated": n_est,
            "community_net_kwh": pub[0],
            "community_net_status": pub[1],
            "at": _utc(self.now()).isoformat(),
        }
        return journal, event

    def _public(self, per_participant: FloatArray) -> tuple[float | None, str]:
        """A community total as the public may see it: released, or suppressed and why
        (part 5's disclosure control with the scenario's [privacy] rule)."""
        p = self.setup.scenario.privacy
        d = disclose(
            per_participant.reshape(-1, 1), DisclosureRule(p.min_households, p.dominance_share)
        )
        return (None if d.suppressed[0] else float(d.value[0])), REASON_LABELS[int(d.reason[0])]

    # --- the background thread ----------------------------------------------------------------

    def start(self, poll_s: float = 0.05) -> None:
        """Run the clock in a background thread until `stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(poll_s,), name="peergrid-clock", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self, poll_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
                i = self.next_step()
            except Exception as e:  # the database went away: say so, retry
                self.errors.append(f"{type(e).__name__}: {e}")
                del self.errors[:-20]
                self._stop.wait(1.0)
                continue
            if i >= self.n_steps:
                self._stop.wait(poll_s * 10)
                continue
            wait = float(self.times[i]) - self.now()
            self._stop.wait(min(max(wait, 0.0), poll_s * 10) if wait > 0 else poll_s)
