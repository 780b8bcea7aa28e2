"""Which conversations an export takes: runs, status, critic scores, plan fields and dates.

Selection works on the folded samples (``fold_run``), so a filter sees exactly what is exported.
Samples a dedup pass dropped (``dedup.dropped`` events, dataset/dedup_run.py) are always left out.
A person's review (``review.*`` events, teacherforge ui) overrides the pipeline: a sample they
rejected counts as rejected, one they approved as accepted; ``approved_only`` keeps only the latter.
Without review events the selection is exactly what it was.
Each filter counts what it excluded, so the user learns why a dataset came out small. A value that
matches no sample at all (``--tier edg``) is an error rather than an empty file.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import duckdb

from teacherforge.store.dataset_queries import last_event_times, run_ids_by_start
from teacherforge.store.dedup_events import dropped_sample_ids
from teacherforge.store.projection import SampleView, fold_run

STATUSES = ("accepted", "rejected", "all")
PLAN_FIELDS = ("tier", "technique", "persona", "category")


class SelectionError(ValueError):
    """A filter is malformed or names something the runs do not have; the message says what to pass."""


@dataclass
class ExportFilters:
    status: str = "accepted"
    min_score: int | None = None  # every critic dimension at least this
    min_scores: dict[str, int] = field(default_factory=dict)  # per dimension, e.g. groundedness=5
    tiers: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    personas: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    since: dt.datetime | None = None  # a sample's last event at or after this (UTC)
    until: dt.datetime | None = None  # ... and before this
    approved_only: bool = False  # only samples a person approved (teacherforge ui)


@dataclass
class Selection:
    views: list[SampleView]
    run_ids: list[str]
    considered: int
    excluded: Counter = field(default_factory=Counter)


def parse_min_scores(values: list[str]) -> tuple[int | None, dict[str, int]]:
    """``["4", "groundedness=5"]`` → (4, {"groundedness": 5})."""
    overall, per_dimension = None, {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            score = int(number)
        except ValueError:
            hint = "give N or DIMENSION=N, e.g. 4 or groundedness=5"
            raise SelectionError(f"--min-score '{value}': {hint}") from None
        if name:
            per_dimension[name.strip()] = score
        else:
            overall = score
    return overall, per_dimension


def parse_when(value: str | None, flag: str, end_of_day: bool = False) -> dt.datetime | None:
    """ISO date or time → naive UTC (the event log's clock). A bare ``--until`` date includes that day."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        hint = "give an ISO date or time, e.g. 2026-12-01 or 2026-12-01T14:30"
        raise SelectionError(f"{flag} '{value}': {hint}") from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    if end_of_day and len(value) <= 10:
        when += dt.timedelta(days=1)
    return when


def resolve_runs(con: duckdb.DuckDBPyConnection, runs: list[str]) -> list[str]:
    """``[]`` → the latest run; ``["all"]`` → every run; otherwise the ids, each checked to exist."""
    known = run_ids_by_start(con)
    if not known:
        raise SelectionError("the database has no runs; generate with 'teacherforge run' first")
    if not runs:
        return known[-1:]
    if "all" in runs:
        return known
    missing = [r for r in runs if r not in known]
    if missing:
        raise SelectionError(f"--run {missing[0]}: no such run; 'teacherforge runs' lists them")
    return list(dict.fromkeys(runs))


def plan_value(view: SampleView, name: str) -> str | None:
    if name == "persona":
        return (view.plan.get("persona") or {}).get("name")
    return view.plan.get(name)


def select_records(
    con: duckdb.DuckDBPyConnection, run_ids: list[str], filters: ExportFilters | None = None
) -> Selection:
    """The folded samples of ``run_ids`` that pass ``filters``, in sample order.

    A sample without a turn (it failed or stopped before its first exchange) has nothing to export;
    it is counted under "no turns", so the count of what was left out covers every sample of the runs.
    """
    filters = filters or ExportFilters()
    if filters.status not in STATUSES:
        raise SelectionError(f"--status must be accepted, rejected or all (got '{filters.status}')")
    views = [v for run_id in run_ids for v in fold_run(con, run_id)]
    _check_values(views, filters)
    duplicates = set().union(*(dropped_sample_ids(con, run_id) for run_id in run_ids))
    last_seen = last_event_times(con, run_ids) if filters.since or filters.until else {}
    selection = Selection(views=[], run_ids=run_ids, considered=len(views))
    for view in views:
        reason = "no turns" if not view.turns else None
        reason = reason or ("dedup" if view.sample_id in duplicates else None)
        reason = reason or _excluded_by(view, filters, last_seen.get(view.sample_id))
        if reason:
            selection.excluded[reason] += 1
        else:
            selection.views.append(view)
    return selection


def effective_status(view: SampleView) -> str:
    """The pipeline's status, unless a person decided: their approve/reject wins over the critic's."""
    decision = view.review.get("decision")
    if decision == "rejected":
        return "rejected"
    if decision == "approved" and view.status in ("accepted", "rejected"):
        return "accepted"
    return view.status


def _excluded_by(view: SampleView, f: ExportFilters, last_seen: dt.datetime | None) -> str | None:
    if f.status != "all" and effective_status(view) != f.status:
        return "review" if view.status == f.status else "status"
    if f.approved_only and view.review.get("decision") != "approved":
        return "not approved"
    wanted = {"tier": f.tiers, "technique": f.techniques, "persona": f.personas, "category": f.categories}
    for name, values in wanted.items():
        if values and plan_value(view, name) not in values:
            return name
    if f.min_score is not None or f.min_scores:
        scores = view.last_scores or {}
        if not scores:
            return "min-score"
        if f.min_score is not None and min(scores.values()) < f.min_score:
            return "min-score"
        if any(scores.get(name, 0) < score for name, score in f.min_scores.items()):
            return "min-score"
    if f.since and (last_seen is None or last_seen < f.since):
        return "since"
    if f.until and (last_seen is None or last_seen >= f.until):
        return "until"
    return None


def _check_values(views: list[SampleView], f: ExportFilters) -> None:
    wanted = {"tier": f.tiers, "technique": f.techniques, "persona": f.personas, "category": f.categories}
    for name, values in wanted.items():
        known = {plan_value(v, name) for v in views} - {None}
        for value in values:
            if value not in known:
                have = ", ".join(sorted(known)) or "none"
                raise SelectionError(f"--{name} '{value}' matches no sample of the run(s) (they have {have})")
    dimensions = {k for v in views for k in (v.last_scores or {})}
    for name in f.min_scores:
        if dimensions and name not in dimensions:
            have = ", ".join(sorted(dimensions))
            raise SelectionError(f"--min-score {name}=…: no such critic score (there are {have})")
