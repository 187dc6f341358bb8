"""The dashboard: four pages the server serves as static files (docs/live.md "Dashboard and
streams").

Each page is plain HTML with one shared script (`dashboard.js`) and style sheet
(`dashboard.css`), shipped in the package: no CDN, no build step, so the pages work offline. The
script reads the public and role endpoints of the API with the token a person enters (kept in
the browser tab's sessionStorage), draws its charts as inline SVG, and listens to `/v1/stream`
for live updates.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import RedirectResponse, Response

#: Each page's name in the URL and its file.
PAGES = {
    "community": "community.html",
    "participant": "participant.html",
    "operator": "operator.html",
    "network": "network.html",
}

#: The assets the pages load, with their media types.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

#: Only this origin's script, styles and API (HTTP and WebSocket); nothing from elsewhere.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

dashboard_router = APIRouter(include_in_schema=False)


def _file(name: str) -> bytes:
    return files(__package__).joinpath(name).read_bytes()


@dashboard_router.get("/")
def home() -> Response:
    """The community's page."""
    return page("community")


@dashboard_router.get("/dashboard")
def dashboard_home() -> RedirectResponse:
    return RedirectResponse("/dashboard/community")


@dashboard_router.get("/dashboard/{name}")
def page(name: str) -> Response:
    """One of the dashboard's pages (`PAGES`)."""
    if name not in PAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dashboard page {name!r}")
    return Response(_file(PAGES[name]), media_type="text/html; charset=utf-8", headers=_HEADERS)


@dashboard_router.get("/dashboard/static/{name}")
def asset(name: str) -> Response:
    """The pages' script and style sheet (`ASSETS`)."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dashboard asset {name!r}")
    return Response(_file(name), media_type=ASSETS[name], headers=_HEADERS)
