"""The WebSocket stream of market events, per role (`GET /v1/stream`, docs/live.md).

Three pieces, each with one job:

- `view` is a pure function: what one role sees of one published step. The public sees prices,
  order counts and the totals that passed disclosure control (`PUBLIC_FIELDS`); the operator
  additionally sees why a gate fell back and how many meters were estimated, the network
  operator the community's metered net, a participant its own commitment and, once settled, its
  metered energy, deviation and cost (`ROLE_FIELDS`, `own`).
- `Broadcaster` publishes each step of the market exactly once per server. Its own clock tells
  it (`Clock(on_event=Broadcaster.on_event)`, called in the clock's thread after the step's
  commit); steps another server on the same database did, it finds by polling
  `market_state.next_step` every `poll_s`. One publisher thread does both, in step order, and
  reads what the role views need from the database (`gates`, `slots`) once per step — never on
  the event loop. It hands each step to every subscriber with `loop.call_soon_threadsafe` onto a
  bounded `asyncio.Queue`: a client too slow to keep up is dropped (closed with 1013), it never
  holds up the clock or the other clients.
- `stream_router` is the WebSocket endpoint: it authenticates (a token as the query parameter
  `token`, or a first message `{"token": "…"}`; none: the public), subscribes, and sends each
  step as its role's view.

A gate's closing and clearing are one clock step (one transaction), so its `gate-closed` event
(the book that closed: orders per slot) and its `cleared` or `fallback` event are sent together,
in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from peergrid.engine.live import GATE, SETTLE
from peergrid.server.admin import authenticate
from peergrid.server.clock import f64_array
from peergrid.server.market import MarketSetup
from peergrid.server.schema import gates, market_state, slots

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Event = dict[str, Any]

#: The role of a connection without a token.
PUBLIC = "public"

#: The fields of each event type that everyone sees: prices, order counts and the community
#: totals after disclosure control (NULL where suppressed, with the reason in `*_status`).
PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    "gate-closed": ("type", "gate", "gate_slot", "first_slot", "stop_slot", "slots", "at"),
    "cleared": ("type", "gate", "gate_slot", "slots", "at"),
    "fallback": ("type", "gate", "gate_slot", "slots", "at"),
    "settled": ("type", "slot", "community_net_kwh", "community_net_status", "at"),
}

#: The fields of each element of an event's `slots` that everyone sees.
PUBLIC_SLOT_FIELDS: dict[str, tuple[str, ...]] = {
    "gate-closed": ("slot", "n_orders"),
    "cleared": ("slot", "clearing_price", "buy_price", "sell_price", "traded_kwh", "traded_status"),
    "fallback": (
        "slot",
        "clearing_price",
        "buy_price",
        "sell_price",
        "traded_kwh",
        "traded_status",
    ),
}

#: What each role sees beyond the public fields, per event type. A participant also gets `own`.
ROLE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "operator": {
        "gate-closed": ("n_submissions",),
        "cleared": ("reason",),
        "fallback": ("reason",),
        "settled": ("estimated", "community_net_metered_kwh"),
    },
    "network-operator": {"settled": ("community_net_metered_kwh",)},
}

#: Events a subscriber may hold before it counts as too slow and is dropped.
QUEUE_SIZE = 256
#: How often the publisher looks for steps another server did [s].
POLL_S = 0.5
#: The longest one send to a client may take before the client is dropped [s].
SEND_TIMEOUT_S = 10.0


@dataclass(frozen=True, eq=False)
class Published:
    """One event as published, with what the role views need beyond it.

    Attributes:
        event: every field any role may see (the clock's event and the operator's extras).
        slots: the slots whose per-participant values follow, (K,).
        committed_kwh: each member's commitment in those slots, (K, P) [kWh, export positive].
        metered_kwh, cost, baseline_cost: once settled, each member's metered net energy
            [kWh, export positive], its cost in the market and with the retailer alone
            [currency], (K, P); None before.
    """

    event: Event
    slots: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    committed_kwh: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    metered_kwh: FloatArray | None = None
    cost: FloatArray | None = None
    baseline_cost: FloatArray | None = None


@dataclass(frozen=True)
class Viewer:
    """Who a connection streams for: a role, and for a participant its ledger index."""

    role: str = PUBLIC
    name: str | None = None
    index: int | None = None


def own_rows(pub: Published, index: int) -> list[dict[str, Any]]:
    """A participant's own values in the event's slots (its ledger index `index`)."""
    out = []
    for k, s in enumerate(pub.slots.tolist()):
        committed = float(pub.committed_kwh[k, index])
        row: dict[str, Any] = {"slot": int(s), "committed_kwh": committed}
        if pub.metered_kwh is not None and pub.cost is not None and pub.baseline_cost is not None:
            metered = float(pub.metered_kwh[k, index])
            row.update(
                metered_kwh=metered,
                deviation_kwh=metered - committed,
                cost=float(pub.cost[k, index]),
                baseline_cost=float(pub.baseline_cost[k, index]),
            )
        out.append(row)
    return out


def view(pub: Published, viewer: Viewer) -> Event:
    """What `viewer` sees of a published event (module docstring)."""
    e = pub.event
    kind = str(e["type"])
    out = {k: e[k] for k in PUBLIC_FIELDS[kind] if k in e}
    if "slots" in out:
        keep = PUBLIC_SLOT_FIELDS[kind]
        out["slots"] = [{k: s[k] for k in keep if k in s} for s in e["slots"]]
    for k in ROLE_FIELDS.get(viewer.role, {}).get(kind, ()):
        out[k] = e.get(k)
    if viewer.role == "participant" and viewer.index is not None and pub.slots.size:
        out["own"] = own_rows(pub, viewer.index)
    return out


def hello(viewer: Viewer, next_step: int, n_steps: int) -> Event:
    """The first message of a connection (and the answer to a token sent as a message)."""
    return {
        "type": "hello",
        "role": viewer.role,
        "account": viewer.name,
        "next_step": next_step,
        "n_steps": n_steps,
    }


# --- reading a step's results -----------------------------------------------------------------


def _iso(t: dt.datetime) -> str:
    """An instant from the database as ISO 8601 UTC (SQLite returns it naive)."""
    return (t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()


def _stack(blobs: list[bytes | None], n: int) -> FloatArray | None:
    if not blobs or any(b is None for b in blobs):
        return None
    return np.stack([f64_array(b) for b in blobs if b is not None]).reshape(len(blobs), n)


def read_gate(
    conn: Connection, setup: MarketSetup, gate: int, own: Event | None
) -> list[Published]:
    """The `gate-closed` and the `cleared`/`fallback` event of gate `gate`, from the database
    (`own`: the clock's event when this server did the step)."""
    cal = setup.calendar
    g = conn.execute(
        select(gates.c.status, gates.c.reason, gates.c.n_orders, gates.c.closed_at).where(
            gates.c.gate == gate
        )
    ).one()
    c = slots.c
    rows = conn.execute(
        select(
            c.slot,
            c.committed,
            c.clearing_price,
            c.buy_price,
            c.sell_price,
            c.traded_public_kwh,
            c.traded_status,
            c.n_orders,
        )
        .where(c.gate == gate)
        .order_by(c.slot)
    ).all()
    gate_slot = int(cal.gates.gate_slot[gate])
    closed: Event = {
        "type": "gate-closed",
        "gate": gate,
        "gate_slot": gate_slot,
        "first_slot": int(cal.gates.first_slot[gate]),
        "stop_slot": int(cal.gates.stop_slot[gate]),
        "slots": [{"slot": int(r.slot), "n_orders": int(r.n_orders)} for r in rows],
        "n_submissions": int(g.n_orders),
        "at": cal.as_utc(cal.gate_time_s(gate)).isoformat(),
    }
    cleared = own
    if cleared is None:
        cleared = {
            "type": str(g.status),
            "gate": gate,
            "gate_slot": gate_slot,
            "reason": g.reason,
            "slots": [
                {
                    "slot": int(r.slot),
                    "clearing_price": r.clearing_price,
                    "buy_price": r.buy_price,
                    "sell_price": r.sell_price,
                    "traded_kwh": r.traded_public_kwh,
                    "traded_status": r.traded_status,
                }
                for r in rows
            ],
            "at": _iso(g.closed_at),
        }
    n = setup.n_participants
    committed = _stack([bytes(r.committed) for r in rows], n)
    return [
        Published(closed),
        Published(
            cleared,
            slots=np.array([int(r.slot) for r in rows], dtype=np.int64),
            committed_kwh=np.zeros((0, n)) if committed is None else committed,
        ),
    ]


def read_settle(
    conn: Connection, setup: MarketSetup, slot: int, own: Event | None
) -> list[Published]:
    """The `settled` event of slot `slot`, from the database (`own`: the clock's event)."""
    c = slots.c
    r = conn.execute(
        select(
            c.committed,
            c.metered,
            c.cost,
            c.baseline_cost,
            c.n_estimated,
            c.net_public_kwh,
            c.net_status,
            c.settled_at,
        ).where(c.slot == slot)
    ).one()
    n = setup.n_participants
    committed = f64_array(r.committed).reshape(1, n)
    metered = _stack([r.metered], n)
    event = (
        dict(own)
        if own is not None
        else {
            "type": "settled",
            "slot": slot,
            "estimated": r.n_estimated,
            "community_net_kwh": r.net_public_kwh,
            "community_net_status": r.net_status,
            "at": _iso(r.settled_at),
        }
    )
    event["community_net_metered_kwh"] = None if metered is None else float(metered.sum())
    return [
        Published(
            event,
            slots=np.array([slot], dtype=np.int64),
            committed_kwh=committed,
            metered_kwh=metered,
            cost=_stack([r.cost], n),
            baseline_cost=_stack([r.baseline_cost], n),
        )
    ]


# --- the broadcaster ----------------------------------------------------------------------------


class _Control:
    """A message for a connection's sender that is not a market event."""

    def __init__(self, kind: str, code: int = 1000, reason: str = "") -> None:
        self.kind, self.code, self.reason = kind, code, reason


#: Put in a dropped subscriber's queue: it was too slow.
DROPPED = _Control("close", 1013, "too slow: events were dropped; reconnect")
#: Put in every queue when the server stops.
GOING_AWAY = _Control("close", 1001, "the server is stopping")
#: Asks the sender to (re)send the hello (after a token arrived as a message).
HELLO = _Control("hello")
#: The client went away: the sender stops.
GONE = _Control("gone")

Item = Published | _Control


class Subscription:
    """One connection's bounded queue on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize)
        self.dropped = False
        self.closed = False

    def offer(self, item: Item) -> None:
        """Queue an item (on the subscription's loop); a full queue drops the subscriber."""
        if self.dropped or self.closed:
            return
        if isinstance(item, _Control) and item.kind in ("close", "gone"):
            self.closed = True
            self._clear()
        elif self.queue.full():
            self.dropped = True
            self._clear()
            item = DROPPED
        self.queue.put_nowait(item)

    def _clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


class Broadcaster:
    """Publishes every step of the market once, to every subscriber (module docstring)."""

    def __init__(
        self,
        engine: Engine,
        setup: MarketSetup,
        *,
        poll_s: float = POLL_S,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.engine = engine
        self.setup = setup
        self.poll_s = poll_s
        self.queue_size = queue_size
        _times, kinds, index = setup.calendar.steps()
        self.n_steps = int(kinds.size)
        self._step_of = {
            (int(k), int(i)): s for s, (k, i) in enumerate(zip(kinds, index, strict=True))
        }
        self._kinds, self._index = kinds, index
        self._lock = threading.Lock()  # guards the subscribers and the pending events
        self._subs: set[Subscription] = set()
        self._pending: dict[int, Event] = {}
        self._publishing = threading.Lock()  # one catch-up at a time
        self._published = 0  # the next step to publish
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    # the clock's side (its thread)

    def on_event(self, event: Event) -> None:
        """The clock's hook: remember the step's event and wake the publisher. Never blocks
        and never raises into the clock (an event it cannot place is rebuilt from the tables)."""
        try:
            kind = GATE if event.get("type") in ("cleared", "fallback") else SETTLE
            step = self._step_of.get((kind, int(event["gate" if kind == GATE else "slot"])))
        except (KeyError, TypeError, ValueError) as e:
            self._error(f"an event the clock published has no step: {e!r}")
            step = None
        if step is not None:
            with self._lock:
                self._pending[step] = event
        self._wake.set()

    def _error(self, message: str) -> None:
        self.errors.append(message)
        del self.errors[:-20]

    def next_step(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(market_state.c.next_step)).scalar_one())

    # the publisher

    def catch_up(self) -> int:
        """Publish every step done since the last one published, in order; returns how many."""
        with self._publishing:
            nxt = self.next_step()
            done = 0
            for step in range(self._published, nxt):
                with self._lock:
                    own = self._pending.pop(step, None)
                kind, idx = int(self._kinds[step]), int(self._index[step])
                with self.engine.connect() as conn:
                    items = (
                        read_gate(conn, self.setup, idx, own)
                        if kind == GATE
                        else read_settle(conn, self.setup, idx, own)
                    )
                for item in items:
                    self.publish(item)
                self._published = step + 1
                done += 1
            with self._lock:
                for s in [s for s in self._pending if s < self._published]:
                    del self._pending[s]
            return done

    def publish(self, item: Item) -> None:
        """Hand an item to every subscriber's loop (from any thread)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, item)
            except RuntimeError:  # its loop is closed: the connection is gone
                self.unsubscribe(sub)

    def start(self) -> None:
        """Start publishing from the step the clock stands at now (call before the clock)."""
        if self._thread is not None:
            return
        self._published = self.next_step()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="peergrid-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the publisher and tell every subscriber the server is going away."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.publish(GOING_AWAY)

    def wake(self) -> None:
        """Look for new steps now rather than at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.catch_up()
            except Exception as e:  # the database went away: say so, retry
                self._error(f"{type(e).__name__}: {e}")
                self._stop.wait(1.0)
                continue
            if self._published >= self.n_steps:
                return  # the market has run all its steps: nothing more will happen

    # the connections' side (their event loops)

    def subscribe(self, maxsize: int | None = None) -> Subscription:
        """A new subscription on the running event loop, of `maxsize` events (default: the
        broadcaster's `queue_size`)."""
        sub = Subscription(asyncio.get_running_loop(), maxsize or self.queue_size)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def n_subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def status(self) -> dict[str, Any]:
        """What the operator's status shows of the stream."""
        return {
            "connections": self.n_subscribers,
            "published_steps": self._published,
            "errors": list(self.errors),
        }


# --- the endpoint -------------------------------------------------------------------------------

stream_router = APIRouter()


def _viewer(engine: Engine, setup: MarketSetup, token: str) -> Viewer | None:
    """The viewer a token stands for (None: no account has it); reads the database."""
    who = authenticate(engine, token)
    if who is None:
        return None
    role, name, account = str(who["role"]), str(who["name"]), who["id"]
    assert isinstance(account, int)
    return Viewer(role, name, setup.index_of(account) if role == "participant" else None)


def _token_of(text: str | None) -> str | None:
    """The token of a first message `{"token": "…"}` (None: not such a message)."""
    if text is None:
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    token = msg.get("token") if isinstance(msg, dict) else None
    return token if isinstance(token, str) and token else None


@dataclass
class _Connection:
    """One WebSocket's mutable state: whom it streams for."""

    viewer: Viewer
    authenticated: bool


async def _receive(
    websocket: WebSocket, conn: _Connection, sub: Subscription, b: Broadcaster
) -> None:
    """Read what the client sends: a first message may carry its token; a disconnect ends the
    connection. Everything else is ignored."""
    first = True
    while True:
        msg = await websocket.receive()
        if msg["type"] == "websocket.disconnect":
            sub.offer(GONE)
            return
        if not first or conn.authenticated:
            continue
        first = False
        token = _token_of(msg.get("text"))
        if token is None:
            continue
        found = await anyio.to_thread.run_sync(_viewer, b.engine, b.setup, token)
        if found is None:
            sub.offer(_Control("close", 1008, "unknown API token"))
        else:
            conn.viewer, conn.authenticated = found, True
            sub.offer(HELLO)


@stream_router.websocket("/v1/stream")
async def stream(websocket: WebSocket, token: str | None = None) -> None:
    """Market events as they happen, filtered for the connection's role (module docstring)."""
    await websocket.accept()
    b: Broadcaster | None = websocket.app.state.stream
    if b is None:
        await websocket.close(code=1013, reason="no market is open on this server")
        return
    conn = _Connection(Viewer(), authenticated=False)
    if token:
        found = await anyio.to_thread.run_sync(_viewer, b.engine, b.setup, token)
        if found is None:
            await websocket.close(code=1008, reason="unknown API token")
            return
        conn = _Connection(found, authenticated=True)
    sub = b.subscribe()
    receiver = asyncio.create_task(_receive(websocket, conn, sub, b))
    try:
        sub.offer(HELLO)
        while True:
            item = await sub.queue.get()
            if isinstance(item, Published):
                message = view(item, conn.viewer)
            elif item.kind == "hello":
                message = hello(conn.viewer, await anyio.to_thread.run_sync(b.next_step), b.n_steps)
            elif item.kind == "close":
                await websocket.close(code=item.code, reason=item.reason)
                return
            else:  # gone
                return
            with anyio.fail_after(SEND_TIMEOUT_S):
                await websocket.send_json(message)
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        return  # a client that stalls or went away: nothing more to send it
    finally:
        b.unsubscribe(sub)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
