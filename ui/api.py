"""The JSON API under /api/ (docs/ui.md), and the review endpoint the pages' forms post to as well.

Why one review endpoint for both: a script and a person go through the same checks, queue and
landing (ui/reviews.py); only the answer differs (JSON, or a redirect back to the pages).
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from teacherforge.ui import sample_page
from teacherforge.ui.listing import ListQuery, listing, neighbours, review_state
from teacherforge.ui.reviews import ReviewError, decide
from teacherforge.ui.sample_index import SampleRow
from teacherforge.ui.security import FORM

router = APIRouter(prefix="/api")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def row_json(row: SampleRow, pending: set[str]) -> dict[str, Any]:
    fields = ("sample_id", "run_id", "status", "tier", "persona", "technique", "category", "revisions",
              "scores", "min_score", "verdict", "decision", "decision_reason", "reviewer", "tags",
              "edited_turns", "duplicate", "reasons", "parent_sample_id", "started_at", "ended_at",
              "first_question")  # fmt: skip
    return {**{name: _iso(getattr(row, name)) for name in fields}, "review": review_state(row, pending)}


@router.get("/samples")
def list_samples(request: Request) -> dict[str, Any]:
    """Samples of a run (default: the latest), filtered, sorted and paged like the samples page."""
    database = request.app.state.database
    query = ListQuery.parse(request.query_params)
    pending = database.pending_ids()
    with database.reading():
        found = listing(database.index, query, pending)
    return {"run": found.run, "total": found.total, "page": query.page, "pages": found.pages,
            "per_page": query.per_page, "samples": [row_json(r, pending) for r in found.rows]}  # fmt: skip


@router.get("/runs")
def list_runs(request: Request) -> list[dict[str, Any]]:
    database = request.app.state.database
    with database.reading():
        runs = sorted(database.index.runs.values(), key=lambda r: r.started_at or dt.datetime.min)
    return [{k: _iso(v) for k, v in vars(r).items()} for r in runs]


@router.get("/samples/{sample_id}")
def get_sample(request: Request, sample_id: str) -> Response:
    """One sample: its plan, conversation as exported (edits applied), review state and every event."""
    database = request.app.state.database
    with database.reading() as con:
        page = sample_page.build(con, sample_id)
    if page is None:
        return JSONResponse({"error": f"no sample '{sample_id}'"}, status_code=404)
    view = page.view
    queued = [d for d in database.pending() if d["sample_id"] == sample_id]
    events = [{**e, "ts": _iso(e["ts"])} for e in page.events]
    return JSONResponse({
        "sample_id": sample_id, "run_id": view.run_id, "status": view.status, "reasons": view.reasons,
        "revisions": view.revisions, "plan": view.plan, "turns": view.turns, "scores": view.last_scores,
        "review": view.review, "pending_reviews": queued, "events": events,
    })  # fmt: skip


@router.get("/reviews/pending")
def pending_reviews(request: Request) -> dict[str, Any]:
    """Decisions queued while a writer holds the database, oldest first."""
    database = request.app.state.database
    queued = database.pending()
    return {"pending": queued, "writer_pid": database.writer()}


async def _body(request: Request) -> tuple[dict[str, Any], bool]:
    """The review as a dict, and whether it came from a page's form (which then needs the CSRF token)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM:
        fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        return fields, True
    try:
        body = await request.json()
    except ValueError:
        raise ReviewError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ReviewError('send a JSON object: {"action": "approve" | "reject" | "edit" | "tag", ...}')
    return body, False


@router.post("/samples/{sample_id}/review")
async def review(request: Request, sample_id: str) -> Response:
    """Approve, reject (reason), edit (turn, content) or tag (tag) a sample; each becomes a review.* event."""
    settings, database = request.app.state.settings, request.app.state.database
    try:
        body, from_form = await _body(request)
    except ReviewError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    if from_form:
        if not hmac.compare_digest(str(body.get("csrf", "")).encode(), settings.csrf.encode()):
            return JSONResponse({"error": "the form's CSRF token is missing or stale; reload the page"}, 403)
        return _from_form(request, sample_id, body)
    try:
        result = decide(database, sample_id, body, settings.reviewer)
    except ReviewError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse(result.as_json(), status_code=200 if result.landed else 202)


def _from_form(request: Request, sample_id: str, form: dict[str, Any]) -> Response:
    """Decide, then go back to the sample, or on to the next one in the list the person came from."""
    settings, database = request.app.state.settings, request.app.state.database
    back = str(form.get("back", ""))
    query = ListQuery.parse(dict(parse_qsl(back)))
    target = sample_id
    if form.get("go") == "next":
        with database.reading():
            target = neighbours(database.index, query, sample_id, database.pending_ids())[1] or ""
    try:
        result = decide(database, sample_id, form, settings.reviewer)
        note = {"msg": f"{result.event_type} {'recorded' if result.landed else 'queued (a run is writing)'}"}
    except ReviewError as exc:
        target, note = sample_id, {"error": str(exc)}
    if not target:  # the end of the list: back to it (rebuilt from known filters, never the raw field)
        return RedirectResponse(f"/samples?{urlencode(query.params())}", status_code=303)
    return RedirectResponse(f"/samples/{target}?{urlencode({**query.params(), **note})}", status_code=303)
