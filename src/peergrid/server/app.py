"""The live platform's HTTP API (FastAPI), docs/live.md.

Endpoints are plain `def` functions, so FastAPI runs them (and their database work) in its
thread pool, off the event loop. Accounts authenticate with their API token as a bearer token
(`server.admin`); a missing or unknown token is 401, a role that may not use an endpoint 403.
A participant reads and acts on its own orders, readings, commitments and bills only; the public
sees prices and community totals that passed disclosure control. The OpenAPI description is
served at `/openapi.json`; the interactive docs page is off (its assets would load from a CDN,
and the platform must work offline).

When the database runs a market, `create_app` starts its clock (`server.clock`) with the app
and stops it with the app, and so the MQTT subscriber of the meters' readings (`server.mqtt`)
when a broker is given, and the publisher of the WebSocket stream of market events
(`server.stream`, `GET /v1/stream`). The dashboard's pages are `server.dashboard`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine

from peergrid.server.admin import authenticate
from peergrid.server.clock import Clock, f64_array
from peergrid.server.dashboard import dashboard_router
from peergrid.server.db import current_revision, writing
from peergrid.server.market import MarketSetup, describe, load_market
from peergrid.server.mqtt import MeterSubscriber
from peergrid.server.orders import InFlight, OrdersIn, OrderWriter, submit
from peergrid.server.readings import ReadingRefused, ReadingsIn, ReadingsStored, store_readings
from peergrid.server.schema import (
    envelopes,
    gates,
    ledger_heads,
    market_state,
    meter_intervals,
    orders,
    participants,
    readings,
    slots,
)
from peergrid.server.stream import Broadcaster, stream_router

Account = dict[str, Any]

#: Worker threads of the endpoints (anyio's default is 40).
THREADS = 32


class Health(BaseModel):
    """The server answers and its database is reachable and migrated."""

    status: str
    database: str
    revision: str | None
    market: bool


class AccountOut(BaseModel):
    """The account a token belongs to."""

    id: int
    name: str
    role: str


class EnvelopeIn(BaseModel):
    """An operating envelope: what one participant may import and export in one slot."""

    slot: int = Field(ge=0, le=2**31 - 1)
    participant: str = Field(description="the participant's name")
    import_limit_kwh: float | None = Field(None, ge=0, allow_inf_nan=False)
    export_limit_kwh: float | None = Field(None, ge=0, allow_inf_nan=False)


class EnvelopesIn(BaseModel):
    """Envelopes to set (an existing one for the same slot and participant is replaced)."""

    envelopes: list[EnvelopeIn] = Field(min_length=1, max_length=10_000)


_bearer = HTTPBearer(auto_error=False)

_PROBLEM = {"description": "why the request was refused", "content": {"application/json": {}}}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def current_account(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Account:
    """The account of the request's bearer token; 401 without a valid one. (The dependencies
    are `async`: a cached answer costs no trip to the thread pool; a database lookup goes
    there.)"""
    found = None
    if credentials is not None:
        tokens: TokenCache = request.app.state.tokens
        found = tokens.get(credentials.credentials)
        if found is None:
            found = await run_in_threadpool(authenticate, _engine(request), credentials.credentials)
            if found is not None:
                tokens.put(credentials.credentials, found)
    if found is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="a valid API token is needed (Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


class TokenCache:
    """Accounts of recently seen tokens, for `TTL_S` seconds (an account is never changed in
    place: a new token is a new row), so a busy client costs one lookup a minute, not one a
    request."""

    TTL_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, Account]] = {}

    def get(self, token: str) -> Account | None:
        with self._lock:
            hit = self._seen.get(token)
        if hit is None or time.monotonic() - hit[0] > self.TTL_S:
            return None
        return hit[1]

    def put(self, token: str, account: Account) -> None:
        with self._lock:
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen[token] = (time.monotonic(), account)


def _role(*allowed: str) -> Callable[[Account], Awaitable[Account]]:
    async def check(who: Annotated[Account, Depends(current_account)]) -> Account:
        if who["role"] not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"this endpoint is for {' or '.join(allowed)} accounts, not {who['role']}",
            )
        return who

    return check


Participant = Annotated[Account, Depends(_role("participant"))]
Operator = Annotated[Account, Depends(_role("operator"))]
Grid = Annotated[Account, Depends(_role("network-operator", "operator"))]
Anyone = Annotated[Account, Depends(current_account)]


async def _setup(request: Request) -> MarketSetup:
    setup: MarketSetup | None = request.app.state.setup
    if setup is None:
        setup = await run_in_threadpool(load_market, _engine(request))
        if setup is None:
            raise HTTPException(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                detail="no market is open on this server (peergrid admin open-market)",
            )
        request.app.state.setup = setup
    return setup


Setup = Annotated[MarketSetup, Depends(_setup)]


def _range(lo: int | None, hi: int | None, n: int) -> tuple[int, int]:
    a = 0 if lo is None else max(lo, 0)
    b = n if hi is None else min(hi, n)
    return a, b


def _num(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def create_app(
    engine: Engine,
    *,
    now: Callable[[], float] = time.time,
    run_clock: bool = True,
    mqtt: tuple[str, int] | None = None,
) -> FastAPI:
    """The API on a migrated database; with `run_clock`, the market's clock runs with it; with
    `mqtt` (the broker's host and port), the meters' readings are taken over MQTT too
    (`server.mqtt`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # few worker threads: the endpoints' work is short and serialised on the database's
        # write lock anyway, and every extra runnable thread competes for the GIL
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        services = _Services(app, engine, now, run_clock, mqtt)
        setup = await run_in_threadpool(load_market, engine)
        if setup is not None:
            services.start(setup)
        else:  # a market opened later (peergrid admin open-market) starts them then
            services.watch()
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(
        title="peergrid",
        summary="A peer-to-peer energy community: orders, meter readings, settlement, ledger.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.tokens = TokenCache()
    app.state.in_flight = InFlight()
    app.state.writer = None
    revision = current_revision(engine)
    app.state.setup = None
    app.state.clock = None
    app.state.stream = None
    app.include_router(stream_router)  # GET /v1/stream (WebSocket), server.stream
    app.include_router(dashboard_router)  # the dashboard's pages, server.dashboard
    app.state.mqtt = None

    # --- the platform ---------------------------------------------------------------------------

    @app.get("/v1/health", response_model=Health, tags=["platform"])
    def health() -> Health:
        """Whether the server and its database answer, the schema's revision, and whether a
        market is open."""
        with engine.connect() as conn:
            has = conn.execute(select(market_state.c.id)).first() is not None
        return Health(status="ok", database=engine.dialect.name, revision=revision, market=has)

    @app.get(
        "/v1/me",
        response_model=AccountOut,
        tags=["accounts"],
        responses={401: {"description": "no or an unknown API token"}},
    )
    def me(who: Anyone) -> AccountOut:
        """The account the request's token belongs to."""
        return AccountOut(**who)

    # --- public -----------------------------------------------------------------------------------

    @app.get("/v1/market", tags=["public"])
    def market_info(setup: Setup) -> dict[str, Any]:
        """The market: its scenario, mechanism, gate rule, calendar, price floor and cap, the
        operator's key and its members."""
        return describe(setup)

    @app.get("/v1/clock", tags=["public"])
    def clock_info(setup: Setup) -> dict[str, Any]:
        """Where the market's clock stands: the next step, the next gate and its slots."""
        cal = setup.calendar
        times, kinds, _index = cal.steps()
        with engine.connect() as conn:
            nxt = int(conn.execute(select(market_state.c.next_step)).scalar_one())
        t = now()
        gate_next = int(
            np.searchsorted(
                cal.start_unix_s + cal.gates.gate_slot * cal.slot_seconds, t, side="right"
            )
        )
        out: dict[str, Any] = {
            "now": cal.as_utc(t).isoformat(),
            "next_step": nxt,
            "n_steps": int(times.size),
            "finished": nxt >= times.size,
            # -1 before the market starts, n_slots once it has ended
            "current_slot": int(
                np.clip(np.floor((t - cal.start_unix_s) / cal.slot_seconds), -1, cal.n_slots)
            ),
        }
        if nxt < times.size:
            out["next_step_at"] = cal.as_utc(float(times[nxt])).isoformat()
            out["next_step_kind"] = "gate" if int(kinds[nxt]) == 0 else "settle"
        if gate_next < cal.gates.n_gates:
            out["next_gate"] = {
                "gate_slot": int(cal.gates.gate_slot[gate_next]),
                "closes_at": cal.as_utc(cal.gate_time_s(gate_next)).isoformat(),
                "first_slot": int(cal.gates.first_slot[gate_next]),
                "stop_slot": int(cal.gates.stop_slot[gate_next]),
            }
        return out

    @app.get("/v1/slots", tags=["public"])
    def slots_public(
        setup: Setup,
        from_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
        to_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    ) -> list[dict[str, Any]]:
        """Each cleared slot in [from_slot, to_slot): its prices, the traded volume and the
        community's metered net energy where disclosure control releases them."""
        a, b = _range(from_slot, to_slot, setup.calendar.n_slots)
        c = slots.c
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    c.slot,
                    c.gate,
                    c.clearing_price,
                    c.buy_price,
                    c.sell_price,
                    c.traded_public_kwh,
                    c.traded_status,
                    c.n_orders,
                    c.settled_at,
                    c.net_public_kwh,
                    c.net_status,
                    gates.c.status.label("gate_status"),
                )
                .join(gates, gates.c.gate == c.gate)
                .where(and_(c.slot >= a, c.slot < b))
                .order_by(c.slot)
            ).all()
        cal = setup.calendar
        return [
            {
                "slot": r.slot,
                "start": cal.as_utc(cal.slot_start_s(r.slot)).isoformat(),
                "status": "settled" if r.settled_at is not None else r.gate_status,
                "cleared_by": "retail fallback" if r.gate_status == "fallback" else "mechanism",
                "clearing_price": _num(r.clearing_price),
                "buy_price": _num(r.buy_price),
                "sell_price": _num(r.sell_price),
                "retail_price": float(setup.market.retail_price[r.slot]),
                "feed_in_price": float(setup.market.feed_in_price[r.slot]),
                "traded_kwh": _num(r.traded_public_kwh),
                "traded_status": r.traded_status,
                "n_orders": r.n_orders,
                "community_net_kwh": _num(r.net_public_kwh),
                "community_net_status": r.net_status,
            }
            for r in rows
        ]

    @app.get("/v1/ledger/head", tags=["public"])
    def ledger_head() -> dict[str, Any]:
        """The newest signed tree head: tree size, slot, the head's bytes and the operator's
        signature (hex), for anyone to check against the operator's key."""
        h = ledger_heads.c
        with engine.connect() as conn:
            r = conn.execute(
                select(h.tree_size, h.slot, h.head, h.signature)
                .order_by(h.tree_size.desc())
                .limit(1)
            ).first()
        if r is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the ledger has no head yet")
        return {
            "tree_size": int(r.tree_size),
            "slot": int(r.slot),
            "root": bytes(r.head)[-32:].hex(),
            "head": bytes(r.head).hex(),
            "signature": bytes(r.signature).hex(),
        }

    # --- participants -----------------------------------------------------------------------------

    @app.post(
        "/v1/orders",
        tags=["participant"],
        status_code=201,
        responses={400: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM},
    )
    def post_orders(
        body: OrdersIn,
        who: Participant,
        setup: Setup,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        """Submit signed orders for one gate (docs/live.md "Orders"); the response is sent
        after the order is durably stored. A retry with the same Idempotency-Key gets the same
        response."""
        out = submit(
            engine,
            setup,
            int(who["id"]),
            idempotency_key,
            body,
            now(),
            app.state.in_flight,
            app.state.writer,
        )
        return JSONResponse(out.body, status_code=out.status)

    @app.get("/v1/orders", tags=["participant"])
    def get_orders(
        who: Participant,
        setup: Setup,
        gate_slot: Annotated[int | None, Query(ge=-(2**31), le=2**31 - 1)] = None,
    ) -> list[dict[str, Any]]:
        """The account's own submissions (newest first), optionally of one gate."""
        o = orders.c
        q = select(o.id, o.gate, o.n_orders, o.status, o.received_at, o.message).where(
            o.participant_id == who["id"]
        )
        if gate_slot is not None:
            hit = np.flatnonzero(setup.calendar.gates.gate_slot == gate_slot)
            q = q.where(o.gate == (int(hit[0]) if hit.size else -1))
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(o.id.desc()).limit(500)).all()
        return [_order_json(setup, r) for r in rows]

    @app.get("/v1/orders/{order_id}", tags=["participant"], responses={404: _PROBLEM})
    def get_order(
        order_id: Annotated[int, Path(ge=1, le=2**31 - 1)], who: Participant, setup: Setup
    ) -> dict[str, Any]:
        """One of the account's own submissions (another's is not found)."""
        o = orders.c
        with engine.connect() as conn:
            r = conn.execute(
                select(o.id, o.gate, o.n_orders, o.status, o.received_at, o.message).where(
                    and_(o.id == order_id, o.participant_id == who["id"])
                )
            ).first()
        if r is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no order {order_id} of yours")
        return _order_json(setup, r)

    @app.post(
        "/v1/readings",
        tags=["participant"],
        response_model=ReadingsStored,
        responses={403: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM},
    )
    def post_readings(body: ReadingsIn, who: Participant, setup: Setup) -> ReadingsStored:
        """The account's smart meter reports its registers at slot boundaries (docs/live.md
        "Meter data"); a batch is stored whole or refused whole."""
        try:
            return store_readings(engine, setup, int(who["id"]), body, now())
        except ReadingRefused as e:
            raise HTTPException(e.status, detail=e.detail) from e

    @app.get("/v1/readings", tags=["participant"])
    def get_readings(
        who: Participant,
        setup: Setup,
        from_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
        to_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    ) -> dict[str, Any]:
        """The account's raw readings (registers as received) and the validated interval
        values its slots settled on, with their quality."""
        a, b = _range(from_slot, to_slot, setup.calendar.n_slots + 1)
        r, m = readings.c, meter_intervals.c
        with engine.connect() as conn:
            raw = conn.execute(
                select(
                    r.boundary,
                    r.import_register_kwh,
                    r.export_register_kwh,
                    r.unit,
                    r.source,
                    r.late,
                    r.received_at,
                )
                .where(and_(r.participant_id == who["id"], r.boundary >= a, r.boundary < b))
                .order_by(r.boundary)
            ).all()
            iv = conn.execute(
                select(m.slot, m.net_kwh, m.quality)
                .where(and_(m.participant_id == who["id"], m.slot >= a, m.slot < b))
                .order_by(m.slot)
            ).all()
        cal = setup.calendar
        return {
            "raw": [
                {
                    "timestamp": cal.as_utc(cal.slot_start_s(x.boundary)).isoformat(),
                    "boundary": x.boundary,
                    "import_register_kwh": x.import_register_kwh,
                    "export_register_kwh": x.export_register_kwh,
                    "unit": x.unit,
                    "source": x.source,
                    "late": bool(x.late),
                }
                for x in raw
            ],
            "intervals": [{"slot": x.slot, "net_kwh": x.net_kwh, "quality": x.quality} for x in iv],
        }

    @app.get("/v1/commitments", tags=["participant"])
    def get_commitments(
        who: Participant,
        setup: Setup,
        from_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
        to_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    ) -> list[dict[str, Any]]:
        """The account's commitment in each cleared slot, and once settled its metered
        energy, deviation and cost against the retailer-only baseline."""
        i = setup.index_of(int(who["id"]))
        if i is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not a member of the market")
        a, b = _range(from_slot, to_slot, setup.calendar.n_slots)
        c = slots.c
        with engine.connect() as conn:
            rows = conn.execute(
                select(c.slot, c.committed, c.metered, c.cost, c.baseline_cost, c.settled_at)
                .where(and_(c.slot >= a, c.slot < b))
                .order_by(c.slot)
            ).all()
        out = []
        for r in rows:
            committed = float(f64_array(r.committed)[i])
            row: dict[str, Any] = {
                "slot": r.slot,
                "committed_kwh": committed,
                "settled": r.settled_at is not None,
            }
            if r.metered is not None:
                metered = float(f64_array(r.metered)[i])
                row.update(
                    metered_kwh=metered,
                    deviation_kwh=metered - committed,
                    cost=float(f64_array(r.cost)[i]),
                    baseline_cost=float(f64_array(r.baseline_cost)[i]),
                )
            out.append(row)
        return out

    @app.get("/v1/bill", tags=["participant"])
    def get_bill(who: Participant, setup: Setup) -> dict[str, Any]:
        """The account's bill so far: energy cost in the market against the retailer-only
        baseline over the settled slots."""
        i = setup.index_of(int(who["id"]))
        if i is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not a member of the market")
        c = slots.c
        with engine.connect() as conn:
            rows = conn.execute(
                select(c.cost, c.baseline_cost).where(c.settled_at.is_not(None))
            ).all()
        cost = sum(float(f64_array(r.cost)[i]) for r in rows)
        base = sum(float(f64_array(r.baseline_cost)[i]) for r in rows)
        return {
            "currency": setup.genesis.currency,
            "slots_settled": len(rows),
            "energy_cost": cost,
            "baseline_cost": base,
            "savings": base - cost,
        }

    # --- the network operator ---------------------------------------------------------------

    @app.put("/v1/envelopes", tags=["network operator"], responses={422: _PROBLEM})
    def put_envelopes(body: EnvelopesIn, who: Grid, setup: Setup) -> dict[str, int]:
        """Set operating envelopes: per slot and participant, the most it may import and
        export [kWh in the slot]; orders beyond them are refused."""
        by_name = {
            n: int(p) for n, p in zip(setup.names, setup.participant_id.tolist(), strict=True)
        }
        rows = []
        for k, e in enumerate(body.envelopes):
            if e.participant not in by_name:
                raise HTTPException(
                    422, detail=f"envelopes[{k}].participant: no member {e.participant!r}"
                )
            if e.slot >= setup.calendar.n_slots:
                raise HTTPException(
                    422, detail=f"envelopes[{k}].slot: {e.slot} is after the market's last slot"
                )
            rows.append((e.slot, by_name[e.participant], e.import_limit_kwh, e.export_limit_kwh))
        import datetime as dt

        with writing(engine, lock="shared") as conn:
            for s, p, _imp, _exp in rows:
                conn.execute(
                    envelopes.delete().where(
                        and_(envelopes.c.slot == s, envelopes.c.participant_id == p)
                    )
                )
            conn.execute(
                envelopes.insert(),
                [
                    {
                        "slot": s,
                        "participant_id": p,
                        "import_limit_kwh": imp,
                        "export_limit_kwh": exp,
                        "set_at": dt.datetime.now(dt.UTC),
                    }
                    for s, p, imp, exp in rows
                ],
            )
        return {"set": len(rows)}

    @app.get("/v1/envelopes", tags=["network operator"])
    def get_envelopes(
        who: Anyone,
        setup: Setup,
        from_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
        to_slot: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    ) -> list[dict[str, Any]]:
        """Operating envelopes: all of them for the network operator and the operator, a
        participant's own for a participant."""
        a, b = _range(from_slot, to_slot, setup.calendar.n_slots)
        e = envelopes.c
        q = select(e.slot, e.participant_id, e.import_limit_kwh, e.export_limit_kwh).where(
            and_(e.slot >= a, e.slot < b)
        )
        if who["role"] == "participant":
            q = q.where(e.participant_id == who["id"])
        names = dict(zip(setup.participant_id.tolist(), setup.names, strict=True))
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(e.slot, e.participant_id)).all()
        return [
            {
                "slot": r.slot,
                "participant": names.get(r.participant_id, str(r.participant_id)),
                "import_limit_kwh": r.import_limit_kwh,
                "export_limit_kwh": r.export_limit_kwh,
            }
            for r in rows
        ]

    # --- the operator -----------------------------------------------------------------------

    @app.get("/v1/participants", tags=["operator"])
    def get_participants(who: Operator) -> list[dict[str, Any]]:
        """Every account (no tokens)."""
        p = participants.c
        with engine.connect() as conn:
            rows = conn.execute(select(p.id, p.name, p.role, p.public_key).order_by(p.id)).all()
        return [
            {
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "public_key": None if r.public_key is None else bytes(r.public_key).hex(),
            }
            for r in rows
        ]

    @app.get("/v1/operator/status", tags=["operator"])
    def operator_status(who: Operator, setup: Setup) -> dict[str, Any]:
        """The clock, the ledger and the meter data's quality."""
        with engine.connect() as conn:
            nxt = int(conn.execute(select(market_state.c.next_step)).scalar_one())
            quality: dict[str, int] = dict(
                conn.execute(
                    select(meter_intervals.c.quality, func.count()).group_by(
                        meter_intervals.c.quality
                    )
                ).all()
            )
            late = conn.execute(select(func.count()).where(readings.c.late.is_(True))).scalar_one()
            n_raw = conn.execute(select(func.count()).select_from(readings)).scalar_one()
            gate_status: dict[str, int] = dict(
                conn.execute(select(gates.c.status, func.count()).group_by(gates.c.status)).all()
            )
            reasons = [
                {"gate": r.gate, "reason": r.reason}
                for r in conn.execute(
                    select(gates.c.gate, gates.c.reason)
                    .where(gates.c.status == "fallback")
                    .order_by(gates.c.gate.desc())
                    .limit(20)
                )
            ]
            h = ledger_heads.c
            head = conn.execute(
                select(h.tree_size, h.slot, h.head).order_by(h.tree_size.desc()).limit(1)
            ).first()
        clock = app.state.clock
        return {
            "clock": {
                "next_step": nxt,
                "n_steps": int(setup.calendar.steps()[0].size),
                "running_here": clock is not None,
                "errors": [] if clock is None else list(clock.errors),
            },
            "gates": {
                "cleared": int(gate_status.get("cleared", 0)),
                "fallback": int(gate_status.get("fallback", 0)),
                "fallback_reasons": reasons,
            },
            "ledger": None
            if head is None
            else {
                "tree_size": int(head.tree_size),
                "slot": int(head.slot),
                "root": bytes(head.head)[-32:].hex(),
            },
            "meter_data": {
                "raw_readings": int(n_raw),
                "late_readings": int(late),
                "intervals": {k: int(v) for k, v in quality.items()},
            },
            "mqtt": None if app.state.mqtt is None else app.state.mqtt.counts.snapshot(),
            "stream": None if app.state.stream is None else app.state.stream.status(),
        }

    return app


class _Services:
    """What runs beside the API while a market is open: the stream's publisher (first: it
    publishes from the step the clock stands at), the clock and the MQTT subscriber. Started
    with the app, or by a watcher when the market is opened after the server started."""

    def __init__(
        self,
        app: FastAPI,
        engine: Engine,
        now: Callable[[], float],
        run_clock: bool,
        mqtt: tuple[str, int] | None,
    ) -> None:
        self.app, self.engine, self.now = app, engine, now
        self.run_clock, self.mqtt = run_clock, mqtt
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._running: list[Any] = []

    def start(self, setup: MarketSetup) -> None:
        with self._lock:
            if self._running or self._stop.is_set():
                return
            app = self.app
            app.state.setup = setup
            writer = OrderWriter(self.engine, setup)
            app.state.writer = writer
            self._running.append(writer)
            stream = Broadcaster(self.engine, setup)
            stream.start()
            app.state.stream = stream
            self._running.append(stream)
            if self.run_clock:
                clock = Clock(self.engine, setup, now=self.now, on_event=stream.on_event)
                clock.start()
                app.state.clock = clock
                self._running.append(clock)
            if self.mqtt is not None:
                meters = MeterSubscriber(
                    self.engine, setup, self.mqtt[0], self.mqtt[1], now=self.now
                )
                meters.start()
                app.state.mqtt = meters
                self._running.append(meters)

    def watch(self, every_s: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    setup = load_market(self.engine)
                except Exception:  # the database is away for a moment: look again
                    continue
                if setup is not None:
                    self.start(setup)
                    return

        self._watcher = threading.Thread(target=loop, name="peergrid-market-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        with self._lock:
            for service in reversed(self._running):  # the subscriber, the clock, the stream
                service.stop()
            self._running.clear()


def _order_json(setup: MarketSetup, r: Any) -> dict[str, Any]:
    from peergrid.ledger.encoding import read_order_message

    m = read_order_message(bytes(r.message))
    return {
        "order_id": r.id,
        "gate_slot": int(setup.calendar.gates.gate_slot[r.gate]),
        "status": r.status,
        "received_at": r.received_at.isoformat() if r.received_at is not None else None,
        "orders": [
            {
                "slot": int(s),
                "side": "buy" if int(sd) == 0 else "sell",
                "quantity_kwh": float(q),
                "limit_price": float(p),
            }
            for s, sd, q, p in zip(m.slot, m.side, m.quantity_kwh, m.limit_price, strict=True)
        ],
    }
