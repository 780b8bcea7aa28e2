"""The HTML pages: samples list, one sample, one event (a model call's prompt and reply), dashboard.

Why the list query travels along: a sample page opened from a filtered list keeps that query, so
"next" (j) walks the same list a person is reviewing, and approve/reject can move on by themselves.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from teacherforge.store.ui_queries import event_by_id
from teacherforge.ui import dashboard, sample_page
from teacherforge.ui.listing import DIMENSIONS, FACETS, ListQuery, listing, neighbours, review_state

router = APIRouter()
LIVE_REFRESH_S = 5


@router.get("/")
def home() -> Response:
    return RedirectResponse("/samples", status_code=303)


@router.get("/samples")
def samples(request: Request) -> Response:
    database, pages = request.app.state.database, request.app.state.pages
    query = ListQuery.parse(request.query_params)
    pending = database.pending_ids()
    with database.reading():
        found = listing(database.index, query, pending)
        runs = sorted(database.index.runs.values(), key=lambda r: str(r.started_at), reverse=True)
        running = any(r.status == "running" for r in runs if r.run_id == found.run)
    return pages.render(request, "samples.html", listing=found, query=query, runs=runs, facets=FACETS,
                        dimensions=DIMENSIONS, pending=pending, review_state=review_state,
                        refresh=LIVE_REFRESH_S * 2 if running else None)  # fmt: skip


@router.get("/samples/{sample_id}")
def sample(request: Request, sample_id: str) -> Response:
    database, pages = request.app.state.database, request.app.state.pages
    query = ListQuery.parse(request.query_params)
    pending = database.pending_ids()
    with database.reading() as con:
        page = sample_page.build(con, sample_id)
        before, after = neighbours(database.index, query, sample_id, pending)
        children = database.index.children(sample_id)
    if page is None:
        return pages.render(request, "error.html", 404, message=f"no sample '{sample_id}'", refresh=None)
    queued = [d for d in database.pending() if d["sample_id"] == sample_id]
    back = urlencode(query.params())
    return pages.render(request, "sample.html", page=page, view=page.view, query=query, back=back,
                        prev_id=before, next_id=after, children=children, queued=queued,
                        msg=request.query_params.get("msg"), error=request.query_params.get("error"),
                        refresh=None)  # fmt: skip


@router.get("/samples/{sample_id}/go/{direction}")
def go(request: Request, sample_id: str, direction: str) -> Response:
    """The previous or next sample of the list the person came from (or the list at its end)."""
    database = request.app.state.database
    query = ListQuery.parse(request.query_params)
    with database.reading():
        before, after = neighbours(database.index, query, sample_id, database.pending_ids())
    target = before if direction == "prev" else after
    back = urlencode(query.params())
    return RedirectResponse(f"/samples/{target}?{back}" if target else f"/samples?{back}", status_code=303)


@router.get("/events/{event_id}")
def event(request: Request, event_id: str) -> Response:
    """One event in full: for a model call, the exact messages sent and the raw reply received."""
    database, pages = request.app.state.database, request.app.state.pages
    with database.reading() as con:
        found = event_by_id(con, event_id)
    if found is None:
        return pages.render(request, "error.html", 404, message=f"no event '{event_id}'", refresh=None)
    payload = found["payload"]
    rest = {k: v for k, v in payload.items() if k not in ("messages", "raw", "parsed")}
    parsed = json.dumps(payload.get("parsed"), indent=2, ensure_ascii=False)
    return pages.render(request, "event.html", event=found, messages=payload.get("messages") or [],
                        raw=payload.get("raw"), parsed=parsed, refresh=None,
                        rest=json.dumps(rest, indent=2, ensure_ascii=False, default=str))  # fmt: skip


@router.get("/dashboard")
def run_dashboard(request: Request) -> Response:
    database, pages, settings = (
        request.app.state.database,
        request.app.state.pages,
        request.app.state.settings,
    )
    pending = database.pending_ids()
    with database.reading(with_calls=True):
        board = dashboard.build(database.index, request.query_params.get("run"), pending,
                                (settings.price_in, settings.price_out))  # fmt: skip
        runs = sorted(database.index.runs.values(), key=lambda r: str(r.started_at), reverse=True)
    refresh = LIVE_REFRESH_S if board.running else None
    return pages.render(request, "dashboard.html", board=board, runs=runs, groups=dashboard.GROUPS,
                        statuses=dashboard.STATUSES, refresh=refresh)  # fmt: skip
