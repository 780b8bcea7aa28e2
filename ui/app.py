"""The app factory: FastAPI with server-rendered, autoescaped Jinja2 pages and a small JSON API.

Why no JavaScript build and no CDN: the pages are plain HTML forms and links (a few lines of inline
script add keyboard shortcuts), so the UI works offline and nothing is fetched from elsewhere;
FastAPI's own docs pages (which load scripts from a CDN) are switched off, the OpenAPI schema stays
at /api/openapi.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from teacherforge.store.database import DatabaseError
from teacherforge.ui import api, pages
from teacherforge.ui.data import Database, Lander
from teacherforge.ui.security import guard
from teacherforge.ui.settings import UiSettings

TEMPLATES = Path(__file__).parent / "templates"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def environment() -> jinja2.Environment:
    """Autoescape on for every template: model and document text is always shown as text."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters.update(when=_when, pct=_pct)
    return env


class Pages:
    """Renders a template with what every page needs: the nonce, the CSRF token, the read notice."""

    def __init__(self, settings: UiSettings, database: Database):
        self.env, self.settings, self.database = environment(), settings, database

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            nonce=request.state.nonce, csrf=self.settings.csrf, notice=self.database.notice,
            db_name=self.settings.db.name, pending_count=len(self.database.pending()), **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)


def create_app(settings: UiSettings, land_in_background: bool = True) -> FastAPI:
    database = Database(settings.db)
    lander = Lander(database, settings.land_interval_s) if land_in_background else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lander is not None:
            lander.start()
        yield
        if lander is not None:
            lander.stop()

    app = FastAPI(title="TeacherForge review UI", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json", lifespan=lifespan)  # fmt: skip
    app.state.settings, app.state.database = settings, database
    app.state.pages = Pages(settings, database)
    app.middleware("http")(guard(settings))

    @app.exception_handler(DatabaseError)
    async def unreadable(request: Request, exc: DatabaseError) -> Response:
        """A writer is starting and has no snapshot yet (or the file is gone): say so, retry soon."""
        headers = {"Retry-After": "3"}
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=503, headers=headers)
        response = app.state.pages.render(request, "error.html", 503, message=str(exc), refresh=3)
        response.headers.update(headers)
        return response

    app.include_router(api.router)
    app.include_router(pages.router)
    return app
