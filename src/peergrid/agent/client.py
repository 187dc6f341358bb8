"""The agent's side of the server's HTTP API (docs/live.md), with `httpx`.

Every request that may be repeated safely is retried on a transport error (the connection
failed, the server did not answer in time) and on an answer that says "try again" (409: the same
Idempotency-Key is still in flight; 5xx: the server or its database failed before storing
anything), with exponential backoff, a bounded number of times and never past a deadline. An
order submission keeps its Idempotency-Key through its retries, so the server stores it at most
once and a retry gets the first answer; a reading is idempotent by itself (the same reading
again is a duplicate, not an error).

Problems the agent cannot fix by waiting — no server at the address, a token the server does
not know, a key that does not match the one registered — are `AgentError`s: the command line
prints them and exits with code 2.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from peergrid.errors import InputError

#: Answers that mean "the same request may succeed later".
RETRY_STATUSES = frozenset({409, 500, 502, 503, 504})


class AgentError(InputError):
    """The agent cannot go on: the message says why and what to check (exit code 2)."""


@dataclass(frozen=True)
class Reply:
    """A server's answer: the HTTP status and the decoded JSON body (None if not JSON)."""

    status: int
    body: Any

    @property
    def detail(self) -> str:
        """The server's reason for a refusal (FastAPI's `detail`), else the body as text."""
        if isinstance(self.body, dict) and "detail" in self.body:
            return str(self.body["detail"])
        return str(self.body)


class Unreachable(AgentError):
    """The server did not answer (transport errors through every retry)."""


class MarketClient:
    """A client of one server. `http` replaces the HTTP client (tests pass one bound to an app);
    `now` and `sleep` are the wall clock [s since the epoch] and its sleep."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 4,
        backoff_s: float = 0.05,
        http: httpx.Client | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.now = now
        self.sleep = sleep
        self._own = http is None
        self.http = http or httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0))
        )

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, int] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        deadline_s: float | None = None,
    ) -> Reply:
        """One request with its retries (module docstring); `deadline_s` [s since the epoch]:
        no retry starts after it.

        Raises:
            Unreachable: a transport error on the last attempt.
        """
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        attempt = 0
        while True:
            try:
                r = self.http.request(method, path, json=json, params=params, headers=h)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
                raise AgentError(
                    f"not a server URL: {self.base_url!r} ({e}); e.g. http://127.0.0.1:8000"
                ) from e
            except httpx.TransportError as e:
                if not self._may_retry(attempt, deadline_s):
                    raise Unreachable(
                        f"cannot reach the peergrid server at {self.base_url} "
                        f"({type(e).__name__}: {e}); is `peergrid serve` running there?"
                    ) from e
            else:
                reply = Reply(r.status_code, _json(r))
                if reply.status not in retry_statuses or not self._may_retry(attempt, deadline_s):
                    return reply
            self.sleep(min(self.backoff_s * 2**attempt, 2.0))
            attempt += 1

    def _may_retry(self, attempt: int, deadline_s: float | None) -> bool:
        wait = min(self.backoff_s * 2**attempt, 2.0)
        return attempt < self.retries and (deadline_s is None or self.now() + wait < deadline_s)

    # --- the endpoints the agent uses -----------------------------------------------------------

    def market(self) -> dict[str, Any]:
        """`GET /v1/market`: the market's calendar, limits and members.

        Raises:
            AgentError: no server, no market open, or an answer that is not a market.
        """
        r = self.request("GET", "/v1/market", retry_statuses=frozenset({502, 504}))
        if r.status == 503:
            raise AgentError(f"{self.base_url}: {r.detail}")
        if r.status != 200 or not isinstance(r.body, dict):
            raise AgentError(
                f"{self.base_url}/v1/market answered {r.status} ({r.detail}): is this a peergrid "
                "server?"
            )
        return r.body

    def me(self, token: str, name: str) -> dict[str, Any]:
        """`GET /v1/me`: the account of `token`, checked to be participant `name`.

        Raises:
            AgentError: the server does not know the token, or it is another account's.
        """
        r = self.request("GET", "/v1/me", token=token, retry_statuses=frozenset({502, 504}))
        if r.status == 401:
            raise AgentError(
                f"the server refused the API token given for {name!r} ({r.detail}); use the "
                "token `peergrid admin add-participant` printed for it"
            )
        if r.status != 200 or not isinstance(r.body, dict):
            raise AgentError(f"{self.base_url}/v1/me answered {r.status} ({r.detail})")
        if r.body.get("name") != name or r.body.get("role") != "participant":
            raise AgentError(
                f"the token given for {name!r} belongs to {r.body.get('role')} "
                f"{r.body.get('name')!r}"
            )
        return r.body

    def post_orders(
        self, token: str, body: dict[str, Any], *, deadline_s: float | None = None
    ) -> Reply:
        """`POST /v1/orders` with a fresh Idempotency-Key, kept through the retries."""
        key = f"agent-{body['gate_slot']}-{uuid.uuid4().hex}"
        return self.request(
            "POST",
            "/v1/orders",
            token=token,
            json=body,
            headers={"Idempotency-Key": key},
            deadline_s=deadline_s,
        )

    def post_readings(
        self, token: str, body: dict[str, Any], *, deadline_s: float | None = None
    ) -> Reply:
        """`POST /v1/readings` (a reading repeated is a duplicate: safe to retry; a 409 here is
        a different reading stored for the same instant, which no retry changes)."""
        return self.request(
            "POST",
            "/v1/readings",
            token=token,
            json=body,
            retry_statuses=RETRY_STATUSES - {409},
            deadline_s=deadline_s,
        )

    def commitments(
        self, token: str, from_slot: int, to_slot: int, *, deadline_s: float | None = None
    ) -> Reply:
        """`GET /v1/commitments` of the slots [from_slot, to_slot)."""
        return self.request(
            "GET",
            "/v1/commitments",
            token=token,
            params={"from_slot": from_slot, "to_slot": to_slot},
            deadline_s=deadline_s,
        )


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text
