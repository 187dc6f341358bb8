"""An agent of a market whose slot 0 is a later slot of its scenario's period (`GET /v1/market`'s
`first_slot`) forecasts, bids and delivers the scenario's slots from there, while its orders,
commitments and readings count the market's slots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from peergrid.agent.client import Reply
from peergrid.agent.homes import bid_gate, build_homes, deliver_slot, start_runtime
from peergrid.agent.run import Credentials, HomeAgent, MarketInfo
from peergrid.ledger.keys import participant_keys
from peergrid.scenario.load import load_scenario

START = 1_800_000_000.0
SLOT_S = 10.0
NOON = 48  # the demo's 15-minute slot of 12:00 local on its first day


@dataclass
class FakeServer:
    """A market's API as an agent calls it, answering at once; it keeps what it was sent."""

    t: float = START - 6 * SLOT_S
    orders: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def sleep(self, dt_s: float) -> None:
        self.t += dt_s

    def post_orders(self, token: str, body: dict[str, Any], **_: Any) -> Reply:
        self.orders.append(body)
        return Reply(201, {"order_id": len(self.orders)})

    def commitments(self, token: str, a: int, b: int, **_: Any) -> Reply:
        return Reply(200, [{"slot": s, "committed_kwh": 0.0} for s in range(a, b)])

    def post_readings(self, token: str, body: dict[str, Any], **_: Any) -> Reply:
        self.readings.append(body["readings"][0])
        return Reply(200, {"stored": 1, "duplicates": 0, "late": 0})


def market(first_slot: int) -> dict[str, Any]:
    """`GET /v1/market` of a market of one home, four slots of the demo from `first_slot`."""
    return {
        "ledger_id": "00" * 16,
        "scenario": "demo",
        "gate_closure": "intraday 1",
        "start": "2027-01-15T08:00:00+00:00",  # START
        "slot_seconds": SLOT_S,
        "slot_hours": 0.25,
        "n_slots": 4,
        "first_slot": first_slot,
        "settle_after_s": 2.5,
        "price_floor_per_kwh": 0.0,
        "price_cap_per_kwh": 1.0,
        "currency": "EUR",
        "participants": ["home-01"],
    }


def run_agent(first_slot: int) -> FakeServer:
    homes = build_homes(load_scenario("demo"), ["pv-home-01"])
    server = FakeServer()
    info = MarketInfo.from_json(market(first_slot))
    creds = [Credentials("home-01", "token", participant_keys(3, 1)[0])]
    agent = HomeAgent(server, info, homes, creds, now=server.now, sleep=server.sleep)  # type: ignore[arg-type]
    assert agent.calendar.first_slot == first_slot
    report = agent.run()
    assert report.ok and report.first_slot == 0 and report.slots_delivered == 4
    return server


def test_an_agent_of_a_market_from_noon_bids_and_delivers_the_scenarios_noon() -> None:
    noon = run_agent(NOON)
    assert [b["gate_slot"] for b in noon.orders] == [-1, 0, 1, 2]  # the market's gates
    assert [o["slot"] for b in noon.orders for o in b["orders"]] == [0, 1, 2, 3]
    assert "sell" in {o["side"] for b in noon.orders for o in b["orders"]}  # its PV, at noon
    # the homes bid and deliver the scenario's slots 48–51, as they would by themselves
    homes = build_homes(load_scenario("demo"), ["pv-home-01"])
    runtime = start_runtime(homes, NOON)
    net_kwh = []
    for k in range(4):
        runtime, bids = bid_gate(homes, runtime, NOON + k - 1, NOON + k, 1)
        sent = noon.orders[k]["orders"][0]
        assert sent["quantity_kwh"] == float(bids.books[0].quantity_kwh[0])
        runtime, delivered = deliver_slot(homes, runtime, NOON + k, np.zeros(1))  # committed 0
        net_kwh.append(float(delivered.dispatch.net_kwh[0]))
    assert homes.feed.actual(NOON).pv_kwh[0] > 0
    # the meter reads the delivered energy at the market's five boundaries
    export = np.array([r["export_register"] for r in noon.readings])
    imp = np.array([r["import_register"] for r in noon.readings])
    assert np.diff(export - imp) == pytest.approx(net_kwh, abs=1e-9)
    assert export[-1] > export[0]
    # the same home in a market from midnight, the scenario's first slot, buys and exports none
    night = run_agent(0)
    assert {o["side"] for b in night.orders for o in b["orders"]} == {"buy"}
    assert len({r["export_register"] for r in night.readings}) == 1
