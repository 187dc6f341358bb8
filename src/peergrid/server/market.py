"""The one live market a platform database runs: opening it, and loading it in a server.

`open_market` fixes what cannot change once trading starts: the members (every registered
participant, in registration order: their ledger indices), the GENESIS with their public keys,
a fresh operator key, the scenario (as resolved TOML text, its `[live] first_slot` the slot of
its period the market's slot 0 is) and the wall-clock calendar. It writes the GENESIS and a
first signed head to the database ledger and the clock's state, in one transaction.
`load_market` reads it back into what the clock and the API need.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import secrets
import time
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from numpy.typing import NDArray
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from peergrid.engine.ledger import minor_exponent
from peergrid.engine.live import (
    Calendar,
    JournalState,
    LiveMarket,
    calendar_for,
    day_starts_of,
    market_for,
    scenario_grid,
    window_problem,
)
from peergrid.errors import InputError
from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import generate_private_key, load_public_key, public_bytes
from peergrid.ledger.log import Ledger
from peergrid.ledger.postings import Accrual
from peergrid.ledger.store import MemoryStore
from peergrid.scenario.load import parse_scenario
from peergrid.scenario.resolve import to_toml
from peergrid.scenario.schema import Scenario
from peergrid.server.ledger_store import insert_ledger
from peergrid.server.schema import (
    ledger_meta,
    market,
    market_members,
    market_state,
    participants,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class MarketSetup:
    """A live market as a server process holds it (read once; nothing here changes).

    Attributes:
        scenario: the market's scenario (its `[live] first_slot`: the slot of its period that
            is the market's slot 0); calendar, market: its clock and its clearing.
        genesis, operator_key: the ledger's GENESIS and the key that signs its heads.
        daily_charge, day_starts: the retailer's daily charge and the slots it is posted on.
        participant_id: the account id of each ledger index, (P,).
        connection_kw: each member's connection capacity, (P,) [kW].
        names: each member's name.
    """

    scenario: Scenario
    calendar: Calendar
    market: LiveMarket
    genesis: enc.Genesis
    operator_key: Ed25519PrivateKey
    daily_charge: float
    day_starts: IntArray
    participant_id: IntArray
    connection_kw: FloatArray
    names: tuple[str, ...]

    @property
    def n_participants(self) -> int:
        return int(self.participant_id.size)

    def index_of(self, participant_id: int) -> int | None:
        """The ledger index of an account (None: not a member)."""
        hit = np.flatnonzero(self.participant_id == participant_id)
        return int(hit[0]) if hit.size else None

    @functools.cached_property
    def public_keys(self) -> tuple[Ed25519PublicKey, ...]:
        """Each member's public key, loaded once (orders are verified against them)."""
        return tuple(load_public_key(k) for k in self.genesis.public_keys)

    @property
    def price_floor(self) -> float:
        return self.scenario.live.price_floor_per_kwh

    @property
    def price_cap(self) -> float:
        return self.scenario.live.price_cap_per_kwh


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_ledger(conn: Connection, store: MemoryStore) -> None:
    """Insert the blocks and heads a step wrote to its memory store, on `conn`."""
    insert_ledger(conn, *store.taken())


def open_market(
    engine: Engine,
    scenario: Scenario,
    *,
    start_unix_s: float | None = None,
    slot_seconds: float | None = None,
    n_slots: int | None = None,
    first_slot: int | None = None,
) -> MarketSetup:
    """Open the database's market for `scenario` (module docstring).

    `start_unix_s`: when slot 0 starts (default: the first whole slot after every gate of slot
    0 is at least one slot away); `slot_seconds`: wall-clock slot length (default: the
    scenario's `[live] slot_seconds`, else real time); `n_slots`: slots to run (default: the
    rest of the scenario's period); `first_slot`: the slot of the scenario's period that is the
    market's slot 0 (default: the scenario's `[live] first_slot`).

    Raises:
        InputError: a market is open already, no participant is registered, or a setting is
            out of range.
    """
    live = scenario.live
    grid = scenario_grid(scenario)
    wall = slot_seconds or live.slot_seconds or grid.dt_h * 3600.0
    if not wall > 0:
        raise InputError("slot seconds must be positive", source="--slot-seconds")
    first = live.first_slot if first_slot is None else first_slot
    problem = window_problem(grid.n_slots, first, 1)
    if problem is not None:
        raise InputError(problem, source="--first-slot")
    n = n_slots if n_slots is not None else grid.n_slots - first
    problem = window_problem(grid.n_slots, first, n)
    if problem is not None:
        source = "--slots" if not 1 <= n <= grid.n_slots else "--first-slot"
        raise InputError(problem, source=source)
    if first != live.first_slot:
        live = live.model_copy(update={"first_slot": first})
        scenario = scenario.model_copy(update={"live": live})
    settle_after = live.settle_after_s if live.settle_after_s is not None else 0.25 * wall
    probe = calendar_for(scenario, 0.0, wall, n, settle_after, first_slot=first)
    lead = max(0, -int(probe.gates.gate_slot[0]))  # slots between slot 0's gate and slot 0
    if start_unix_s is None:
        start_unix_s = (math.floor(time.time() / wall) + lead + 2) * wall
    with engine.begin() as conn:
        if conn.execute(select(market.c.id)).first() is not None:
            raise InputError("this database runs a market already", source="--db")
        rows = conn.execute(
            select(participants.c.id, participants.c.name, participants.c.public_key)
            .where(participants.c.role == "participant")
            .order_by(participants.c.id)
        ).all()
        if not rows:
            raise InputError(
                "no participant is registered: add them first (peergrid admin add-participant)",
                source="--db",
            )
        op = generate_private_key()
        currency = scenario.tariff.currency
        genesis = enc.Genesis(
            ledger_id=secrets.token_bytes(enc.LEDGER_ID_SIZE),
            operator_public_key=public_bytes(op),
            currency=currency,
            minor_exponent=minor_exponent(currency),
            start_unix_s=round(start_unix_s),
            slot_seconds=round(grid.dt_h * 3600),
            n_slots=n,
            scenario=scenario.name,
            names=tuple(r.name for r in rows),
            public_keys=tuple(bytes(r.public_key) for r in rows),
        )
        store = MemoryStore()
        ledger = Ledger.create(store, operator_key=op, genesis=genesis)
        ledger.sign_head(-1)
        ledger.flush()
        conn.execute(insert(ledger_meta), [{"key": k, "value": v} for k, v in store.meta().items()])
        write_ledger(conn, store)
        raw_key = op.private_bytes_raw()
        conn.execute(
            insert(market).values(
                id=1,
                scenario_toml=to_toml(scenario),
                genesis=genesis.encode(),
                operator_key=raw_key,
                start_unix_s=float(start_unix_s),
                slot_seconds=float(wall),
                settle_after_s=float(settle_after),
                n_slots=n,
                created_at=_now(),
            )
        )
        conn.execute(
            insert(market_members),
            [
                {"ledger_index": i, "participant_id": r.id, "connection_kw": live.connection_kw}
                for i, r in enumerate(rows)
            ],
        )
        state = JournalState(
            ledger.snapshot(), Accrual(len(rows), genesis.minor_exponent).state(), 0
        )
        conn.execute(
            insert(market_state).values(
                id=1, next_step=0, journal=state.encode(), updated_at=_now()
            )
        )
    setup = load_market(engine)
    assert setup is not None
    return setup


def load_market(engine: Engine) -> MarketSetup | None:
    """The database's market, or None when none is open."""
    with engine.connect() as conn:
        row = conn.execute(select(market)).first()
        if row is None:
            return None
        members = conn.execute(
            select(
                market_members.c.ledger_index,
                market_members.c.participant_id,
                market_members.c.connection_kw,
            ).order_by(market_members.c.ledger_index)
        ).all()
    scenario = parse_scenario(tomllib.loads(row.scenario_toml), "the market's scenario")
    genesis = enc.read_genesis(enc.Reader(bytes(row.genesis)))
    first = scenario.live.first_slot
    calendar = calendar_for(
        scenario,
        row.start_unix_s,
        row.slot_seconds,
        row.n_slots,
        row.settle_after_s,
        first_slot=first,
    )
    return MarketSetup(
        scenario=scenario,
        calendar=calendar,
        market=market_for(scenario, len(members), first_slot=first),
        genesis=genesis,
        operator_key=Ed25519PrivateKey.from_private_bytes(bytes(row.operator_key)),
        daily_charge=scenario.tariff.daily_charge,
        day_starts=day_starts_of(scenario, row.n_slots, first_slot=first),
        participant_id=np.array([m.participant_id for m in members], dtype=np.int64),
        connection_kw=np.array([m.connection_kw for m in members], dtype=np.float64),
        names=genesis.names,
    )


def describe(setup: MarketSetup) -> dict[str, Any]:
    """What anyone may know of the market (`GET /v1/market`)."""
    cal, g = setup.calendar, setup.genesis
    return {
        "ledger_id": g.ledger_id.hex(),
        "scenario": setup.scenario.name,
        "mechanism": setup.market.name,
        "gate_closure": str(cal.gates.closure),
        "deviation_rule": setup.market.deviation_rule,
        "currency": g.currency,
        "start": cal.as_utc(cal.start_unix_s).isoformat(),
        "slot_seconds": cal.slot_seconds,
        "slot_hours": cal.dt_h,
        "n_slots": cal.n_slots,
        "first_slot": cal.first_slot,
        "settle_after_s": cal.settle_after_s,
        "price_floor_per_kwh": setup.price_floor,
        "price_cap_per_kwh": setup.price_cap,
        "operator_public_key": g.operator_public_key.hex(),
        "participants": list(setup.names),
        "members": [
            {"name": n, "ledger_index": i, "public_key": k.hex(), "connection_kw": float(c)}
            for i, (n, k, c) in enumerate(
                zip(setup.names, g.public_keys, setup.connection_kw.tolist(), strict=True)
            )
        ],
    }
