"""Accepting a participant's signed orders (`POST /v1/orders`, docs/live.md "Orders").

A submission is one participant's orders of one gate closure, the canonical message of
`ledger.encoding.order_message` signed with its Ed25519 key: the server rebuilds the message from
the JSON body and verifies the signature, so the bytes the ledger logs at the gate are exactly
the ones the participant signed. A later submission for the same gate replaces the earlier one
(until the gate closes).

Every submission carries an `Idempotency-Key` header. The key is claimed in its own transaction
("in-flight"), the checks run, and the order and the stored response are written in a second
transaction that holds the clock's shared lock (so the gate cannot close between the check and
the write) — the order is acknowledged only after that commit. A retry with the same key and
body gets the stored response; with another body 422; while the first is in flight 409. A claim
older than `STALE_CLAIM_S` (its server died mid-request) is taken over by the retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import load_public_key, verify
from peergrid.markets.base import Side
from peergrid.server.db import writing
from peergrid.server.market import MarketSetup
from peergrid.server.schema import envelopes, gates, idempotency, orders

#: A claim on an idempotency key older than this was abandoned by a server that died [s].
STALE_CLAIM_S = 30.0
#: The most orders one submission may carry.
MAX_ORDERS = 1000


class OrderIn(BaseModel):
    """One order: buy or sell energy in a slot at a limit price."""

    model_config = ConfigDict(extra="forbid")

    slot: int = Field(ge=0, description="the delivery slot (0 = the market's first)")
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

    gate_slot: int = Field(description="the slot at whose start the gate closes")
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


def _envelope_problem(conn: Any, participant_id: int, body: OrdersIn) -> str | None:
    """Why the orders break the network operator's operating envelope, or None."""
    slots_ = sorted({o.slot for o in body.orders})
    e = envelopes.c
    rows = {
        int(r.slot): r
        for r in conn.execute(
            select(e.slot, e.import_limit_kwh, e.export_limit_kwh).where(
                and_(e.participant_id == participant_id, e.slot.in_(slots_))
            )
        )
    }
    for s in slots_:
        r = rows.get(s)
        if r is None:
            continue
        buy = sum(o.quantity_kwh for o in body.orders if o.slot == s and o.side == "buy")
        sell = sum(o.quantity_kwh for o in body.orders if o.slot == s and o.side == "sell")
        if r.import_limit_kwh is not None and buy > r.import_limit_kwh * (1 + 1e-12):
            return (
                f"slot {s}: buy orders of {buy:g} kWh exceed the operating envelope's import "
                f"limit of {r.import_limit_kwh:g} kWh"
            )
        if r.export_limit_kwh is not None and sell > r.export_limit_kwh * (1 + 1e-12):
            return (
                f"slot {s}: sell orders of {sell:g} kWh exceed the operating envelope's export "
                f"limit of {r.export_limit_kwh:g} kWh"
            )
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _claim(engine: Engine, participant_id: int, key: str, digest: str) -> Outcome | None:
    """Claim the idempotency key (None), or what the request gets instead."""
    i = idempotency.c
    now = _now()
    with writing(engine) as conn:
        row = conn.execute(
            select(
                i.request_sha256, i.status, i.response_code, i.response_body, i.claimed_at
            ).where(and_(i.participant_id == participant_id, i.key == key))
        ).first()
        if row is None:
            conn.execute(
                insert(idempotency).values(
                    participant_id=participant_id,
                    key=key,
                    request_sha256=digest,
                    status="in-flight",
                    claimed_at=now,
                )
            )
            return None
        if row.request_sha256 != digest:
            return _problem(
                422,
                f"Idempotency-Key {key!r} was used for a different request; use a new key for "
                "new orders",
            )
        if row.status == "done":
            return Outcome(int(row.response_code), json.loads(row.response_body))
        claimed = row.claimed_at if row.claimed_at.tzinfo else row.claimed_at.replace(tzinfo=dt.UTC)
        if (now - claimed).total_seconds() < STALE_CLAIM_S:
            return _problem(
                409, f"a request with Idempotency-Key {key!r} is still being processed; retry"
            )
        conn.execute(
            update(idempotency)
            .where(and_(i.participant_id == participant_id, i.key == key))
            .values(claimed_at=now)
        )
        return None


def _finish(conn: Any, participant_id: int, key: str, out: Outcome) -> Outcome:
    i = idempotency.c
    conn.execute(
        update(idempotency)
        .where(and_(i.participant_id == participant_id, i.key == key))
        .values(status="done", response_code=out.status, response_body=json.dumps(out.body))
    )
    return out


def submit(
    engine: Engine,
    setup: MarketSetup,
    participant_id: int,
    key: str | None,
    body: OrdersIn,
    now_s: float,
) -> Outcome:
    """Accept or refuse one submission (module docstring)."""
    if not key:
        return _problem(400, "the Idempotency-Key header is required (any unique string ≤ 128)")
    if len(key) > 128:
        return _problem(400, "the Idempotency-Key header must be at most 128 characters")
    index = setup.index_of(participant_id)
    if index is None:
        return _problem(403, "this account is not a member of the market")
    digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    early = _claim(engine, participant_id, key, digest)
    if early is not None:
        return early
    try:
        return _decide(engine, setup, participant_id, index, key, body, now_s)
    except Exception:
        # nothing was stored: release the claim so that a retry is processed afresh
        with writing(engine) as conn:
            i = idempotency.c
            conn.execute(
                delete(idempotency).where(
                    and_(i.participant_id == participant_id, i.key == key, i.status == "in-flight")
                )
            )
        raise


def _decide(
    engine: Engine,
    setup: MarketSetup,
    participant_id: int,
    index: int,
    key: str,
    body: OrdersIn,
    now_s: float,
) -> Outcome:
    gate, problem = check_orders(setup, index, body, now_s)
    message = message_of(setup, index, body)
    if problem is None:
        signature = bytes.fromhex(body.signature)
        if not verify(load_public_key(setup.genesis.public_keys[index]), signature, message):
            problem = (
                "signature: does not verify over the canonical order message with this "
                "participant's public key (ledger.encoding.order_message, docs/live.md)"
            )
    with writing(engine, lock="shared") as conn:
        if problem is None:
            closed = conn.execute(select(gates.c.gate).where(gates.c.gate == gate)).first()
            if closed is not None:
                problem = f"gate_slot {body.gate_slot}: the gate has closed"
        if problem is None:
            problem = _envelope_problem(conn, participant_id, body)
        if problem is not None:
            return _finish(conn, participant_id, key, _problem(422, problem))
        o = orders.c
        prev = conn.execute(
            select(o.id).where(
                and_(o.participant_id == participant_id, o.gate == gate, o.status == "active")
            )
        ).first()
        if prev is not None:
            conn.execute(update(orders).where(o.id == prev.id).values(status="replaced"))
        try:
            new_id = conn.execute(
                insert(orders)
                .values(
                    participant_id=participant_id,
                    ledger_index=index,
                    gate=gate,
                    message=message,
                    signature=bytes.fromhex(body.signature),
                    n_orders=len(body.orders),
                    status="active",
                    idempotency_key=key,
                    received_at=_now(),
                )
                .returning(o.id)
            ).scalar_one()
        except IntegrityError as e:  # pragma: no cover - the schema's constraints hold
            raise RuntimeError(f"cannot store the order ({e})") from e
        closes = setup.calendar.gate_time_s(gate)
        accepted = OrderAccepted(
            order_id=int(new_id),
            gate_slot=body.gate_slot,
            gate_closes_at=setup.calendar.as_utc(closes).isoformat(),
            n_orders=len(body.orders),
            replaces=None if prev is None else int(prev.id),
            message_sha256=hashlib.sha256(message).hexdigest(),
        )
        return _finish(conn, participant_id, key, Outcome(201, accepted.model_dump()))


def finite(x: float) -> bool:
    return math.isfinite(x)
