"""Accepting a participant's signed orders (`POST /v1/orders`, docs/live.md "Orders").

A submission is one participant's orders of one gate closure, the canonical message of
`ledger.encoding.order_message` signed with its Ed25519 key: the server rebuilds the message from
the JSON body and verifies the signature, so the bytes the ledger logs at the gate are exactly
the ones the participant signed. A later submission for the same gate replaces the earlier one
(until the gate closes).

Every submission carries an `Idempotency-Key` header. The checks run, then one transaction that
holds the clock's shared lock (so the gate cannot close between the check and the write) stores
the order (marking the one it replaces) and the key with its response — the order is
acknowledged only after that commit, and a server killed before it left nothing. A retry with
the same key and body gets the stored response; with another body 422; while the first is still
being processed on the same server 409 (`InFlight`); on another server the retry's insert of
the key waits for the first transaction and then returns its stored result.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, bindparam, insert, select, tuple_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import verify
from peergrid.markets.base import Side
from peergrid.server.db import writing
from peergrid.server.market import MarketSetup
from peergrid.server.schema import envelopes, gates, idempotency, orders

#: The most orders one submission may carry.
MAX_ORDERS = 1000


class OrderIn(BaseModel):
    """One order: buy or sell energy in a slot at a limit price."""

    model_config = ConfigDict(extra="forbid")

    slot: int = Field(ge=0, le=2**31 - 1, description="the delivery slot (0 = the market's first)")
    side: Literal["buy", "sell"]
    quantity_kwh: float = Field(gt=0, allow_inf_nan=False, description="energy [kWh]")
    limit_price: float = Field(
        allow_inf_nan=False,
        description="the most a buyer pays, the least a seller accepts [currency/kWh]",
    )


class OrdersIn(BaseModel):
    """A participant's signed orders of one gate closure."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "gate_slot": 12,
                    "orders": [
                        {"slot": 16, "side": "sell", "quantity_kwh": 0.42, "limit_price": 0.15}
                    ],
                    "signature": "9f2c…(128 hex digits: Ed25519 over the canonical message)",
                }
            ]
        },
    )

    gate_slot: int = Field(
        ge=-(2**31), le=2**31 - 1, description="the slot at whose start the gate closes"
    )
    orders: list[OrderIn] = Field(min_length=1, max_length=MAX_ORDERS)
    signature: str = Field(
        pattern=r"^[0-9a-fA-F]{128}$",
        description="Ed25519 signature over ledger.encoding.order_message, hex",
    )


class OrderAccepted(BaseModel):
    """A submission the market accepted (durably stored)."""

    order_id: int
    gate_slot: int
    gate_closes_at: str
    n_orders: int
    replaces: int | None
    message_sha256: str


@dataclass(frozen=True)
class Outcome:
    """What the endpoint answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


def _problem(status: int, detail: str) -> Outcome:
    return Outcome(status, {"detail": detail})


def message_of(setup: MarketSetup, index: int, body: OrdersIn) -> bytes:
    """The canonical bytes a submission's signature covers."""
    return enc.order_message(
        setup.genesis.ledger_id,
        index,
        body.gate_slot,
        np.array([o.slot for o in body.orders], dtype=np.int64),
        np.array([Side.BUY if o.side == "buy" else Side.SELL for o in body.orders], dtype=np.int8),
        np.array([o.quantity_kwh for o in body.orders], dtype=np.float64),
        np.array([o.limit_price for o in body.orders], dtype=np.float64),
    )


def check_orders(
    setup: MarketSetup, index: int, body: OrdersIn, now_s: float
) -> tuple[int, str | None]:
    """(the gate's number, why the submission is refused or None) — everything but the
    database's view (the gate's state, the envelopes)."""
    cal = setup.calendar
    g = cal.gates
    hit = np.flatnonzero(g.gate_slot == body.gate_slot)
    if hit.size == 0:
        return -1, f"gate_slot {body.gate_slot}: no gate closes at the start of that slot"
    gate = int(hit[0])
    closes = cal.gate_time_s(gate)
    if now_s >= closes:
        return gate, (
            f"gate_slot {body.gate_slot}: the gate closed at {cal.as_utc(closes).isoformat()}"
        )
    first, stop = int(g.first_slot[gate]), int(g.stop_slot[gate])
    cap_kwh = float(setup.connection_kw[index]) * cal.dt_h
    lo, hi = setup.price_floor, setup.price_cap
    per_side: dict[tuple[int, str], float] = {}
    for i, o in enumerate(body.orders):
        if not first <= o.slot < stop:
            return gate, (
                f"orders[{i}].slot: {o.slot} is not closed by this gate (slots {first}–{stop - 1})"
            )
        if not lo <= o.limit_price <= hi:
            return gate, (
                f"orders[{i}].limit_price: {o.limit_price} is outside the market's floor and cap "
                f"[{lo}, {hi}]"
            )
        key = (o.slot, o.side)
        per_side[key] = per_side.get(key, 0.0) + o.quantity_kwh
        if per_side[key] > cap_kwh * (1 + 1e-12):
            return gate, (
                f"orders[{i}].quantity_kwh: {o.side} orders for slot {o.slot} add up to "
                f"{per_side[key]:g} kWh, above the connection's capacity "
                f"({setup.connection_kw[index]:g} kW × {cal.dt_h:g} h = {cap_kwh:g} kWh)"
            )
    return gate, None


Envelope = tuple[float | None, float | None]


def _envelopes(conn: Any, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], Envelope]:
    """The operating envelopes (import, export limit [kWh]) of (participant id, slot) pairs."""
    if not pairs:
        return {}
    e = envelopes.c
    pids = sorted({p for p, _ in pairs})
    slots_ = sorted({s for _, s in pairs})
    return {
        (int(r.participant_id), int(r.slot)): (r.import_limit_kwh, r.export_limit_kwh)
        for r in conn.execute(
            select(e.participant_id, e.slot, e.import_limit_kwh, e.export_limit_kwh).where(
                and_(e.participant_id.in_(pids), e.slot.in_(slots_))
            )
        )
    }


def _envelope_problem(conn: Any, participant_id: int, body: OrdersIn) -> str | None:
    """Why the orders break the network operator's operating envelope, or None."""
    pairs = {(participant_id, o.slot) for o in body.orders}
    return envelope_problem(body, _envelopes(conn, pairs), participant_id)


def envelope_problem(
    body: OrdersIn, limits: dict[tuple[int, int], Envelope], participant_id: int
) -> str | None:
    """Why the orders break their operating envelopes `limits` (by (participant id, slot)),
    or None."""
    for s in sorted({o.slot for o in body.orders}):
        lim = limits.get((participant_id, s))
        if lim is None:
            continue
        imp, exp = lim
        buy = sum(o.quantity_kwh for o in body.orders if o.slot == s and o.side == "buy")
        sell = sum(o.quantity_kwh for o in body.orders if o.slot == s and o.side == "sell")
        if imp is not None and buy > imp * (1 + 1e-12):
            return (
                f"slot {s}: buy orders of {buy:g} kWh exceed the operating envelope's import "
                f"limit of {imp:g} kWh"
            )
        if exp is not None and sell > exp * (1 + 1e-12):
            return (
                f"slot {s}: sell orders of {sell:g} kWh exceed the operating envelope's export "
                f"limit of {exp:g} kWh"
            )
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class InFlight:
    """The Idempotency-Keys this server is processing now: a retry that arrives while the first
    request is still being processed gets 409 (on this server; on another server the retry waits
    for the first transaction and gets its stored result)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[int, str]] = set()

    def claim(self, participant_id: int, key: str) -> bool:
        with self._lock:
            if (participant_id, key) in self._keys:
                return False
            self._keys.add((participant_id, key))
            return True

    def release(self, participant_id: int, key: str) -> None:
        with self._lock:
            self._keys.discard((participant_id, key))


_STORED = select(
    idempotency.c.request_sha256, idempotency.c.response_code, idempotency.c.response_body
).where(
    and_(
        idempotency.c.participant_id == bindparam("pid"),
        idempotency.c.key == bindparam("key"),
    )
)
_GATE_CLOSED = select(gates.c.gate).where(gates.c.gate == bindparam("gate"))
_REPLACE = (
    update(orders)
    .where(
        and_(
            orders.c.participant_id == bindparam("pid"),
            orders.c.gate == bindparam("g"),
            orders.c.status == "active",
        )
    )
    .values(status="replaced")
    .returning(orders.c.id)
)
_INSERT = insert(orders).returning(orders.c.id)


def _stored(conn: Any, participant_id: int, key: str, digest: str) -> Outcome | None:
    """What a request with a used key gets (the stored result, or 422), None for a new key."""
    row = conn.execute(_STORED, {"pid": participant_id, "key": key}).first()
    if row is None:
        return None
    if row.request_sha256 != digest:
        return _problem(
            422,
            f"Idempotency-Key {key!r} was used for a different request; use a new key for new "
            "orders",
        )
    return Outcome(int(row.response_code), json.loads(row.response_body))


def submit(
    engine: Engine,
    setup: MarketSetup,
    participant_id: int,
    key: str | None,
    body: OrdersIn,
    now_s: float,
    in_flight: InFlight,
    writer: OrderWriter | None = None,
) -> Outcome:
    """Accept or refuse one submission (module docstring); with a `writer`, the submissions
    arriving together are stored in one transaction (`OrderWriter`)."""
    if not key:
        return _problem(400, "the Idempotency-Key header is required (any unique string ≤ 128)")
    if len(key) > 128:
        return _problem(400, "the Idempotency-Key header must be at most 128 characters")
    index = setup.index_of(participant_id)
    if index is None:
        return _problem(403, "this account is not a member of the market")
    if not in_flight.claim(participant_id, key):
        return _problem(
            409, f"a request with Idempotency-Key {key!r} is still being processed; retry"
        )
    try:
        digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        if writer is not None:
            return writer.submit(_checked(setup, participant_id, index, key, digest, body, now_s))
        try:
            return _decide(engine, setup, participant_id, index, key, digest, body, now_s)
        except IntegrityError:
            # the same key committed on another server meanwhile: its stored result
            with engine.connect() as conn:
                out = _stored(conn, participant_id, key, digest)
            if out is None:
                raise
            return out
    finally:
        in_flight.release(participant_id, key)


def _checked(
    setup: MarketSetup,
    participant_id: int,
    index: int,
    key: str,
    digest: str,
    body: OrdersIn,
    now_s: float,
) -> _Pending:
    """A submission with everything checked that needs no database: its gate, price, capacity
    and signature."""
    gate, problem = check_orders(setup, index, body, now_s)
    message = message_of(setup, index, body)
    signature = bytes.fromhex(body.signature)
    if problem is None and not verify(setup.public_keys[index], signature, message):
        problem = (
            "signature: does not verify over the canonical order message with this "
            "participant's public key (ledger.encoding.order_message, docs/live.md)"
        )
    closes = setup.calendar.gate_time_s(gate) if gate >= 0 else 0.0
    return _Pending(
        participant_id=participant_id,
        index=index,
        key=key,
        digest=digest,
        body=body,
        gate=gate,
        closes_at=setup.calendar.as_utc(closes).isoformat(),
        message=message,
        signature=signature,
        problem=problem,
        received_at=_now(),
    )


def _decide(
    engine: Engine,
    setup: MarketSetup,
    participant_id: int,
    index: int,
    key: str,
    digest: str,
    body: OrdersIn,
    now_s: float | None,
    checked: _Pending | None = None,
) -> Outcome:
    """Check, store and answer in one transaction: the order, the one it replaces and the
    key's stored response commit together (an acknowledged order is durable; a request that
    was never answered left nothing). `checked`: the checks done already."""
    if checked is None:
        assert now_s is not None
        checked = _checked(setup, participant_id, index, key, digest, body, now_s)
    gate, problem = checked.gate, checked.problem
    message, signature = checked.message, checked.signature
    now = checked.received_at
    with writing(engine, lock="shared") as conn:
        done = _stored(conn, participant_id, key, digest)
        if done is not None:
            return done
        if problem is None and conn.execute(_GATE_CLOSED, {"gate": gate}).first() is not None:
            problem = f"gate_slot {body.gate_slot}: the gate has closed"
        if problem is None:
            problem = _envelope_problem(conn, participant_id, body)
        if problem is not None:
            out = _problem(422, problem)
        else:
            replaced = conn.execute(_REPLACE, {"pid": participant_id, "g": gate}).scalar()
            new_id = conn.execute(
                _INSERT,
                {
                    "participant_id": participant_id,
                    "ledger_index": index,
                    "gate": gate,
                    "message": message,
                    "signature": signature,
                    "n_orders": len(body.orders),
                    "status": "active",
                    "idempotency_key": key,
                    "received_at": now,
                },
            ).scalar_one()
            accepted = OrderAccepted(
                order_id=int(new_id),
                gate_slot=body.gate_slot,
                gate_closes_at=checked.closes_at,
                n_orders=len(body.orders),
                replaces=None if replaced is None else int(replaced),
                message_sha256=hashlib.sha256(message).hexdigest(),
            )
            out = Outcome(201, accepted.model_dump())
        conn.execute(
            insert(idempotency).values(
                participant_id=participant_id,
                key=key,
                request_sha256=digest,
                status="done",
                response_code=out.status,
                response_body=json.dumps(out.body),
                claimed_at=now,
            )
        )
        return out


@dataclass(eq=False)
class _Pending:
    """A checked submission waiting for the writer: what it stores, and its answer."""

    participant_id: int
    index: int
    key: str
    digest: str
    body: OrdersIn
    gate: int
    closes_at: str
    message: bytes
    signature: bytes
    problem: str | None
    received_at: dt.datetime
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    error: BaseException | None = None


class OrderWriter:
    """Group commit: one thread stores the submissions that arrive together in one transaction.

    An order is acknowledged only after a durable commit (`synchronous = FULL` on SQLite: an
    fsync), and the database takes one writer at a time, so committing each order on its own
    makes the writers queue for the lock and the disk. The request threads check a submission
    (price, capacity, gate, signature: CPU work) and hand it here; the writer takes everything
    waiting, looks up the keys, gates and envelopes of the whole batch in one query each, stores
    the orders, the ones they replace and the keys' responses with a few statements, commits once
    and answers every request. A batch that meets another server's commit of the same key
    (IntegrityError) is stored again one submission at a time (`_decide`)."""

    MAX_BATCH = 256

    def __init__(self, engine: Engine, setup: MarketSetup) -> None:
        self.engine = engine
        self.setup = setup
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peergrid-orders", daemon=True)
        self._thread.start()
        self.batches = 0
        self.stored = 0

    def submit(self, p: _Pending, timeout_s: float = 60.0) -> Outcome:
        """Queue a checked submission and wait for its answer."""
        self._queue.put(p)
        if not p.done.wait(timeout_s):
            raise TimeoutError("the order writer did not answer")
        if p.error is not None:
            raise p.error
        assert p.outcome is not None
        return p.outcome

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        later: list[_Pending] = []
        while not self._stop.is_set():
            batch, later = later, []
            if not batch:
                try:
                    batch.append(self._queue.get(timeout=0.2))
                except queue.Empty:
                    continue
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # two submissions replacing each other's order: the later one waits for the next batch
            now_batch: list[_Pending] = []
            seen: set[tuple[int, int]] = set()
            for p in batch:
                slot = (p.participant_id, p.gate)
                if slot in seen:
                    later.append(p)
                else:
                    seen.add(slot)
                    now_batch.append(p)
            try:
                try:
                    out = self._write(now_batch)
                except IntegrityError:
                    out = [
                        _decide(
                            self.engine,
                            self.setup,
                            p.participant_id,
                            p.index,
                            p.key,
                            p.digest,
                            p.body,
                            None,
                            checked=p,
                        )
                        for p in now_batch
                    ]
            except BaseException as e:  # the database failed: every request of the batch hears it
                for p in now_batch:
                    p.error = e
                    p.done.set()
                continue
            self.batches += 1
            self.stored += len(now_batch)
            for p, o in zip(now_batch, out, strict=True):
                p.outcome = o
                p.done.set()

    def _write(self, batch: list[_Pending]) -> list[Outcome]:
        i = idempotency.c
        with writing(self.engine, lock="shared") as conn:
            keys = [(p.participant_id, p.key) for p in batch]
            stored = {
                (int(r.participant_id), r.key): r
                for r in conn.execute(
                    select(
                        i.participant_id,
                        i.key,
                        i.request_sha256,
                        i.response_code,
                        i.response_body,
                    ).where(tuple_(i.participant_id, i.key).in_(keys))
                )
            }
            gates_ = sorted({p.gate for p in batch if p.problem is None})
            closed = (
                {
                    int(g)
                    for g in conn.execute(
                        select(gates.c.gate).where(gates.c.gate.in_(gates_))
                    ).scalars()
                }
                if gates_
                else set()
            )
            limits = _envelopes(
                conn,
                {
                    (p.participant_id, o.slot)
                    for p in batch
                    if p.problem is None
                    for o in p.body.orders
                },
            )
            out: list[Outcome | None] = [None] * len(batch)
            accepted: list[int] = []
            for k, p in enumerate(batch):
                old = stored.get((p.participant_id, p.key))
                if old is not None:
                    out[k] = (
                        Outcome(int(old.response_code), json.loads(old.response_body))
                        if old.request_sha256 == p.digest
                        else _problem(
                            422,
                            f"Idempotency-Key {p.key!r} was used for a different request; use a "
                            "new key for new orders",
                        )
                    )
                    continue
                problem = p.problem
                if problem is None and p.gate in closed:
                    problem = f"gate_slot {p.body.gate_slot}: the gate has closed"
                if problem is None:
                    problem = envelope_problem(p.body, limits, p.participant_id)
                if problem is not None:
                    out[k] = _problem(422, problem)
                else:
                    accepted.append(k)
            if accepted:
                o = orders.c
                replaced = {
                    (int(r.participant_id), int(r.gate)): int(r.id)
                    for r in conn.execute(
                        update(orders)
                        .where(
                            and_(
                                o.status == "active",
                                tuple_(o.participant_id, o.gate).in_(
                                    [(batch[k].participant_id, batch[k].gate) for k in accepted]
                                ),
                            )
                        )
                        .values(status="replaced")
                        .returning(o.id, o.participant_id, o.gate)
                    )
                }
                ids = (
                    conn.execute(
                        insert(orders).returning(o.id, sort_by_parameter_order=True),
                        [
                            {
                                "participant_id": batch[k].participant_id,
                                "ledger_index": batch[k].index,
                                "gate": batch[k].gate,
                                "message": batch[k].message,
                                "signature": batch[k].signature,
                                "n_orders": len(batch[k].body.orders),
                                "status": "active",
                                "idempotency_key": batch[k].key,
                                "received_at": batch[k].received_at,
                            }
                            for k in accepted
                        ],
                    )
                    .scalars()
                    .all()
                )
                for k, new_id in zip(accepted, ids, strict=True):
                    p = batch[k]
                    prev = replaced.get((p.participant_id, p.gate))
                    out[k] = Outcome(
                        201,
                        OrderAccepted(
                            order_id=int(new_id),
                            gate_slot=p.body.gate_slot,
                            gate_closes_at=p.closes_at,
                            n_orders=len(p.body.orders),
                            replaces=prev,
                            message_sha256=hashlib.sha256(p.message).hexdigest(),
                        ).model_dump(),
                    )
            new_keys = [
                {
                    "participant_id": p.participant_id,
                    "key": p.key,
                    "request_sha256": p.digest,
                    "status": "done",
                    "response_code": out[k].status,  # type: ignore[union-attr]
                    "response_body": json.dumps(out[k].body),  # type: ignore[union-attr]
                    "claimed_at": p.received_at,
                }
                for k, p in enumerate(batch)
                if (p.participant_id, p.key) not in stored
            ]
            if new_keys:
                conn.execute(insert(idempotency), new_keys)
        return [o_ for o_ in out if o_ is not None]
