"""The live platform's HTTP API (FastAPI): the first endpoints — health and who am I.

Endpoints are plain `def` functions, so FastAPI runs them (and their database work) in its
thread pool, off the event loop. Accounts authenticate with their API token as a bearer token
(`server.admin`); a missing or unknown token is 401. The OpenAPI description is served at
`/openapi.json`; the interactive docs page is off until its assets are served locally (FastAPI's
default loads them from a CDN, and the platform must work offline).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from peergrid.server.admin import authenticate
from peergrid.server.db import current_revision


class Health(BaseModel):
    """The server answers and its database is reachable and migrated."""

    status: str
    database: str
    revision: str | None


class Account(BaseModel):
    """The account a token belongs to."""

    id: int
    name: str
    role: str


_bearer = HTTPBearer(auto_error=False)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def current_account(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> dict[str, Any]:
    """The account of the request's bearer token; 401 without a valid one."""
    found = None
    if credentials is not None:
        found = authenticate(_engine(request), credentials.credentials)
    if found is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="a valid API token is needed (Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


def create_app(engine: Engine) -> FastAPI:
    """The API on a migrated database."""
    app = FastAPI(
        title="peergrid",
        summary="A peer-to-peer energy community: orders, meter readings, settlement, ledger.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )

    app.state.engine = engine

    @app.get("/v1/health", response_model=Health, tags=["platform"])
    def health() -> Health:
        """Whether the server and its database answer, and the schema's revision."""
        return Health(status="ok", database=engine.dialect.name, revision=current_revision(engine))

    @app.get(
        "/v1/me",
        response_model=Account,
        tags=["accounts"],
        responses={401: {"description": "no or an unknown API token"}},
    )
    def me(who: Annotated[dict[str, Any], Depends(current_account)]) -> Account:
        """The account the request's token belongs to."""
        return Account(**who)

    return app
