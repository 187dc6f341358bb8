"""The API's contract: who may call what (every endpoint × role, and another participant's
objects), 1,000 malformed orders and readings refused with a message and nothing stored, and
Schemathesis against the served OpenAPI description (no server error, responses conform)."""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import func, select

from peergrid.server.schema import idempotency, orders, readings
from tests.server.live_market import START, Live, open_live

#: Who may use each endpoint ("public": anyone, no token needed).
ACCESS: dict[tuple[str, str], set[str]] = {
    ("GET", "/v1/health"): {"public"},
    ("GET", "/v1/market"): {"public"},
    ("GET", "/v1/clock"): {"public"},
    ("GET", "/v1/slots"): {"public"},
    ("GET", "/v1/ledger/head"): {"public"},
    ("GET", "/v1/me"): {"participant", "operator", "network-operator"},
    ("POST", "/v1/orders"): {"participant"},
    ("GET", "/v1/orders"): {"participant"},
    ("GET", "/v1/orders/{order_id}"): {"participant"},
    ("POST", "/v1/readings"): {"participant"},
    ("GET", "/v1/readings"): {"participant"},
    ("GET", "/v1/commitments"): {"participant"},
    ("GET", "/v1/bill"): {"participant"},
    ("PUT", "/v1/envelopes"): {"operator", "network-operator"},
    ("GET", "/v1/envelopes"): {"participant", "operator", "network-operator"},
    ("GET", "/v1/participants"): {"operator"},
    ("GET", "/v1/operator/status"): {"operator"},
}
ROLES = ("anonymous", "participant", "operator", "network-operator")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("contract") / "peergrid.db"
    lv, client = open_live(f"sqlite:///{db}")
    with client:
        yield lv
    lv.engine.dispose()


def _routes(live: Live) -> list[tuple[str, str]]:
    out = []
    for r in live.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and r.path.startswith("/v1/"):
            out.extend((m, r.path) for m in sorted(r.methods))
    return out


def _body(live: Live, method: str, path: str) -> dict[str, Any] | None:
    if path == "/v1/orders" and method == "POST":
        return live.order_body(0, -1, [(0, "sell", 0.1, 0.1)])
    if path == "/v1/readings" and method == "POST":
        return {
            "readings": [
                {
                    "timestamp": live.boundary_time(0),
                    "import_register": 1.0,
                    "export_register": 1.0,
                    "unit": "kWh",
                }
            ]
        }
    if path == "/v1/envelopes" and method == "PUT":
        return {"envelopes": [{"slot": 3, "participant": "home-0", "import_limit_kwh": 5.0}]}
    return None


def test_every_endpoint_is_classified(live: Live) -> None:
    routes = set(_routes(live))
    assert routes - set(ACCESS) == set(), "a new endpoint needs its row in ACCESS"
    assert set(ACCESS) - routes == set()


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_by_every_role(live: Live, role: str) -> None:
    who = {
        "participant": live.members[0],
        "operator": live.operator,
        "network-operator": live.grid,
    }.get(role)
    headers = {} if who is None else live.auth(who)
    for method, path in _routes(live):
        allowed = ACCESS[(method, path)]
        url = path.replace("{order_id}", "1")
        r = live.client.request(
            method,
            url,
            json=_body(live, method, path),
            headers={**headers, "Idempotency-Key": f"auth-{role}-{method}-{path}"},
        )
        if "public" in allowed or role in allowed:
            assert r.status_code not in (401, 403), (role, method, path, r.text)
        elif role == "anonymous":
            assert r.status_code == 401, (role, method, path, r.text)
        else:
            assert r.status_code == 403, (role, method, path, r.text)
            assert role in r.json()["detail"]


def test_a_participant_never_sees_another_participants_objects(live: Live) -> None:
    mine = live.post_orders(1, live.order_body(1, -1, [(0, "buy", 0.2, 0.3)]))
    assert mine.status_code == 201
    oid = mine.json()["order_id"]
    other = live.auth(live.members[2])
    assert live.client.get(f"/v1/orders/{oid}", headers=other).status_code == 404
    assert (
        live.client.get(f"/v1/orders/{oid}", headers=live.auth(live.members[1])).status_code == 200
    )
    assert all(o["order_id"] != oid for o in live.client.get("/v1/orders", headers=other).json())
    # the same Idempotency-Key of another participant is another key: no stored result leaks
    r = live.post_orders(2, live.order_body(2, -1, [(0, "buy", 0.3, 0.3)]), key="shared")
    s = live.post_orders(1, live.order_body(1, -1, [(0, "buy", 0.25, 0.3)]), key="shared")
    assert r.status_code == s.status_code == 201 and r.json()["order_id"] != s.json()["order_id"]
    # a participant cannot sign for another: the other's index in the message fails its key
    forged = live.order_body(2, -1, [(0, "sell", 0.3, 0.1)], key=live.keys[1])
    assert live.post_orders(1, forged).status_code == 422
    # envelopes: a participant sees its own only
    live.client.put(
        "/v1/envelopes",
        json={
            "envelopes": [
                {"slot": 4, "participant": "home-2", "export_limit_kwh": 1.0},
                {"slot": 4, "participant": "home-1", "export_limit_kwh": 1.0},
            ]
        },
        headers=live.auth(live.grid),
    )
    got = live.client.get("/v1/envelopes", headers=live.auth(live.members[1])).json()
    assert got and {e["participant"] for e in got} == {"home-1"}


def _malformed_orders(live: Live, rng: random.Random) -> Iterator[tuple[str, Any]]:
    good = live.order_body(0, -1, [(0, "sell", 0.3, 0.1)])
    mutations = [
        lambda b: b.pop("signature"),
        lambda b: b.pop("orders"),
        lambda b: b.update(signature="zz" * 64),
        lambda b: b.update(signature="00" * 64),
        lambda b: b.update(signature="ab"),
        lambda b: b.update(orders=[]),
        lambda b: b.update(gate_slot="soon"),
        lambda b: b.update(gate_slot=10**6),
        lambda b: b.update(extra=1),
        lambda b: b["orders"][0].update(side="hold"),
        lambda b: b["orders"][0].update(quantity_kwh=-rng.uniform(0, 5)),
        lambda b: b["orders"][0].update(quantity_kwh=0),
        lambda b: b["orders"][0].update(quantity_kwh="1.0kWh"),
        lambda b: b["orders"][0].update(quantity_kwh=rng.uniform(1e3, 1e9)),
        lambda b: b["orders"][0].update(limit_price=rng.uniform(2, 1e6)),
        lambda b: b["orders"][0].update(limit_price=-rng.uniform(2, 1e6)),
        lambda b: b["orders"][0].update(slot=rng.randint(1, 10**5)),
        lambda b: b["orders"][0].update(slot=-rng.randint(1, 100)),
        lambda b: b["orders"][0].pop("side"),
        lambda b: b["orders"][0].update(colour="red"),
        lambda b: b["orders"].append(copy.deepcopy(b["orders"][0]) | {"quantity_kwh": 7.0}),
        lambda b: b["orders"][0].update(quantity_kwh=0.31),  # signature no longer matches
    ]
    raw_texts = [
        "",
        "{",
        "[]",
        "null",
        '{"gate_slot": NaN}',
        "\x00\x01",
        '{"orders": [{"slot": 0}]}',
    ]
    for k in range(500):
        if k % 10 == 9:
            yield "text", rng.choice(raw_texts) + str(k)
            continue
        b = copy.deepcopy(good)
        for _ in range(rng.randint(1, 2)):
            with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                rng.choice(mutations)(b)
        if b == good:
            b["signature"] = "00" * 64
        yield "json", b


def _malformed_readings(live: Live, rng: random.Random) -> Iterator[tuple[str, Any]]:
    ts = live.boundary_time
    good = {"timestamp": ts(0), "import_register": 10.0, "export_register": 5.0, "unit": "kWh"}
    mutations = [
        lambda r: r.update(import_register=-rng.uniform(0.1, 100)),
        lambda r: r.update(export_register=-rng.uniform(0.1, 100)),
        lambda r: r.update(unit=rng.choice(["MWh", "kwh", "J", "", "kW"])),
        lambda r: r.update(timestamp=ts(rng.randint(3, 10**4))),  # the future
        lambda r: r.update(timestamp=ts(0)[:-6]),  # no offset
        lambda r: r.update(timestamp="yesterday"),
        lambda r: r.update(timestamp=rng.randint(0, 2**31)),
        lambda r: r.update(timestamp=ts(-rng.randint(2, 50))),  # before the market
        lambda r: r.update(import_register="12"),
        lambda r: r.update(import_register=None),
        lambda r: r.pop("unit"),
        lambda r: r.pop("timestamp"),
        lambda r: r.update(meter="x"),
    ]
    for k in range(500):
        if k % 10 == 9:
            text = (
                '{"readings": [{"timestamp": "%s", "import_register": %s, '
                '"export_register": 1, "unit": "kWh"}]}'
            )
            yield (
                "text",
                text % (ts(0), rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "--1"])),
            )
            continue
        r = dict(good)
        for _ in range(rng.randint(1, 2)):
            with contextlib.suppress(KeyError):
                rng.choice(mutations)(r)
        if r == good:
            r["unit"] = "kW"
        yield "json", {"readings": [r]}


def _counts(live: Live) -> tuple[int, int, int]:
    with live.engine.connect() as conn:
        return tuple(
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (orders, readings, idempotency)
        )  # type: ignore[return-value]


def test_a_thousand_malformed_orders_and_readings(live: Live) -> None:
    rng = random.Random(20261206)
    live.clock.t = START - 5 * 10.0
    before = _counts(live)
    seen = 0
    for path, gen in (("/v1/orders", _malformed_orders), ("/v1/readings", _malformed_readings)):
        for k, (kind, body) in enumerate(gen(live, rng)):
            headers = {
                **live.auth(live.members[0]),
                "Idempotency-Key": f"bad-{path}-{k}",
                "Content-Type": "application/json",
            }
            if kind == "text":
                r = live.client.post(path, content=body.encode("utf-8", "replace"), headers=headers)
            else:
                r = live.client.post(path, content=json.dumps(body), headers=headers)
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
            detail = r.json()["detail"]
            assert detail and (isinstance(detail, str) or all(d.get("msg") for d in detail)), r.text
            seen += 1
    assert seen == 1000
    after = _counts(live)
    assert after[:2] == before[:2], "a malformed order or reading was stored"


@pytest.fixture(scope="module")
def api_schema(live: Live) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", live.client.app)


def test_schemathesis_no_server_errors_and_conforming_responses(
    live: Live, api_schema: Any
) -> None:
    """Every operation with generated inputs (derandomised), as a role that may call it:
    never a 5xx, and every response conforms to the schema the description gives."""
    tokens = {
        "participant": live.members[0],
        "operator": live.operator,
        "network-operator": live.grid,
    }
    checks = [not_a_server_error, response_schema_conformance]
    calls = 0
    for result in api_schema.get_all_operations():
        op = result.ok()
        allowed = ACCESS.get((op.method.upper(), op.path), {"public"})
        who = next(
            (tokens[r] for r in ("participant", "operator", "network-operator") if r in allowed),
            None,
        )
        headers = {} if who is None else live.auth(who)
        calls += _fuzz(op, headers, checks)
    assert calls > 100


def _fuzz(op: Any, headers: dict[str, str], checks: list[Any]) -> int:
    """Schemathesis's generated cases of one operation (derandomised); how many ran."""
    calls = 0

    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        nonlocal calls
        extra = {**headers, "Idempotency-Key": f"st-{op.path}-{calls}"}
        case.call_and_validate(headers=extra, checks=checks)
        calls += 1

    run()
    return calls
