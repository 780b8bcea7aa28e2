"""What the quality report reads for one run, gathered into plain dataclasses: no arithmetic.

Kept apart from the metrics so each number in the card can be traced to one query. The queries
themselves live in store/ (``report_queries``, ``dedup_events``, ``run_queries``), where each can be
copied into ``teacherforge sql``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from teacherforge.store import report_queries
from teacherforge.store.dedup_events import dedup_drops, dedup_passes, dropped_sample_ids
from teacherforge.store.run_queries import run_started
from teacherforge.store.table_info import has_table

SCORE_DIMENSIONS = ("groundedness", "persona_fidelity", "tier_match", "refusal_correctness", "naturalness")


class ReportError(Exception):
    """The report cannot be made (unknown run, empty database); the message says what to do."""


@dataclass
class Sample:
    sample_id: str
    status: str
    tier: str | None
    persona: str | None
    technique: str | None
    category: str | None
    revisions: int
    scores: dict[str, int] | None = None  # the last critique
    turns: list[tuple[str, str]] = field(default_factory=list)  # (role, content), current versions
    seed_chunk_ids: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    dropped: bool = False


@dataclass
class RunData:
    run_id: str
    status: str
    started_at: Any
    finished_at: Any
    config_hash: str | None
    target: int | None
    config: dict[str, Any]
    endpoints: dict[str, dict[str, Any]]
    samples: list[Sample]
    llm: list[dict[str, Any]]  # per agent and model
    templates: list[dict[str, Any]]
    drops: list[dict[str, Any]]
    dedup_passes: list[dict[str, Any]]
    chunk_text: dict[str, str]
    personas: dict[str, str] = field(default_factory=dict)  # name → description, as planned

    @property
    def dataset(self) -> list[Sample]:
        """What export writes: accepted samples that no dedup pass dropped."""
        return [s for s in self.samples if s.status == "accepted" and not s.dropped]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def collect(con: duckdb.DuckDBPyConnection, run_id: str) -> RunData:
    run = report_queries.run_row(con, run_id)
    if run is None:
        raise ReportError(f"no run '{run_id}' in this database; list runs with: teacherforge runs")
    start_payload = run_started(con, run_id) or {}
    samples = {
        r["sample_id"]: Sample(
            r["sample_id"],
            r["status"],
            r["tier"],
            r["persona"],
            r["technique"],
            r["category"],
            r["revisions"],
        )
        for r in report_queries.sample_rows(con, run_id)
    }
    for r in report_queries.last_critiques(con, run_id, SCORE_DIMENSIONS):
        if r["sample_id"] in samples:
            samples[r["sample_id"]].scores = {d: r[d] for d in SCORE_DIMENSIONS if r[d] is not None}
    for r in report_queries.turn_rows(con, run_id):
        if r["sample_id"] in samples:
            samples[r["sample_id"]].turns.append((r["role"], r["content"] or ""))
    # A log without the chunk index (copied or merged events only) still gets a report.
    has_chunks = has_table(con, "chunks")
    for r in report_queries.sample_documents(con, run_id) if has_chunks else []:
        if r["sample_id"] in samples:
            samples[r["sample_id"]].documents = list(r["documents"])
    for r in report_queries.seed_retrievals(con, run_id):
        if r["sample_id"] in samples and not samples[r["sample_id"]].seed_chunk_ids:
            samples[r["sample_id"]].seed_chunk_ids = list(r["chunk_ids"] or [])
    dropped = dropped_sample_ids(con, run_id)
    for sample_id in dropped & samples.keys():
        samples[sample_id].dropped = True
    seed_ids = sorted({c for s in samples.values() for c in s.seed_chunk_ids})
    chunk_text = report_queries.chunk_texts(con, seed_ids) if seed_ids and has_chunks else {}
    return RunData(
        run_id=run_id,
        status=run["status"],
        started_at=run["started_at"],
        finished_at=run["finished_at"],
        config_hash=run["config_hash"],
        target=run["target"],
        config=_json(run["config"]) or {},
        endpoints={k: start_payload.get(k) or {} for k in ("generator", "critic")},
        samples=list(samples.values()),
        llm=report_queries.llm_usage(con, run_id),
        templates=report_queries.template_usage(con, run_id),
        drops=dedup_drops(con, run_id),
        dedup_passes=dedup_passes(con, run_id),
        chunk_text=chunk_text,
        personas=report_queries.planned_personas(con, run_id),
    )
