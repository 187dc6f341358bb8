"""Running homes against a live market on the wall clock (docs/live.md, "Home agents").

`schedule` lists what an agent does, in order, from the market's calendar (`engine.live`) — a
pure function, so the order is tested:

- **BID** gate g, a lead (default 40 % of a slot) before it closes: the homes' EMS plans the
  slots the gate closes and bids them (`homes.bid_gate`); each home with orders signs and
  submits them (`submission`), retried with the same Idempotency-Key until the gate closes;
- **FETCH** gate g, 30 % of a slot after it closed (the clock clears it at once): each home
  reads its commitments for those slots (`GET /v1/commitments`);
- **REPORT** the boundary of the agent's first slot, when that slot starts: each meter reports
  its (seeded) registers;
- **DELIVER** slot s when it ends: the homes deliver s with their commitments (0 where the
  server has none: the slot has not cleared, or the home did not bid) and each meter reports
  its registers at the boundary s + 1 (`meter`).

At equal times REPORT comes first, then DELIVER, BID, FETCH. Slot s of the market is slot
`first_slot` + s of the scenario's period (`GET /v1/market`): the homes forecast, bid and deliver
on the scenario's slots, their orders, commitments and readings are the market's. An agent that
starts late begins with the first gate it can still bid for. It is done when its meters have
reported the end of the market's last slot.

`HomeAgent` holds what changes between events (the EMS runtime, the registers, the commitments)
and does each event when the wall clock reaches it; the homes' requests of one event go out in
parallel, and their answers are handled while the agent waits for its next event.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

from peergrid.agent.client import AgentError, MarketClient, Reply, Unreachable
from peergrid.agent.homes import Homes, bid_gate, deliver_slot, prepare, start_runtime
from peergrid.agent.meter import advance_registers, initial_registers_kwh, reading_body
from peergrid.agent.submission import clipped, gate_orders, signed_body
from peergrid.engine.live import Calendar, calendar_for
from peergrid.errors import InputError
from peergrid.scenario.schema import Scenario

FloatArray = NDArray[np.float64]

#: When a home bids: this share of a slot before its gate closes [-].
BID_LEAD = 0.4
#: When a home reads its commitments: this share of a slot after its gate closed [-].
FETCH_AFTER = 0.3
#: A gate closing sooner than this share of a slot after the agent starts is left out [-].
JOIN_MARGIN = 0.25


class Kind(IntEnum):
    """What an event does; the value orders events due at the same instant."""

    REPORT = 0
    DELIVER = 1
    BID = 2
    FETCH = 3


@dataclass(frozen=True, order=True)
class Event:
    """One thing the agent does: when [s since the epoch], what, and its gate (BID, FETCH),
    slot (DELIVER) or boundary (REPORT)."""

    at_s: float
    kind: Kind
    index: int


def first_gate(calendar: Calendar, now_s: float, margin_s: float) -> int | None:
    """The first gate that closes more than `margin_s` after `now_s` (None: all have)."""
    times = calendar.start_unix_s + calendar.gates.gate_slot * calendar.slot_seconds
    g = int(np.searchsorted(times, now_s + margin_s, side="right"))
    return g if g < calendar.gates.n_gates else None


def schedule(calendar: Calendar, gate0: int, lead_s: float, fetch_after_s: float) -> list[Event]:
    """Every event of an agent whose first gate is `gate0`, in order (module docstring)."""
    g = calendar.gates
    first = int(g.first_slot[gate0])
    events = [Event(calendar.slot_start_s(first), Kind.REPORT, first)]
    for k in range(gate0, g.n_gates):
        closes = calendar.gate_time_s(k)
        events.append(Event(closes - lead_s, Kind.BID, k))
        events.append(Event(closes + fetch_after_s, Kind.FETCH, k))
    events += [
        Event(calendar.slot_start_s(s + 1), Kind.DELIVER, s) for s in range(first, calendar.n_slots)
    ]
    return sorted(events)


@dataclass(frozen=True)
class MarketInfo:
    """What `GET /v1/market` says about the market (the fields the agent uses)."""

    ledger_id: bytes
    scenario: str
    gate_closure: str
    start_unix_s: float
    slot_seconds: float
    slot_hours: float
    n_slots: int
    settle_after_s: float
    price_floor_per_kwh: float
    price_cap_per_kwh: float
    currency: str
    participants: tuple[str, ...]
    first_slot: int = 0  # the slot of the scenario's period that is the market's slot 0

    @staticmethod
    def from_json(d: dict[str, Any]) -> MarketInfo:
        """Parse the answer.

        Raises:
            AgentError: a field is missing or malformed.
        """
        try:
            return MarketInfo(
                ledger_id=bytes.fromhex(str(d["ledger_id"])),
                scenario=str(d["scenario"]),
                gate_closure=str(d["gate_closure"]),
                start_unix_s=dt.datetime.fromisoformat(str(d["start"])).timestamp(),
                slot_seconds=float(d["slot_seconds"]),
                slot_hours=float(d["slot_hours"]),
                n_slots=int(d["n_slots"]),
                settle_after_s=float(d["settle_after_s"]),
                price_floor_per_kwh=float(d["price_floor_per_kwh"]),
                price_cap_per_kwh=float(d["price_cap_per_kwh"]),
                currency=str(d.get("currency", "")),
                participants=tuple(str(p) for p in d["participants"]),
                first_slot=int(d.get("first_slot", 0)),  # a server without it starts at 0
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AgentError(f"the server's market description is not usable ({e!r})") from e


def calendar_of(info: MarketInfo, scenario: Scenario) -> Calendar:
    """The market's calendar: its gate rule and wall clock on the scenario's slot grid, from
    the scenario's slot `info.first_slot` on.

    Raises:
        AgentError: the scenario's slots are not the market's, or its period does not hold the
            market's slots.
    """
    grid_h = scenario.time.slot_minutes / 60.0
    if abs(grid_h - info.slot_hours) > 1e-9:
        raise AgentError(
            f"the market's slots are {info.slot_hours:g} h long, the scenario "
            f"{scenario.name!r}'s {grid_h:g} h: run the market's scenario (--scenario)"
        )
    market = scenario.market.model_copy(update={"gate_closure": info.gate_closure})
    try:
        return calendar_for(
            scenario.model_copy(update={"market": market}),
            info.start_unix_s,
            info.slot_seconds,
            info.n_slots,
            info.settle_after_s,
            first_slot=info.first_slot,
        )
    except (ValueError, InputError) as e:
        raise AgentError(f"the scenario {scenario.name!r} cannot run this market: {e}") from e


@dataclass(frozen=True)
class Credentials:
    """A home's identity in the market: its member name, API token and signing key
    (`key_file`: where the key came from, for messages)."""

    participant: str
    token: str
    key: Ed25519PrivateKey
    key_file: str | None = None


def connect(client: MarketClient, credentials: Sequence[Credentials]) -> MarketInfo:
    """The market, after checking that every home's token is its own and that it is a member.

    Raises:
        AgentError: no server or market, a token refused or another's, a home not a member.
    """
    info = MarketInfo.from_json(client.market())
    for c in credentials:
        client.me(c.token, c.participant)
        if c.participant not in info.participants:
            shown = ", ".join(info.participants[:6]) + ("…" if len(info.participants) > 6 else "")
            raise AgentError(
                f"{c.participant!r} is not a member of the market (members: {shown}); a "
                "participant registered after the market opened cannot trade in it"
            )
    return info


@dataclass
class AgentReport:
    """What an agent did (submissions and readings are counted per home)."""

    homes: int
    first_slot: int = 0
    gates: int = 0
    orders_accepted: int = 0
    orders_refused: int = 0
    orders_late: int = 0
    orders_failed: int = 0
    readings_stored: int = 0
    readings_late: int = 0
    readings_refused: int = 0
    readings_failed: int = 0
    slots_delivered: int = 0
    commitments_missing: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every submission accepted and every reading stored."""
        return not (
            self.orders_refused
            + self.orders_late
            + self.orders_failed
            + self.readings_refused
            + self.readings_failed
        )


class AgentStopped(AgentError):
    """The agent was asked to stop before the market's end."""


@dataclass(eq=False)
class _Job:
    """A request in flight: its future, what to do with its answer (in the agent's thread),
    and the gate whose commitments it fetches (None: not a fetch)."""

    future: Future[Reply | None]
    done: Callable[[Reply | None], None]
    fetches_gate: int | None = None


@dataclass(eq=False)
class _Tally:
    """The answers an event is waiting for, and the line to log when they are in."""

    expected: int
    line: Callable[[int], str]
    ok: int = 0
    answered: int = 0


class HomeAgent:
    """The homes of one agent process against one market (module docstring).

    An event's requests go out in parallel and the agent does not wait for them: their answers
    are handled, in the agent's own thread, while it waits for the next event — so a slow answer
    delays neither the next bid nor the next reading. A delivery waits (briefly) only for the
    commitments it needs.

    `credentials[i]` is home i's identity; `now` and `sleep` are the wall clock [s since the
    epoch]; `stop` is asked while waiting and, when it returns a reason, the agent stops
    (`AgentStopped`); `log` hears one line per gate and per slot.
    """

    def __init__(
        self,
        client: MarketClient,
        info: MarketInfo,
        homes: Homes,
        credentials: Sequence[Credentials],
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stop: Callable[[], str | None] | None = None,
        log: Callable[[str], None] | None = None,
        bid_lead: float = BID_LEAD,
        workers: int = 8,
    ) -> None:
        if len(credentials) != homes.n_homes:
            raise ValueError(f"{len(credentials)} credentials for {homes.n_homes} homes")
        self.client = client
        self.info = info
        self.homes = homes
        self.credentials = list(credentials)
        self.calendar = calendar_of(info, homes.scenario)
        if info.first_slot + info.n_slots > homes.n_slots:
            raise AgentError(
                f"the market runs {info.n_slots} slots from the scenario's slot "
                f"{info.first_slot}, the scenario's period has {homes.n_slots}"
            )
        missing = [c.participant for c in credentials if c.participant not in info.participants]
        if missing:
            raise AgentError(f"not members of the market: {', '.join(missing)}")
        self.ledger_index = [info.participants.index(c.participant) for c in credentials]
        n = homes.n_homes
        cap_kwh = homes.scenario.live.connection_kw * homes.dt_h
        self.max_kwh: FloatArray = np.full(n, cap_kwh)
        self.import_kwh, self.export_kwh = initial_registers_kwh(
            homes.scenario.seed, [c.participant for c in credentials], homes.pv_kwp
        )
        self.committed_kwh: FloatArray = np.full((info.n_slots, n), np.nan)
        self.now = now
        self.sleep = sleep
        self.stop = stop
        self.log = log or (lambda _line: None)
        self.bid_lead = bid_lead
        self.workers = max(1, workers)
        self.report = AgentReport(homes=n)
        self.runtime: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[_Job] = []

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> AgentReport:
        """Do every event as the wall clock reaches it, then wait for the last answers; returns
        what was done.

        Raises:
            AgentError: the market is over, a key or token was refused, or `stop` said so.
        """
        cal = self.calendar
        slot_s = cal.slot_seconds
        g0 = first_gate(cal, self.now(), JOIN_MARGIN * slot_s)
        if g0 is None:
            end = cal.as_utc(cal.gate_time_s(cal.gates.n_gates - 1)).isoformat()
            raise AgentError(f"the market's last gate closed at {end}: nothing left to bid for")
        first = int(cal.gates.first_slot[g0])
        self.report.first_slot = first
        # the homes count the scenario's slots: live slot s is their slot cal.first_slot + s
        self.runtime = start_runtime(self.homes, cal.first_slot + first)
        gates = cal.gates
        prepare(self.homes, gates, g0, first_slot=cal.first_slot)
        events = schedule(cal, g0, self.bid_lead * slot_s, FETCH_AFTER * slot_s)
        starts = cal.as_utc(cal.slot_start_s(first)).isoformat()
        shifted = f", the scenario's slot {cal.first_slot + first}" if cal.first_slot else ""
        self.log(f"{_count(self.homes.n_homes, 'home')} from slot {first} ({starts}{shifted})")
        with ThreadPoolExecutor(self.workers, thread_name_prefix="peergrid-agent") as pool:
            self._pool = pool
            try:
                for ev in events:
                    self._wait(ev.at_s)
                    if ev.kind == Kind.BID:
                        self._bid(ev.index)
                    elif ev.kind == Kind.FETCH:
                        self._fetch(ev.index)
                    elif ev.kind == Kind.DELIVER:
                        self._deliver(ev.index)
                    else:
                        self._report(ev.index, None)
                self._collect(lambda _job: True, None)
            finally:
                for job in self._jobs:
                    job.future.cancel()
                self._jobs = []
                self._pool = None
        return self.report

    def _wait(self, t_s: float) -> None:
        """Handle answers until the wall clock reaches `t_s`."""
        while True:
            if self.stop is not None:
                why = self.stop()
                if why is not None:
                    raise AgentStopped(f"the agent stopped: {why}")
            self._collect()
            left = t_s - self.now()
            if left <= 0:
                return
            if self._jobs:
                wait(
                    [j.future for j in self._jobs],
                    timeout=min(left, 0.2),
                    return_when=FIRST_COMPLETED,
                )
            else:
                self.sleep(min(left, 0.2))

    def _collect(
        self, block_on: Callable[[_Job], bool] | None = None, timeout_s: float | None = 0.0
    ) -> None:
        """Handle every answer that is in, first waiting up to `timeout_s` (None: for as long
        as they take) for those of the jobs `block_on` selects."""
        if block_on is not None:
            wait([j.future for j in self._jobs if block_on(j)], timeout=timeout_s)
        finished = [j.future.done() for j in self._jobs]  # once: a job may finish meanwhile
        done = [j for j, f in zip(self._jobs, finished, strict=True) if f]
        self._jobs = [j for j, f in zip(self._jobs, finished, strict=True) if not f]
        for j in done:
            j.done(j.future.result())

    def _send(
        self,
        request: Callable[[], Reply | None],
        done: Callable[[Reply | None], None],
        fetches_gate: int | None = None,
    ) -> None:
        assert self._pool is not None
        self._jobs.append(_Job(self._pool.submit(request), done, fetches_gate))

    def _call(
        self, what: str, fn: Callable[..., Reply], *args: Any, **kwargs: Any
    ) -> Callable[[], Reply | None]:
        """A request for the pool: None when the server cannot be reached (said once here)."""

        def run() -> Reply | None:
            try:
                return fn(*args, **kwargs)
            except Unreachable as e:
                self.report.problems.append(f"{what}: {e}")
                return None

        return run

    def _answered(self, tally: _Tally, ok: bool) -> None:
        tally.answered += 1
        tally.ok += ok
        if tally.answered == tally.expected:
            self.log(tally.line(tally.ok))

    # --- the events -----------------------------------------------------------------------------

    def _bid(self, gate: int) -> None:
        cal, info = self.calendar, self.info
        gs = cal.gates
        gate_slot, a, b = int(gs.gate_slot[gate]), int(gs.first_slot[gate]), int(gs.stop_slot[gate])
        off = cal.first_slot  # the homes' slots are the scenario's
        self.runtime, bids = bid_gate(self.homes, self.runtime, gate_slot + off, a + off, b - a)
        orders = clipped(
            gate_orders(gate_slot, a, bids.books),
            info.price_floor_per_kwh,
            info.price_cap_per_kwh,
            self.max_kwh,
        )
        self.report.gates += 1
        homes = np.unique(orders.home).tolist()
        closes = cal.gate_time_s(gate)
        if self.now() >= closes:
            self.report.orders_late += len(homes)
            self._problem(f"gate {gate_slot}: bid after the gate closed; {len(homes)} not sent")
            return
        n_orders = orders.n_orders
        tally = _Tally(
            len(homes),
            lambda ok: (
                f"gate {gate_slot} ({_slots(a, b)}): {_count(n_orders, 'order')} from "
                f"{_count(len(homes), 'home')}, {ok} accepted"
            ),
        )
        if not homes:
            self.log(tally.line(0))
        for h in homes:
            c = self.credentials[h]
            body = signed_body(orders.of_home(h), c.key, info.ledger_id, self.ledger_index[h])
            request = self._call(
                f"gate {gate_slot}, {c.participant}",
                self.client.post_orders,
                c.token,
                body,
                deadline_s=closes,
            )

            def done(r: Reply | None, h: int = h) -> None:
                if r is None:
                    self.report.orders_failed += 1
                elif r.status == 201:
                    self.report.orders_accepted += 1
                else:
                    self._refused_order(h, gate_slot, r)
                self._answered(tally, r is not None and r.status == 201)

            self._send(request, done)

    def _refused_order(self, home: int, gate_slot: int, r: Reply) -> None:
        c = self.credentials[home]
        self._fatal(c, r)
        if r.status == 422 and "signature" in r.detail:
            where = f" in {c.key_file}" if c.key_file else ""
            raise AgentError(
                f"the server refused the signed orders of {c.participant!r}: the key{where} does "
                f"not match the public key registered for it (server: {r.detail})"
            )
        self.report.orders_refused += 1
        self._problem(f"gate {gate_slot}, {c.participant}: orders refused ({r.status}: {r.detail})")

    def _fatal(self, c: Credentials, r: Reply) -> None:
        if r.status == 401:
            raise AgentError(f"the server refused the API token of {c.participant!r} ({r.detail})")
        if r.status == 403:
            raise AgentError(f"{c.participant!r}: {r.detail}")

    def _fetch(self, gate: int) -> None:
        """Ask for every home's commitments of the slots gate `gate` closed."""
        gs = self.calendar.gates
        a, b = int(gs.first_slot[gate]), int(gs.stop_slot[gate])
        for h in range(self.homes.n_homes):
            self._send(self._fetch_request(h, a, b), self._fetched(h, a, b), gate)

    def _fetch_request(self, h: int, a: int, b: int) -> Callable[[], Reply | None]:
        c = self.credentials[h]
        deadline = self.calendar.slot_start_s(b)
        return self._call(
            f"commitments of {c.participant}", self.client.commitments, c.token, a, b,
            deadline_s=deadline,
        )  # fmt: skip

    def _fetched(self, h: int, a: int, b: int) -> Callable[[Reply | None], None]:
        def done(r: Reply | None) -> None:
            if r is None:
                return
            if r.status != 200 or not isinstance(r.body, list):
                self._fatal(self.credentials[h], r)
                return
            for row in r.body:
                s = int(row["slot"])
                if a <= s < b:
                    self.committed_kwh[s, h] = float(row["committed_kwh"])

        return done

    def _deliver(self, slot: int) -> None:
        cal = self.calendar
        gate = cal.gate_of_slot(slot)
        self._collect(lambda j: j.fetches_gate == gate, 0.25 * cal.slot_seconds)
        missing = np.isnan(self.committed_kwh[slot])
        if np.count_nonzero(missing):
            # the gate's answer did not have them (it had not cleared yet): ask once more
            for h in np.flatnonzero(missing).tolist():
                self._fetched(h, slot, slot + 1)(self._fetch_request(h, slot, slot + 1)())
            missing = np.isnan(self.committed_kwh[slot])
            self.report.commitments_missing += int(np.count_nonzero(missing))
        committed = np.where(missing, 0.0, self.committed_kwh[slot])
        self.runtime, delivered = deliver_slot(
            self.homes, self.runtime, cal.first_slot + slot, committed
        )
        net = delivered.dispatch.net_kwh
        self.import_kwh, self.export_kwh = advance_registers(self.import_kwh, self.export_kwh, net)
        self.report.slots_delivered += 1
        self._report(
            slot + 1,
            lambda ok: (
                f"slot {slot} delivered: net {float(net.sum()):+.3f} kWh (committed "
                f"{float(committed.sum()):+.3f} kWh), {_count(ok, 'reading')} stored"
            ),
        )

    def _report(self, boundary: int, line: Callable[[int], str] | None) -> None:
        """Each meter reports its registers at `boundary`; `line` is logged when all answered."""
        cal = self.calendar
        at = cal.as_utc(cal.slot_start_s(boundary))
        deadline = cal.slot_start_s(boundary) + cal.slot_seconds
        n = self.homes.n_homes
        tally = _Tally(
            n, line or (lambda ok: f"boundary {boundary}: {_count(ok, 'reading')} stored")
        )
        for h in range(n):
            c = self.credentials[h]
            body = reading_body(at, float(self.import_kwh[h]), float(self.export_kwh[h]))
            request = self._call(
                f"boundary {boundary}, {c.participant}",
                self.client.post_readings,
                c.token,
                body,
                deadline_s=deadline,
            )

            def done(r: Reply | None, c: Credentials = c) -> None:
                if r is None:
                    self.report.readings_failed += 1
                elif r.status == 200:
                    self.report.readings_stored += 1
                    if isinstance(r.body, dict):
                        self.report.readings_late += int(r.body.get("late", 0))
                else:
                    self._fatal(c, r)
                    self.report.readings_refused += 1
                    self._problem(
                        f"boundary {boundary}, {c.participant}: reading refused ({r.status}: "
                        f"{r.detail})"
                    )
                self._answered(tally, r is not None and r.status == 200)

            self._send(request, done)

    def _problem(self, text: str) -> None:
        self.report.problems.append(text)
        self.log(text)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _slots(a: int, b: int) -> str:
    return f"slot {a}" if b - a == 1 else f"slots {a}–{b - 1}"
