"""The WebSocket stream of market events (`server.stream`): what each role sees, that every
server streams every step exactly once (its own clock's and another server's), and that a slow
client is dropped without holding anyone up."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from typing import Any

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from peergrid.engine.live import GATE
from peergrid.server.app import create_app
from peergrid.server.clock import Clock
from peergrid.server.db import engine_for, migrate
from peergrid.server.stream import (
    DROPPED,
    PUBLIC_FIELDS,
    Broadcaster,
    Published,
    Viewer,
    view,
)
from tests.server.live_market import SLOT_S, START, FakeClock, Live, open_live

# the steps of `open_live`'s market (intraday 1, 10 s slots, settled 2.5 s after a slot ends)
GATE_0 = START - SLOT_S  # closes slot 0
SETTLE_0 = START + SLOT_S + 0.25 * SLOT_S


def recv(ws: WebSocketTestSession, timeout_s: float = 10.0) -> dict[str, Any]:
    """The next JSON message, or a failure after `timeout_s` (the test client's own receive
    waits for ever)."""

    async def get() -> Any:
        with anyio.fail_after(timeout_s):
            return await ws._send_rx.receive()

    message = ws.portal.call(get)
    ws._raise_on_close(message)
    out: dict[str, Any] = json.loads(message["text"])
    return out


def until(ws: WebSocketTestSession, kind: str, *, wake: Broadcaster | None = None) -> list[Any]:
    """Messages up to and including the first of type `kind`."""
    if wake is not None:
        wake.wake()
    got = []
    while True:
        got.append(recv(ws))
        if got[-1]["type"] == kind:
            return got


def order_slot_0(live: Live) -> None:
    """Member 0 sells 2 kWh in slot 0, members 1 and 2 buy 1 kWh each."""
    for i, orders in enumerate(
        [[(0, "sell", 2.0, 0.05)], [(0, "buy", 1.0, 0.30)], [(0, "buy", 1.0, 0.25)]]
    ):
        r = live.post_orders(i, live.order_body(i, -1, orders))
        assert r.status_code == 201, r.text


def meter_slot_0(live: Live) -> None:
    """Each meter reports slot 0's start and end (member 0 exported 1.8 kWh, 1 imported 1.2,
    2 imported 0.7 and exported 0.1)."""
    live.clock.t = START + SLOT_S + 1
    for i, (imp, exp) in enumerate([(0.0, 1.8), (1.2, 0.0), (0.7, 0.1)]):
        assert live.post_reading(i, 0, 10.0, 20.0).status_code == 200
        assert live.post_reading(i, 1, 10.0 + imp, 20.0 + exp).status_code == 200


def test_view_keeps_to_each_roles_fields() -> None:
    slot_fields = {
        "slot": 4,
        "clearing_price": 0.2,
        "buy_price": 0.21,
        "sell_price": 0.19,
        "traded_kwh": None,
        "traded_status": "dominated",
    }
    cleared = Published(
        {
            "type": "fallback",
            "gate": 3,
            "gate_slot": 3,
            "reason": "the mechanism failed",
            "slots": [{**slot_fields, "secret": 1}],
            "at": "2027-01-15T08:00:00+00:00",
        },
        slots=np.array([4]),
        committed_kwh=np.array([[1.0, -1.0]]),
    )
    settled = Published(
        {
            "type": "settled",
            "slot": 4,
            "estimated": 1,
            "community_net_kwh": None,
            "community_net_status": "too few households",
            "community_net_metered_kwh": 0.25,
            "at": "2027-01-15T08:10:00+00:00",
        },
        slots=np.array([4]),
        committed_kwh=np.array([[1.0, -1.0]]),
        metered_kwh=np.array([[1.5, -1.25]]),
        cost=np.array([[-0.3, 0.25]]),
        baseline_cost=np.array([[-0.1, 0.4]]),
    )
    public = view(cleared, Viewer())
    assert set(public) == set(PUBLIC_FIELDS["fallback"])
    assert public["slots"] == [slot_fields]  # what the clock publishes, nothing else
    assert set(view(settled, Viewer())) == set(PUBLIC_FIELDS["settled"])
    op = Viewer("operator", "op")
    assert view(cleared, op)["reason"] == "the mechanism failed"
    assert view(settled, op)["estimated"] == 1
    grid = view(settled, Viewer("network-operator", "dso"))
    assert grid["community_net_metered_kwh"] == 0.25 and "estimated" not in grid
    assert "reason" not in view(cleared, Viewer("network-operator", "dso"))
    home = Viewer("participant", "home-1", index=1)
    assert view(cleared, home)["own"] == [{"slot": 4, "committed_kwh": -1.0}]
    assert view(settled, home)["own"] == [
        {
            "slot": 4,
            "committed_kwh": -1.0,
            "metered_kwh": -1.25,
            "deviation_kwh": -0.25,
            "cost": 0.25,
            "baseline_cost": 0.4,
        }
    ]
    assert "reason" not in view(cleared, home) and "estimated" not in view(settled, home)
    assert "own" not in view(cleared, Viewer("participant", "not-a-member", index=None))


def test_each_role_streams_its_view_of_another_servers_steps(db_url: str) -> None:
    """The steps are done by a clock outside the app (as by a second server): the app's
    broadcaster finds them by polling and streams them to each role."""
    live, _ = open_live(db_url)
    with live.client as client:
        b = client.app.state.stream  # type: ignore[attr-defined]
        op_token = live.operator.token
        with (
            client.websocket_connect("/v1/stream") as public,
            client.websocket_connect(f"/v1/stream?token={live.members[1].token}") as home,
            client.websocket_connect("/v1/stream") as op,
            client.websocket_connect(f"/v1/stream?token={live.grid.token}") as grid,
        ):
            assert recv(public) == {
                "type": "hello",
                "role": "public",
                "account": None,
                "next_step": 0,
                "n_steps": b.n_steps,
            }
            assert recv(home)["role"] == "participant"
            assert recv(op)["role"] == "public"
            op.send_text(json.dumps({"token": op_token}))  # the token as the first message
            assert recv(op)["account"] == "operator"
            assert recv(grid)["role"] == "network-operator"

            order_slot_0(live)
            live.run_until(GATE_0)
            sockets = named(public, home, op, grid)
            seen = {name: until(ws, "cleared", wake=b) for name, ws in sockets}
            api = client.get("/v1/slots").json()
            for name, (closed, cleared) in seen.items():
                assert closed["type"] == "gate-closed" and closed["gate_slot"] == -1
                assert closed["slots"] == [{"slot": 0, "n_orders": 3}]
                assert ("n_submissions" in closed) == (name == "op")
                assert [s["clearing_price"] for s in cleared["slots"]] == [api[0]["clearing_price"]]
                assert cleared["slots"][0]["traded_kwh"] == api[0]["traded_kwh"]
                assert ("reason" in cleared) == (name == "op")
                assert ("own" in cleared) == (name == "home")
            (_, home_cleared) = seen["home"]
            commitments = client.get("/v1/commitments", headers=live.auth(live.members[1]))
            assert home_cleared["own"] == [
                {"slot": 0, "committed_kwh": commitments.json()[0]["committed_kwh"]}
            ]

            meter_slot_0(live)
            live.run_until(SETTLE_0)
            settled = {name: until(ws, "settled", wake=b)[-1] for name, ws in sockets}
            api = client.get("/v1/slots").json()[0]
            metered = [
                client.get("/v1/commitments", headers=live.auth(m)).json()[0] for m in live.members
            ]
            for name, ev in settled.items():
                assert ev["slot"] == 0
                assert ev["community_net_kwh"] == api["community_net_kwh"]
                assert ev["community_net_status"] == api["community_net_status"]
                assert ("estimated" in ev) == (name == "op")
                assert ("community_net_metered_kwh" in ev) == (name in ("op", "grid"))
            assert settled["op"]["estimated"] == 0
            assert settled["grid"]["community_net_metered_kwh"] == pytest.approx(
                sum(m["metered_kwh"] for m in metered)
            )
            own = settled["home"]["own"][0]
            assert own == {"slot": 0, **{k: metered[1][k] for k in own if k != "slot"}}
            assert own["metered_kwh"] == pytest.approx(-1.2)
            assert set(settled["public"]) == set(PUBLIC_FIELDS["settled"])
    live.engine.dispose()


def named(*sockets: WebSocketTestSession) -> list[tuple[str, WebSocketTestSession]]:
    return list(zip(["public", "home", "op", "grid"], sockets, strict=True))


def test_a_bad_token_is_refused_and_without_a_market_the_stream_says_so(tmp_path: Any) -> None:
    live, _ = open_live(f"sqlite:///{tmp_path / 'm.db'}")
    with live.client as client:
        with (
            client.websocket_connect("/v1/stream?token=nope") as ws,
            pytest.raises(WebSocketDisconnect) as e,
        ):
            recv(ws)
        assert e.value.code == 1008 and "token" in e.value.reason
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_text(json.dumps({"token": "nope"}))
            with pytest.raises(WebSocketDisconnect) as e:
                recv(ws)
        assert e.value.code == 1008
    live.engine.dispose()
    engine = engine_for(f"sqlite:///{tmp_path / 'empty.db'}")
    migrate(engine)
    with TestClient(create_app(engine)) as client, client.websocket_connect("/v1/stream") as ws:
        with pytest.raises(WebSocketDisconnect) as e:
            recv(ws)
        assert e.value.code == 1013 and "no market" in e.value.reason
    engine.dispose()


def test_two_servers_each_stream_every_step_exactly_once(tmp_path: Any) -> None:
    """Two apps with running clocks on one database: whichever does a step, both stream it,
    once, in step order."""
    live, _ = open_live(f"sqlite:///{tmp_path / 'two.db'}", n_slots=3)
    clock = FakeClock(GATE_0 - 1)
    apps = [create_app(live.engine, now=clock) for _ in range(2)]
    with TestClient(apps[0]) as c0, TestClient(apps[1]) as c1:
        order_slot_0(live)
        meter_slot_0(live)
        with c0.websocket_connect("/v1/stream") as w0, c1.websocket_connect("/v1/stream") as w1:
            assert recv(w0)["type"] == recv(w1)["type"] == "hello"
            times, kinds, _index = live.setup.calendar.steps()
            got: list[list[tuple[str, int]]] = [[], []]
            for t, kind in zip(times.tolist(), kinds.tolist(), strict=True):
                clock.t = t  # the step is due: the two clocks race for it
                for w, seen in zip((w0, w1), got, strict=True):
                    for _ in range(2 if kind == GATE else 1):
                        e = recv(w)
                        seen.append((e["type"], e.get("gate", e.get("slot"))))
            expected = [
                ("gate-closed", 0),
                ("cleared", 0),
                ("gate-closed", 1),
                ("cleared", 1),
                ("gate-closed", 2),
                ("cleared", 2),
                ("settled", 0),
                ("settled", 1),
                ("settled", 2),
            ]
            assert got == [expected, expected]
            marker = Published({"type": "settled", "slot": 99, "at": ""})
            for app in apps:
                assert app.state.stream.catch_up() == 0  # nothing left to publish
                app.state.stream.publish(marker)
            for w in (w0, w1):
                w.send_text("ping")  # ignored
                assert recv(w)["slot"] == 99  # no step came twice before the marker
    live.engine.dispose()


def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher(tmp_path: Any) -> None:
    live, _ = open_live(f"sqlite:///{tmp_path / 's.db'}")
    b = Broadcaster(live.engine, live.setup, queue_size=3)
    event = Published({"type": "settled", "slot": 0, "at": ""})

    async def main() -> list[Any]:
        slow, fast = b.subscribe(), b.subscribe(maxsize=100)
        # the publisher's thread hands over 10 events without waiting for anyone
        t = threading.Thread(target=lambda: [b.publish(event) for _ in range(10)])
        t.start()
        t.join(timeout=5)
        assert not t.is_alive()
        got = []
        for _ in range(10):
            await asyncio.sleep(0)  # the loop runs the hand-overs
            while not fast.queue.empty():
                got.append(fast.queue.get_nowait())
        assert slow.dropped and not fast.dropped
        assert slow.queue.get_nowait() is DROPPED and slow.queue.empty()
        b.unsubscribe(slow)
        b.unsubscribe(fast)
        return got

    assert len(asyncio.run(main())) == 10
    assert b.n_subscribers == 0
    live.engine.dispose()


def test_the_own_clocks_events_are_streamed_once_and_match_their_rebuild(tmp_path: Any) -> None:
    """A step this server's clock did is streamed with the clock's own event (its `at` is the
    clock's time), once; a server that only finds the step in the tables rebuilds the same
    event."""
    live, _ = open_live(f"sqlite:///{tmp_path / 'own.db'}")
    order_slot_0(live)
    meter_slot_0(live)
    heard, found = (Broadcaster(live.engine, live.setup) for _ in range(2))  # not started
    now = FakeClock(GATE_0)
    clock = Clock(live.engine, live.setup, now=now, on_event=heard.on_event)

    async def main() -> list[list[Published]]:
        subs = [heard.subscribe(), found.subscribe()]
        for t in (GATE_0, SETTLE_0):
            now.t = t
            await anyio.to_thread.run_sync(clock.run_due)
        for b in (heard, found):
            assert await anyio.to_thread.run_sync(b.catch_up) == 4  # gates 0, 1, 2, settle 0
            assert await anyio.to_thread.run_sync(b.catch_up) == 0
        for _ in range(3):
            await asyncio.sleep(0)  # the loop runs the hand-overs
        out = []
        for sub in subs:
            items = []
            while not sub.queue.empty():
                item = sub.queue.get_nowait()
                assert isinstance(item, Published)
                items.append(item)
            out.append(items)
        return out

    own, rebuilt = asyncio.run(main())
    kinds = [(p.event["type"], p.event.get("gate", p.event.get("slot"))) for p in own]
    assert kinds == [
        ("gate-closed", 0),
        ("cleared", 0),
        ("gate-closed", 1),
        ("fallback", 1),  # the clock reached gate 1 after its deadline
        ("gate-closed", 2),
        ("cleared", 2),
        ("settled", 0),
    ]
    assert "deadline" in own[3].event["reason"]
    iso = dt.datetime.fromtimestamp(GATE_0, tz=dt.UTC).isoformat()
    assert own[1].event["at"] == iso  # the clock's event, not read back from the tables
    assert own[-1].event["at"] == dt.datetime.fromtimestamp(SETTLE_0, tz=dt.UTC).isoformat()
    for a, b in zip(own, rebuilt, strict=True):
        assert {k: v for k, v in a.event.items() if k != "at"} == {
            k: v for k, v in b.event.items() if k != "at"
        }
        np.testing.assert_array_equal(a.committed_kwh, b.committed_kwh)
    live.engine.dispose()
