"""The dashboard end to end: headless Chromium (Debian's, driven by Playwright) against a real
server on loopback — uvicorn serving `create_app` in a thread — whose market clock runs on the
wall clock with 1 s slots. The test signs orders and reports meter readings over HTTP like home
agents do, and checks what each page shows against the API."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.server.admin import Registered, add_participant
from peergrid.server.app import create_app
from peergrid.server.dashboard import ASSETS, PAGES
from peergrid.server.db import engine_for, migrate
from peergrid.server.market import open_market
from tests.server.live_market import scenario, signed_orders

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the dashboard's browser tests drive Debian's chromium at /usr/bin/chromium "
    "(apt-get install chromium); it is not installed",
)

SLOT_S = 1.0  # wall-clock slot length [s]
N_SLOTS = 8
LEAD_S = 4.0  # from opening the market to slot 0 (its gate closes one slot earlier) [s]
WAIT_MS = 15_000  # the longest a page may take to show something [ms]


def test_the_pages_and_assets_are_served_from_the_package(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'p.db'}")
    migrate(engine)
    with TestClient(create_app(engine)) as client:
        home = client.get("/")
        assert home.status_code == 200 and 'data-page="community"' in home.text
        assert "default-src 'self'" in home.headers["content-security-policy"]
        for name in PAGES:
            page = client.get(f"/dashboard/{name}")
            assert page.status_code == 200, name
            assert page.headers["content-type"].startswith("text/html")
            assert f'data-page="{name}"' in page.text
            # nothing from elsewhere: every script and style sheet is the server's own
            assert "http://" not in page.text and "https://" not in page.text
        for name, media in ASSETS.items():
            r = client.get(f"/dashboard/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == media
            text = r.text.replace('"http://www.w3.org/2000/svg"', "")  # a name, not a fetch
            assert "http://" not in text and "https://" not in text
        assert client.get("/dashboard", follow_redirects=False).headers["location"] == (
            "/dashboard/community"
        )
        assert client.get("/dashboard/nope").status_code == 404
        assert client.get("/dashboard/static/__init__.py").status_code == 404
        paths = client.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p == "/" or p.startswith("/dashboard")]
    engine.dispose()


@dataclass
class Served:
    """A running server and what the test knows about its market."""

    url: str
    http: httpx.Client
    members: list[Registered]
    operator: Registered
    grid: Registered
    order_ids: list[int]
    end_s: float  # when the last slot has settled [s since the epoch]

    def get(self, path: str, who: Registered | None = None) -> Any:
        headers = {} if who is None else {"Authorization": f"Bearer {who.token}"}
        r = self.http.get(path, headers=headers)
        r.raise_for_status()
        return r.json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _report_meters(
    url: str, members: list[Registered], start_s: float, stop: threading.Event
) -> list[str]:
    """Members 0 and 1 report their registers at each slot boundary, a little ahead of it (the
    server accepts a meter clock up to 5 s ahead); member 2's meter stays silent."""
    errors: list[str] = []
    with httpx.Client(base_url=url, timeout=5) as http:
        for b in range(N_SLOTS + 1):
            t_b = start_s + b * SLOT_S
            if stop.wait(max(t_b - 2.0 - time.time(), 0.0)):
                break
            at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t_b))
            for who, (imp, exp) in zip(members[:2], [(0.0, 0.8), (0.6, 0.0)], strict=True):
                body = {
                    "readings": [
                        {
                            "timestamp": at,
                            "import_register": 100 + imp * b,
                            "export_register": 50 + exp * b,
                            "unit": "kWh",
                        }
                    ]
                }
                r = http.post(
                    "/v1/readings", json=body, headers={"Authorization": f"Bearer {who.token}"}
                )
                if r.status_code != 200:
                    errors.append(f"boundary {b}, {who.name}: {r.status_code} {r.text}")
    return errors


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("dashboard") / "peergrid.db"
    engine = engine_for(f"sqlite:///{db}")
    migrate(engine)
    keys = participant_keys(11, 3)
    members = [
        add_participant(engine, f"home-{i}", "participant", public_bytes(k).hex())
        for i, k in enumerate(keys)
    ]
    operator = add_participant(engine, "operator", "operator")
    grid = add_participant(engine, "dso", "network-operator")
    start_s = math.ceil(time.time() + LEAD_S)
    setup = open_market(
        engine, scenario(), start_unix_s=start_s, slot_seconds=SLOT_S, n_slots=N_SLOTS
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    stop = threading.Event()
    meters: list[list[str]] = []
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        with httpx.Client(base_url=url, timeout=5) as http:
            # the network operator's envelope for home-2 in the last slot
            r = http.put(
                "/v1/envelopes",
                json={"envelopes": [{"slot": 5, "participant": "home-2", "import_limit_kwh": 2}]},
                headers={"Authorization": f"Bearer {grid.token}"},
            )
            assert r.status_code == 200, r.text
            # every slot: home-0 sells 1 kWh, home-1 and home-2 bid for 1 kWh each
            order_ids = []
            for s in range(N_SLOTS):
                for i, side, price in [(0, "sell", 0.05), (1, "buy", 0.30), (2, "buy", 0.28)]:
                    body = signed_orders(setup, keys[i], i, s - 1, [(s, side, 1.0, price)])
                    r = http.post(
                        "/v1/orders",
                        json=body,
                        headers={
                            "Authorization": f"Bearer {members[i].token}",
                            "Idempotency-Key": f"slot-{s}-member-{i}",
                        },
                    )
                    assert r.status_code == 201, (
                        f"slot {s}, member {i}: {r.text} (the server took too long to start?)"
                    )
                    order_ids.append(int(r.json()["order_id"]))
            reporter = threading.Thread(
                target=lambda: meters.append(_report_meters(url, members, start_s, stop))
            )
            reporter.start()
            cal = setup.calendar
            yield Served(
                url,
                http,
                members,
                operator,
                grid,
                order_ids,
                end_s=cal.settle_time_s(N_SLOTS - 1),
            )
            stop.set()
            reporter.join(timeout=10)
            assert meters == [[]], meters
    finally:
        stop.set()
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield p
    finally:
        context.close()
    assert errors == [], errors


def _sign_in(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.click("#login button[type=submit]")


@needs_chromium
def test_the_community_page_shows_the_prices_and_updates_live(served: Served, page: Any) -> None:
    from playwright.sync_api import expect

    assert not served.get("/v1/clock")["finished"]
    page.goto(served.url + "/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#market")).to_contain_text("sdr")
    before = page.locator("#slots-table tbody").inner_text()
    # the page does not poll: only an event from /v1/stream makes it fetch the slots again
    page.wait_for_function(
        "before => document.querySelectorAll('#events li[data-type]').length > 0"
        " && document.querySelector('#slots-table tbody').innerText !== before",
        arg=before,
    )
    api = served.get("/v1/slots")
    shown = page.locator("#slots-table tbody tr[data-slot]")
    assert shown.count() >= 1
    s = api[0]
    assert s["clearing_price"] is None  # SDR publishes a buy and a sell price, no single one
    row = page.locator(f"#slots-table tr[data-slot='{s['slot']}']")
    assert row.locator("td.clearing").inner_text() == "—"
    for k in ("buy", "sell", "retail", "feed-in"):
        value = s[f"{k.replace('-', '_')}_price"]
        assert value is not None
        cell = row.locator(f"td.{k}")
        assert float(cell.inner_text()) == pytest.approx(value, abs=5e-5)
        assert float(cell.get_attribute("data-value")) == value
    assert s["buy_price"] < s["retail_price"]  # the members bought below the retail price
    assert page.locator("#prices-chart svg circle").count() >= 4  # buy, sell, retail, feed-in
    assert page.locator("#depth-chart svg rect").count() >= 1
    expect(page.locator("[data-kpi=self-sufficiency]")).to_be_visible()


@needs_chromium
def test_the_participant_page_shows_its_own_orders_and_commitments(
    served: Served, page: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(served.url + "/dashboard/participant")
    expect(page.locator("#content")).to_be_hidden()
    _sign_in(page, served.members[1].token)
    expect(page.locator("#whoami")).to_contain_text("home-1")
    own = served.get("/v1/orders", served.members[1])
    assert len(own) == N_SLOTS
    for o in own:
        expect(page.locator(f"#orders-table tr[data-order-id='{o['order_id']}']")).to_have_count(1)
    others = set(served.order_ids) - {o["order_id"] for o in own}
    assert page.locator("#orders-table tr[data-order-id]").count() == N_SLOTS
    for oid in others:
        assert page.locator(f"#orders-table tr[data-order-id='{oid}']").count() == 0
    # once slot 0 has cleared (live or on load) its commitment is the API's
    row = page.locator("#commitments-table tr[data-slot='0'] td.committed")
    expect(row).to_have_count(1)
    mine = served.get("/v1/commitments", served.members[1])[0]
    assert float(row.get_attribute("data-value")) == mine["committed_kwh"]
    expect(page.locator("#battery")).to_contain_text("nothing about batteries")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#live")).to_contain_text("participant")
    # the token stays in the tab: a reload signs in again
    page.reload()
    expect(page.locator("#whoami")).to_contain_text("home-1")


@needs_chromium
def test_the_network_page_shows_envelopes_no_feeder_and_the_metered_net(
    served: Served, page: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(served.url + "/dashboard/network")
    _sign_in(page, served.grid.token)
    row = page.locator("#envelopes-table tr[data-slot='5'][data-participant='home-2'] td.import")
    expect(row).to_have_attribute("data-value", "2")
    expect(page.locator("#voltages")).to_contain_text("No feeder configured")
    expect(page.locator("#live")).to_contain_text("network-operator")
    # a slot settling while the page is open brings the unsuppressed community net
    metered = page.locator("#net-table td.metered:not([data-value=''])").first
    expect(metered).to_be_visible()
    slot = int(metered.locator("xpath=..").get_attribute("data-slot"))
    nets = [
        c["metered_kwh"]
        for m in served.members
        for c in served.get("/v1/commitments", m)
        if c["slot"] == slot
    ]
    assert float(metered.get_attribute("data-value")) == pytest.approx(sum(nets))


@needs_chromium
def test_the_operator_page_shows_the_ledger_accounts_and_meter_quality(
    served: Served, page: Any
) -> None:
    from playwright.sync_api import expect

    deadline = time.monotonic() + max(served.end_s - time.time(), 0) + 10
    while not served.get("/v1/clock")["finished"]:
        assert time.monotonic() < deadline, "the market did not finish"
        time.sleep(0.2)
    page.goto(served.url + "/dashboard/operator")
    _sign_in(page, served.operator.token)
    head = served.get("/v1/ledger/head")
    expect(page.locator("#tree-size")).to_have_text(str(head["tree_size"]))
    for name in ("home-0", "home-1", "home-2", "operator", "dso"):
        expect(page.locator(f"#participants-table tr[data-account='{name}']")).to_have_count(1)
    quality = served.get("/v1/operator/status", served.operator)["meter_data"]["intervals"]
    assert quality.get("estimated", 0) >= N_SLOTS  # home-2's meter never reported
    expect(page.locator("#meter-quality")).to_contain_text(f"{quality['estimated']}")
    expect(page.locator("[data-kpi=clock]")).to_contain_text("finished")
    # a participant's token is not enough here
    page.click("#logout")
    _sign_in(page, served.members[0].token)
    expect(page.locator("#whoami")).to_contain_text("this page is for operator accounts")
