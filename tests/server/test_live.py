"""The live market end to end in process, on SQLite and PostgreSQL: signed orders and their
refusals, idempotency keys, meter readings and their validation, the clock's steps, the retail
fallback, estimation and true-up, the ledger, and replay equality."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from sqlalchemy import func, select

from peergrid.engine.live import calendar_for, scenario_grid
from peergrid.errors import InputError
from peergrid.ledger import encoding as enc
from peergrid.ledger.store import iter_entries
from peergrid.ledger.verify import verify_ledger
from peergrid.scenario.schema import Scenario, TouPeriod
from peergrid.scenario.tariff import retail_price_per_kwh
from peergrid.server.ledger_store import SqlLedgerStore
from peergrid.server.market import open_market
from peergrid.server.replay import check_replay
from peergrid.server.schema import meter_intervals, orders, readings, slots
from tests.server.live_market import SLOT_S, START, Live, open_live, scenario


@pytest.fixture
def live(db_url: str):  # type: ignore[no-untyped-def]
    lv, client = open_live(db_url)
    with client:
        yield lv
    lv.engine.dispose()


def _count(live: Live, table) -> int:  # type: ignore[no-untyped-def]
    with live.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_orders_accepted_replaced_and_refused_with_reasons(live: Live) -> None:
    # gate -1 closes slot 0 at START - SLOT_S; the fake clock stands at START - 5 slots
    ok = live.post_orders(0, live.order_body(0, -1, [(0, "sell", 0.5, 0.10)]))
    assert ok.status_code == 201, ok.text
    again = live.post_orders(0, live.order_body(0, -1, [(0, "sell", 0.6, 0.11)]))
    assert again.status_code == 201 and again.json()["replaces"] == ok.json()["order_id"]
    cases = [
        (live.order_body(0, -1, [(0, "sell", 0.5, 5.0)]), "floor and cap"),
        (live.order_body(0, -1, [(0, "buy", 0.5, -0.5)]), "floor and cap"),
        (live.order_body(0, -1, [(0, "buy", 7.0, 0.2)]), "capacity"),
        (live.order_body(0, -1, [(1, "buy", 0.5, 0.2)]), "not closed by this gate"),
        (live.order_body(0, 99, [(0, "buy", 0.5, 0.2)]), "no gate closes"),
        (live.order_body(0, -1, [(0, "buy", 0.5, 0.2)], key=live.keys[1]), "signature"),
    ]
    before = _count(live, orders)
    for body, why in cases:
        r = live.post_orders(0, body)
        assert r.status_code == 422, (why, r.text)
        assert why in r.json()["detail"], r.json()
    # a schema violation is refused by the API's validation, also with a message
    bad = live.order_body(0, -1, [(0, "buy", 0.5, 0.2)])
    bad["orders"][0]["quantity_kwh"] = -1
    r = live.post_orders(0, bad)
    assert r.status_code == 422 and "quantity_kwh" in json.dumps(r.json())
    assert _count(live, orders) == before
    # an operating envelope limits what a participant may sell
    env = {"envelopes": [{"slot": 1, "participant": "home-0", "export_limit_kwh": 0.2}]}
    assert (
        live.client.put("/v1/envelopes", json=env, headers=live.auth(live.grid)).status_code == 200
    )
    r = live.post_orders(0, live.order_body(0, 0, [(1, "sell", 0.3, 0.1)]))
    assert r.status_code == 422 and "envelope" in r.json()["detail"]
    assert live.post_orders(0, live.order_body(0, 0, [(1, "sell", 0.2, 0.1)])).status_code == 201
    # after the gate closes nothing more is accepted for it
    live.clock.t = START - SLOT_S
    r = live.post_orders(1, live.order_body(1, -1, [(0, "buy", 0.5, 0.3)]))
    assert r.status_code == 422 and "closed" in r.json()["detail"]


def test_idempotency_keys(live: Live) -> None:
    body = live.order_body(0, -1, [(0, "sell", 0.5, 0.10)])
    r = live.client.post("/v1/orders", json=body, headers=live.auth(live.members[0]))
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"]
    first = live.post_orders(0, body, key="abc")
    retry = live.post_orders(0, body, key="abc")
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert _count(live, orders) == 1
    other = live.order_body(0, -1, [(0, "sell", 0.7, 0.10)])
    r = live.post_orders(0, other, key="abc")
    assert r.status_code == 422 and "different request" in r.json()["detail"]
    # a refusal is stored too: its retry gets the same refusal
    bad = live.order_body(0, -1, [(0, "sell", 0.5, 9.0)])
    assert live.post_orders(0, bad, key="bad").json() == live.post_orders(0, bad, key="bad").json()
    # a retry while the first request is still being processed on this server → 409
    in_flight = live.client.app.state.in_flight  # type: ignore[attr-defined]
    assert in_flight.claim(live.members[0].id, "busy")
    r = live.post_orders(0, other, key="busy")
    assert r.status_code == 409 and "still being processed" in r.json()["detail"]
    in_flight.release(live.members[0].id, "busy")
    assert live.post_orders(0, other, key="busy").status_code == 201
    # keys are per participant: another participant may use "abc" for its own orders
    assert (
        live.post_orders(1, live.order_body(1, -1, [(0, "buy", 0.4, 0.3)]), key="abc").status_code
        == 201
    )


def _digest(body: dict[str, object]) -> str:
    import hashlib

    from peergrid.server.orders import OrdersIn

    return hashlib.sha256(OrdersIn.model_validate(body).model_dump_json().encode()).hexdigest()


def test_readings_validation(live: Live) -> None:
    live.clock.t = START + 2 * SLOT_S + 1
    assert live.post_reading(0, 0, 100.0, 50.0).json() == {"stored": 1, "duplicates": 0, "late": 0}
    assert live.post_reading(0, 0, 100.0, 50.0).json() == {"stored": 0, "duplicates": 1, "late": 0}
    r = live.post_reading(0, 0, 100.5, 50.0)
    assert r.status_code == 409 and "different reading" in r.json()["detail"]
    ts = live.boundary_time
    cases = [
        (
            {"timestamp": ts(1), "import_register": -1, "export_register": 50, "unit": "kWh"},
            "negative",
        ),
        (
            {"timestamp": ts(1), "import_register": 100.2, "export_register": 50, "unit": "MWh"},
            "unit",
        ),
        (
            {"timestamp": ts(1), "import_register": 99.0, "export_register": 50, "unit": "kWh"},
            "decreases",
        ),
        (
            {"timestamp": ts(1), "import_register": 100.0, "export_register": 60, "unit": "kWh"},
            "above what the connection",
        ),
        (
            {"timestamp": ts(1), "import_register": 100.1, "export_register": 0.05, "unit": "kWh"},
            "kWh/Wh mix-up",
        ),
        (
            {"timestamp": ts(9), "import_register": 100.1, "export_register": 50, "unit": "kWh"},
            "future",
        ),
        (
            {
                "timestamp": ts(1)[:-6],
                "import_register": 100.1,
                "export_register": 50,
                "unit": "kWh",
            },
            "UTC offset",
        ),
        (
            {
                "timestamp": (
                    dt.datetime.fromisoformat(ts(1)) + dt.timedelta(seconds=3)
                ).isoformat(),
                "import_register": 100.1,
                "export_register": 50,
                "unit": "kWh",
            },
            "slot grid",
        ),
        (
            {
                "timestamp": live.boundary_time(-3),
                "import_register": 90,
                "export_register": 50,
                "unit": "kWh",
            },
            "outside the market",
        ),
        (
            {
                "timestamp": ts(1),
                "import_register": 100200.0,
                "export_register": 50000,
                "unit": "Wh",
            },
            None,
        ),
    ]
    for reading, why in cases:
        r = live.client.post(
            "/v1/readings", json={"readings": [reading]}, headers=live.auth(live.members[0])
        )
        if why is None:  # 100.2 kWh written in Wh is fine
            assert r.status_code == 200, r.text
            continue
        assert r.status_code == 422, (why, r.text)
        assert why in r.json()["detail"], (why, r.json())
    r = live.client.post(
        "/v1/readings",
        content=(
            f'{{"readings": [{{"timestamp": "{ts(2)}", "import_register": NaN, '
            '"export_register": 1, "unit": "kWh"}]}'
        ),
        headers={**live.auth(live.members[0]), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "finite" in r.json()["detail"]
    # a batch with one bad reading stores nothing
    n = _count(live, readings)
    batch = {
        "readings": [
            {"timestamp": ts(2), "import_register": 100.3, "export_register": 50, "unit": "kWh"},
            {"timestamp": ts(2), "import_register": 100.4, "export_register": 50, "unit": "kWh"},
        ]
    }
    assert (
        live.client.post("/v1/readings", json=batch, headers=live.auth(live.members[0])).status_code
        == 409
    )
    assert _count(live, readings) == n


def _run_market(live: Live, n_slots: int, skip: frozenset[tuple[int, int]] = frozenset()) -> None:
    """Each home sells or buys a little every slot and reports its registers at each boundary;
    the clock runs every step on time (readings in `skip`, (home, boundary), are withheld)."""
    rng = np.random.default_rng(3)
    imp = np.full(3, 1000.0)
    exp = np.full(3, 500.0)
    settle_after = live.setup.calendar.settle_after_s
    for b in range(-1, n_slots + 1):
        t = START + b * SLOT_S
        if b + 1 < n_slots:  # orders for slot b + 1, whose gate closes at boundary b
            live.clock.t = t - 0.5 * SLOT_S
            for i in range(3):
                side = "sell" if i == 0 else "buy"
                q = float(np.round(rng.uniform(0.2, 0.6), 3))
                price = 0.12 if side == "sell" else 0.28
                body = live.order_body(i, b, [(b + 1, side, q, price)])
                assert live.post_orders(i, body).status_code == 201
        live.run_until(t + 0.1)
        if b < 0:
            continue
        if b > 0:
            net = rng.normal(0.0, 0.4, 3)
            imp += np.maximum(-net, 0)
            exp += np.maximum(net, 0)
        live.clock.t = t + 0.2
        for i in range(3):
            if (i, b) not in skip:
                r = live.post_reading(i, b, float(imp[i]), float(exp[i]))
                assert r.status_code == 200, r.text
        live.run_until(t + settle_after + 0.1)


def test_clock_clears_settles_estimates_and_replays(live: Live) -> None:
    _run_market(live, 6, skip=frozenset({(1, 2), (1, 3), (2, 6)}))
    got = live.client.get("/v1/slots").json()
    assert [s["status"] for s in got] == ["settled"] * 6
    assert all(s["clearing_price"] is not None or s["buy_price"] is not None for s in got)
    with live.engine.connect() as conn:
        q = {
            (int(r.participant_id), int(r.slot)): r.quality
            for r in conn.execute(
                select(
                    meter_intervals.c.participant_id,
                    meter_intervals.c.slot,
                    meter_intervals.c.quality,
                )
            )
        }
    home1, home2 = live.members[1].id, live.members[2].id
    assert q[(home1, 1)] == "estimated" and q[(home1, 2)] == "estimated"  # boundaries 2, 3 missing
    assert q[(home1, 3)] == "trued-up" and q[(home1, 0)] == "measured"
    assert q[(home2, 5)] == "estimated"
    # the true-up puts the registers' energy back: Σ settled = Δ registers over slots 0..3
    raw = live.client.get("/v1/readings", headers=live.auth(live.members[1])).json()
    regs = {x["boundary"]: x["export_register_kwh"] - x["import_register_kwh"] for x in raw["raw"]}
    settled = sum(x["net_kwh"] for x in raw["intervals"] if x["slot"] <= 3)
    assert settled == pytest.approx(regs[4] - regs[0], abs=1e-9)
    # the ledger verifies and the recorded inputs replay to the same ledger, commitments, bills
    report = verify_ledger(SqlLedgerStore(live.engine))
    assert report.entries > 0
    check = check_replay(live.engine, live.setup)
    assert check.equal, check.differences
    assert check.root_database == report.root
    bill = live.client.get("/v1/bill", headers=live.auth(live.members[0])).json()
    assert bill["slots_settled"] == 6 and bill["energy_cost"] != 0


def test_a_late_clock_falls_back_to_retail_and_says_why(live: Live) -> None:
    assert live.post_orders(0, live.order_body(0, -1, [(0, "sell", 0.5, 0.10)])).status_code == 201
    assert live.post_orders(1, live.order_body(1, -1, [(0, "buy", 0.5, 0.30)])).status_code == 201
    live.run_until(START + 1.0)  # past slot 0's start: its clearing deadline
    status = live.client.get("/v1/operator/status", headers=live.auth(live.operator)).json()
    assert status["gates"]["fallback"] >= 1
    assert "deadline" in status["gates"]["fallback_reasons"][-1]["reason"]
    with live.engine.connect() as conn:
        row = conn.execute(select(slots.c.traded_kwh).where(slots.c.slot == 0)).one()
    assert row.traded_kwh == 0.0
    assert verify_ledger(SqlLedgerStore(live.engine)).entries > 0
    assert check_replay(live.engine, live.setup).equal


def test_a_step_that_fails_midway_leaves_nothing_and_runs_once_later(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peergrid.server.clock as clock_mod

    assert live.post_orders(0, live.order_body(0, -1, [(0, "sell", 0.5, 0.10)])).status_code == 201
    real = clock_mod.write_ledger

    def boom(conn, store):  # type: ignore[no-untyped-def]
        real(conn, store)
        raise RuntimeError("killed after writing the ledger")

    monkeypatch.setattr(clock_mod, "write_ledger", boom)
    with pytest.raises(RuntimeError):
        live.run_until(START - SLOT_S + 0.1)
    monkeypatch.setattr(clock_mod, "write_ledger", real)
    assert live.client.get("/v1/clock").json()["next_step"] == 0
    assert verify_ledger(SqlLedgerStore(live.engine)).entries == 1  # the GENESIS alone
    live.run_until(START - SLOT_S + 0.2)
    assert live.client.get("/v1/clock").json()["next_step"] == 1
    assert check_replay(live.engine, live.setup).equal


def test_a_market_opened_while_the_server_runs_starts_its_clock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from fastapi.testclient import TestClient

    from peergrid.ledger.keys import participant_keys, public_bytes
    from peergrid.server.admin import add_participant
    from peergrid.server.app import create_app
    from peergrid.server.db import engine_for, migrate
    from peergrid.server.market import open_market
    from tests.server.live_market import scenario

    engine = engine_for(f"sqlite:///{tmp_path / 'late.db'}")
    migrate(engine)
    add_participant(engine, "home-0", "participant", public_bytes(participant_keys(1, 1)[0]).hex())
    with TestClient(create_app(engine)) as client:
        assert client.get("/v1/market").status_code == 503
        assert client.app.state.clock is None  # type: ignore[attr-defined]
        open_market(engine, scenario(), slot_seconds=1.0, n_slots=4)
        deadline = time.monotonic() + 5
        while client.app.state.clock is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert client.app.state.clock is not None  # type: ignore[attr-defined]
        assert client.get("/v1/market").json()["n_slots"] == 4
    engine.dispose()


def _late_rate() -> Scenario:
    """The test scenario with a time-of-use rate from 23:30 to 00:15 local."""
    sc = scenario()
    tou = [TouPeriod(start="23:30", end="00:15", price_per_kwh=0.45)]
    return sc.model_copy(update={"tariff": sc.tariff.model_copy(update={"retail_tou": tou})})


def _settlements(live: Live) -> dict[int, enc.SettlementRecord]:
    """The ledger's SETTLEMENT entries by slot."""
    out = {}
    for _, data in iter_entries(SqlLedgerStore(live.engine)):
        kind, slot, r = enc.read_header(data)
        if kind is enc.Kind.SETTLEMENT:
            out[slot] = enc.read_settlement(r)
    return out


def test_a_market_from_a_later_slot_runs_that_window_of_its_scenario(db_url: str) -> None:
    # live slots 0–5 are the demo's slots 92–97: 23:00 to 00:30 local across its first midnight
    sc = _late_rate()
    lv, client = open_live(db_url, sc=sc, first_slot=92)
    with client:
        setup = lv.setup
        assert setup.calendar.first_slot == setup.scenario.live.first_slot == 92
        market = client.get("/v1/market").json()
        assert market["first_slot"] == 92 and market["n_slots"] == 6
        assert setup.genesis.n_slots == 6 and setup.genesis.start_unix_s == START
        rate = [0.32, 0.32, 0.45, 0.45, 0.45, 0.32]  # 23:00, 23:15, 23:30 … 00:00, 00:15
        full = retail_price_per_kwh(sc.tariff, scenario_grid(sc))
        assert np.array_equal(setup.market.retail_price[:6], full[92:98])
        assert setup.market.retail_price[:6].tolist() == rate
        assert setup.day_starts.tolist() == [0, 4]  # the window's first slot, then 00:00 local
        _run_market(lv, 6)
        assert [s["retail_price"] for s in client.get("/v1/slots").json()] == rate
        settled = _settlements(lv)
        assert sorted(settled) == list(range(6))
        assert [settled[s].retail_price for s in range(6)] == rate
        daily = [s for s in range(6) if np.any(settled[s].postings.memo == enc.Memo.DAILY)]
        assert daily == [0, 4]
        check = check_replay(lv.engine, setup)
        assert check.equal, check.differences
        assert check.root_database == verify_ledger(SqlLedgerStore(lv.engine)).root
        # a window past the scenario's period is refused, naming the option (before the
        # database is asked whether it runs a market already)
        n = scenario_grid(sc).n_slots
        for first, n_slots in ((n - 2, 6), (n, None), (-1, None)):
            with pytest.raises(InputError, match=r"^--first-slot: "):
                open_market(lv.engine, sc, first_slot=first, n_slots=n_slots)
        with pytest.raises(InputError, match=r"^--slots: "):
            open_market(lv.engine, sc, first_slot=92, n_slots=n + 1)
    lv.engine.dispose()


def test_a_later_first_slot_puts_the_scenarios_gates_on_the_live_slots() -> None:
    sc = scenario(gate="day-ahead 12:00")
    # live slots 0–103 are the demo's slots 40–143: 10:00 on its first day to 11:45 on its second
    cal = calendar_for(sc, START, SLOT_S, 104, 2.5, first_slot=40)
    g = cal.gates
    assert g.gate_slot.tolist() == [-88, 8]  # noon of the day before each day: slots -48, 48
    assert g.first_slot.tolist() == [0, 56] and g.stop_slot.tolist() == [56, 104]
    assert np.array_equal(g.gate_of_slot, np.repeat([-88, 8], [56, 48]))
    assert cal.gate_of_slot(55) == 0 and cal.gate_of_slot(56) == 1
    assert cal.gate_time_s(0) == START - 88 * SLOT_S
    with pytest.raises(ValueError, match="from its slot 40"):
        calendar_for(sc, START, SLOT_S, scenario_grid(sc).n_slots - 39, 2.5, first_slot=40)


def test_orders_arriving_together_are_stored_in_batches_with_the_same_answers(live: Live) -> None:
    """Many submissions at once through the group-commit writer: every one answered as alone
    (201, or 422 with its reason), a replacement within one batch waits for the next, and the
    stored state is what one-at-a-time would give."""
    from concurrent.futures import ThreadPoolExecutor

    bodies = []
    for k in range(24):
        i = k % 3
        q = 0.1 + 0.01 * k
        price = 9.0 if k % 7 == 6 else 0.2  # every seventh breaks the cap
        bodies.append((i, live.order_body(i, -1, [(0, "sell", q, price)]), f"batch-{k}"))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda b: live.post_orders(b[0], b[1], key=b[2]), bodies))
    codes = [a.status_code for a in answers]
    assert codes.count(422) == sum(1 for k in range(24) if k % 7 == 6)
    assert set(codes) == {201, 422}
    # a retry of each gets exactly its answer back
    for (i, body, key), a in zip(bodies, answers, strict=True):
        assert live.post_orders(i, body, key=key).json() == a.json()
    # per participant exactly one active order for the gate, the rest replaced, nothing lost
    with live.engine.connect() as conn:
        rows = conn.execute(select(orders.c.participant_id, orders.c.status)).all()
    accepted = sum(1 for c in codes if c == 201)
    assert len(rows) == accepted
    active = [r.participant_id for r in rows if r.status == "active"]
    assert sorted(active) == sorted({m.id for m in live.members})
    # each 201 names the order it replaced, and those chains cover every replaced order
    replaced = {a.json()["replaces"] for a in answers if a.status_code == 201} - {None}
    assert len(replaced) == accepted - len(live.members)
