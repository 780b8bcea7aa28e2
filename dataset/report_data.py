"""What the quality report reads from the SQL views, for one run: plain rows, no arithmetic.

Kept apart from the metrics so each number in the card can be traced to one query here, and the
same query can be pasted into ``teacherforge sql``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from teacherforge.dataset.dedup import dropped_sample_ids

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

    @property
    def dataset(self) -> list[Sample]:
        """What export writes: accepted samples that no dedup pass dropped."""
        return [s for s in self.samples if s.status == "accepted" and not s.dropped]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, args: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def collect(con: duckdb.DuckDBPyConnection, run_id: str) -> RunData:
    runs = _rows(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    if not runs:
        raise ReportError(f"no run '{run_id}' in this database; list runs with: teacherforge runs")
    run = runs[0]
    started = _rows(
        con,
        "SELECT payload FROM events WHERE run_id = ? AND type = 'run.started' ORDER BY ts LIMIT 1",
        [run_id],
    )
    start_payload = _json(started[0]["payload"]) if started else {}
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
        for r in _rows(
            con,
            "SELECT sample_id, status, tier, persona, technique, category, revisions FROM samples "
            "WHERE run_id = ? ORDER BY sample_id",
            [run_id],
        )
    }
    for r in _rows(
        con,
        f"SELECT sample_id, {', '.join(SCORE_DIMENSIONS)} FROM critiques WHERE run_id = ? "
        "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY revision DESC, ts DESC) = 1",
        [run_id],
    ):
        if r["sample_id"] in samples:
            samples[r["sample_id"]].scores = {d: r[d] for d in SCORE_DIMENSIONS if r[d] is not None}
    for r in _rows(
        con,
        "SELECT sample_id, role, content FROM turns WHERE run_id = ? ORDER BY sample_id, turn_index",
        [run_id],
    ):
        if r["sample_id"] in samples:
            samples[r["sample_id"]].turns.append((r["role"], r["content"] or ""))
    has_chunks = bool(
        con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = 'chunks'").fetchall()
    )  # a log without the chunk index (copied or merged events only) still gets a report
    for r in (
        _rows(
            con,
            "SELECT r.sample_id, list(DISTINCT c.document ORDER BY c.document) AS documents "
            "FROM retrievals r, unnest(r.chunk_ids) AS u(cid) JOIN chunks c ON c.chunk_id = u.cid "
            "WHERE r.run_id = ? GROUP BY 1",
            [run_id],
        )
        if has_chunks
        else []
    ):
        if r["sample_id"] in samples:
            samples[r["sample_id"]].documents = list(r["documents"])
    for r in _rows(
        con,
        "SELECT sample_id, chunk_ids FROM retrievals WHERE run_id = ? AND purpose = 'seed' ORDER BY ts",
        [run_id],
    ):
        if r["sample_id"] in samples and not samples[r["sample_id"]].seed_chunk_ids:
            samples[r["sample_id"]].seed_chunk_ids = list(r["chunk_ids"] or [])
    dropped = dropped_sample_ids(con, run_id)
    for sample_id in dropped & samples.keys():
        samples[sample_id].dropped = True
    seed_ids = sorted({c for s in samples.values() for c in s.seed_chunk_ids})
    chunk_text = (
        {
            r["chunk_id"]: r["text"]
            for r in _rows(con, "SELECT chunk_id, text FROM chunks WHERE chunk_id IN ?", [seed_ids])
        }
        if seed_ids and has_chunks
        else {}
    )
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
        llm=_rows(
            con,
            "SELECT agent, model, endpoint, count(*) AS calls, count(error) AS errors, "
            "sum(reused::INT) AS reused, coalesce(sum(tokens_in), 0) AS tokens_in, "
            "coalesce(sum(tokens_out), 0) AS tokens_out FROM llm_calls WHERE run_id = ? "
            "GROUP BY ALL ORDER BY agent, model",
            [run_id],
        ),
        templates=_rows(
            con,
            "SELECT template, template_hash, count(*) AS calls FROM llm_calls "
            "WHERE run_id = ? AND template IS NOT NULL GROUP BY ALL ORDER BY template, template_hash",
            [run_id],
        ),
        drops=_rows(
            con,
            "SELECT sample_id, payload->>'kept_sample_id' AS kept_sample_id, payload->>'method' AS method, "
            "payload->>'field' AS field, CAST(payload->>'similarity' AS DOUBLE) AS similarity "
            "FROM events WHERE type = 'dedup.dropped' AND run_id = ? ORDER BY sample_id",
            [run_id],
        ),
        dedup_passes=[
            _json(r["payload"])
            for r in _rows(
                con,
                "SELECT payload FROM events WHERE type = 'dedup.finished' AND run_id = ? ORDER BY ts",
                [run_id],
            )
        ],
        chunk_text=chunk_text,
    )
