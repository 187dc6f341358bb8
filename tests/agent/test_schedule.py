"""The agent's events, in the order it does them: bids before their gates, commitments read
after them, deliveries at slot ends, the first boundary reported when the first slot starts."""

from __future__ import annotations

import datetime as dt

import numpy as np

from peergrid.agent.meter import advance_registers, initial_registers_kwh, reading_body
from peergrid.agent.run import Event, Kind, MarketInfo, calendar_of, first_gate, schedule
from peergrid.scenario.load import load_scenario

START = 1_800_000_000.0


def info(gate: str = "intraday 1", n_slots: int = 3) -> MarketInfo:
    return MarketInfo(
        ledger_id=bytes(16),
        scenario="demo",
        gate_closure=gate,
        start_unix_s=START,
        slot_seconds=10.0,
        slot_hours=0.25,
        n_slots=n_slots,
        settle_after_s=2.5,
        price_floor_per_kwh=0.0,
        price_cap_per_kwh=1.0,
        currency="EUR",
        participants=("a", "b"),
    )


def test_schedule_intraday_1() -> None:
    cal = calendar_of(info(), load_scenario("demo"))
    assert cal.gates.gate_slot.tolist() == [-1, 0, 1]
    events = schedule(cal, 0, 4.0, 3.0)
    assert [(e.at_s - START, e.kind, e.index) for e in events] == [
        (-14.0, Kind.BID, 0),  # gate -1 closes slot 0 at −10 s
        (-7.0, Kind.FETCH, 0),
        (-4.0, Kind.BID, 1),
        (0.0, Kind.REPORT, 0),
        (3.0, Kind.FETCH, 1),
        (6.0, Kind.BID, 2),
        (10.0, Kind.DELIVER, 0),
        (13.0, Kind.FETCH, 2),
        (20.0, Kind.DELIVER, 1),
        (30.0, Kind.DELIVER, 2),
    ]


def test_ties_report_then_deliver_then_bid_then_fetch() -> None:
    cal = calendar_of(info("intraday 0"), load_scenario("demo"))
    events = schedule(cal, 0, 0.0, 0.0)
    assert [(e.at_s - START, e.kind, e.index) for e in events[:4]] == [
        (0.0, Kind.REPORT, 0),
        (0.0, Kind.BID, 0),
        (0.0, Kind.FETCH, 0),
        (10.0, Kind.DELIVER, 0),
    ]
    assert Event(1.0, Kind.DELIVER, 5) < Event(1.0, Kind.BID, 0)


def test_a_late_agent_joins_at_the_next_gate_it_can_make() -> None:
    cal = calendar_of(info(), load_scenario("demo"))
    assert first_gate(cal, START - 30.0, 0.5) == 0
    assert first_gate(cal, START - 10.2, 0.5) == 1  # gate −1 closes at −10 s: too close
    assert first_gate(cal, START + 10.0, 0.5) is None
    events = schedule(cal, 1, 4.0, 3.0)
    assert events[0] == Event(START - 4.0, Kind.BID, 1)
    assert Event(START + 10.0, Kind.REPORT, 1) in events
    assert [e.index for e in events if e.kind == Kind.DELIVER] == [1, 2]


def test_meter_registers() -> None:
    imp, exp = initial_registers_kwh(42, ["home-01", "home-02"], np.array([5.0, 0.0]))
    again = initial_registers_kwh(42, ["home-01", "home-02"], np.array([5.0, 0.0]))
    assert np.array_equal(imp, again[0]) and np.array_equal(exp, again[1])
    assert np.all((imp >= 2000) & (imp <= 9000)) and exp[0] >= 300 and exp[1] == 0.0
    imp2, exp2 = advance_registers(imp, exp, np.array([-0.25, 0.5]))
    assert np.allclose(imp2 - imp, [0.25, 0.0]) and np.allclose(exp2 - exp, [0.0, 0.5])
    at = dt.datetime.fromtimestamp(START, tz=dt.UTC)
    body = reading_body(at, 1.5, 2.0)
    assert body == {
        "readings": [
            {
                "timestamp": "2027-01-15T08:00:00+00:00",
                "import_register": 1.5,
                "export_register": 2.0,
                "unit": "kWh",
            }
        ]
    }
