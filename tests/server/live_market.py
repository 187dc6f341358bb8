"""A small live market for the tests: members with keys, an operator and a network operator,
a fake wall clock, and helpers that sign orders and report meter readings."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.markets.base import Side
from peergrid.scenario.load import load_scenario
from peergrid.scenario.schema import Scenario
from peergrid.server.admin import Registered, add_participant
from peergrid.server.app import create_app
from peergrid.server.clock import Clock
from peergrid.server.db import engine_for, migrate
from peergrid.server.market import MarketSetup, open_market

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SLOT_S = 10.0


def scenario(mechanism: str = "sdr", gate: str = "intraday 1", **settlement: Any) -> Scenario:
    sc = load_scenario("demo")
    return sc.model_copy(
        update={
            "market": sc.market.model_copy(
                update={"mechanism": mechanism, "params": {}, "gate_closure": gate}
            ),
            "settlement": sc.settlement.model_copy(update=settlement),
            "privacy": sc.privacy.model_copy(update={"min_households": 2}),
        }
    )


def signed_orders(
    setup: MarketSetup,
    key: Ed25519PrivateKey,
    i: int,
    gate_slot: int,
    orders: list[tuple[int, str, float, float]],
) -> dict[str, Any]:
    """The body of `POST /v1/orders`: member `i`'s orders (slot, side, kWh, limit price) of
    the gate at `gate_slot`, signed with `key`."""
    msg = enc.order_message(
        setup.genesis.ledger_id,
        i,
        gate_slot,
        np.array([o[0] for o in orders], dtype=np.int64),
        np.array([Side.BUY if o[1] == "buy" else Side.SELL for o in orders], dtype=np.int8),
        np.array([o[2] for o in orders], dtype=np.float64),
        np.array([o[3] for o in orders], dtype=np.float64),
    )
    return {
        "gate_slot": gate_slot,
        "orders": [
            {"slot": s, "side": side, "quantity_kwh": q, "limit_price": p}
            for s, side, q, p in orders
        ],
        "signature": key.sign(msg).hex(),
    }


@dataclass
class FakeClock:
    t: float

    def __call__(self) -> float:
        return self.t


@dataclass
class Live:
    """A market under test."""

    engine: Engine
    setup: MarketSetup
    keys: list[Ed25519PrivateKey]
    members: list[Registered]
    operator: Registered
    grid: Registered
    clock: FakeClock
    client: TestClient
    keys_used: itertools.count = field(default_factory=itertools.count)

    def auth(self, who: Registered) -> dict[str, str]:
        return {"Authorization": f"Bearer {who.token}"}

    def order_body(
        self,
        i: int,
        gate_slot: int,
        orders: list[tuple[int, str, float, float]],
        key: Ed25519PrivateKey | None = None,
    ) -> dict[str, Any]:
        return signed_orders(self.setup, key or self.keys[i], i, gate_slot, orders)

    def post_orders(self, i: int, body: dict[str, Any], key: str | None = None) -> Any:
        headers = {**self.auth(self.members[i]), "Idempotency-Key": key or f"k-{uuid.uuid4().hex}"}
        return self.client.post("/v1/orders", json=body, headers=headers)

    def boundary_time(self, b: int) -> str:
        return dt.datetime.fromtimestamp(START + b * SLOT_S, tz=dt.UTC).isoformat()

    def post_reading(self, i: int, b: int, imp: float, exp: float, unit: str = "kWh") -> Any:
        body = {
            "readings": [
                {
                    "timestamp": self.boundary_time(b),
                    "import_register": imp,
                    "export_register": exp,
                    "unit": unit,
                }
            ]
        }
        return self.client.post("/v1/readings", json=body, headers=self.auth(self.members[i]))

    def run_until(self, t: float) -> None:
        self.clock.t = t
        Clock(self.engine, self.setup, now=self.clock).run_due()


def open_live(
    db_url: str,
    n: int = 3,
    n_slots: int = 6,
    sc: Scenario | None = None,
    first_slot: int | None = None,
) -> tuple[Live, Any]:
    engine = engine_for(db_url)
    migrate(engine)
    keys = participant_keys(7, n)
    members = [
        add_participant(engine, f"home-{i}", "participant", public_bytes(k).hex())
        for i, k in enumerate(keys)
    ]
    operator = add_participant(engine, "operator", "operator")
    grid = add_participant(engine, "dso", "network-operator")
    setup = open_market(
        engine,
        sc or scenario(),
        start_unix_s=START,
        slot_seconds=SLOT_S,
        n_slots=n_slots,
        first_slot=first_slot,
    )
    clock = FakeClock(START - 5 * SLOT_S)
    client = TestClient(create_app(engine, now=clock, run_clock=False))
    return Live(engine, setup, keys, members, operator, grid, clock, client), client
