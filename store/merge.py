"""Merging DuckDB files (shards of one run, or separate runs) into one, so SQL and export see one run.

Why: ``run --shard i/n`` writes each slice into its own file (DuckDB allows one writer per file).
The merge copies every table into a new file: events are unioned (an event id present in several
files must be byte-identical: a copied ingest, say), chunks, documents and caches are deduplicated by
key, and the views are recreated. Shards of one run share its run id, so their run-level events
(``run.started``, ``run.finished``, ...) form one stream again: they are re-sequenced in time order
and the merge appends a ``run.finished`` with the totals (``merged: true``), which the ``runs`` view
reads. Anything that cannot be one consistent log is refused with the sample, run or key named:
the same sample with different events in two files, two unrelated runs with one id, shards of
different configs, or a document or chunk whose content differs between files.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from teacherforge.store.database import DatabaseError, connect
from teacherforge.store.events import EVENT_COLUMNS, ensure_schema
from teacherforge.store.views import create_views


class MergeError(Exception):
    """The files cannot be merged into one consistent log; the message says which part and why."""


@dataclass
class MergeReport:
    into: str
    sources: list[str]
    events: int = 0
    duplicate_events: int = 0
    samples: int = 0
    runs: dict[str, dict] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "into": self.into,
            "sources": self.sources,
            "events": self.events,
            "duplicate_events": self.duplicate_events,
            "samples": self.samples,
            "runs": self.runs,
            "tables": self.tables,
        }


# Key columns whose rows must agree between files (other columns, such as timestamps, may differ).
CONTENT_KEYS = {
    "documents": (("path",), ("content_hash", "embedder")),
    "chunks": (("chunk_id",), ("document", "text")),
}


def merge(sources: list[Path], into: Path) -> MergeReport:
    """Merge ``sources`` into the new file ``into``; on any error nothing is left at ``into``."""
    _check_paths(sources, into)
    con = connect(into)
    try:
        for k, path in enumerate(sources):
            _attach(con, k, path)
        report = MergeReport(str(into), [str(p) for p in sources])
        _copy_tables(con, len(sources), sources, report)
        _merge_events(con, sources, report)
        for k in range(len(sources)):
            con.execute(f"DETACH s{k}")
        create_views(con)
        _finish_sharded_runs(con, sources, report)
        report.samples = con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        into.unlink(missing_ok=True)
        Path(f"{into}.wal").unlink(missing_ok=True)
        raise
    con.close()
    return report


def _check_paths(sources: list[Path], into: Path) -> None:
    if len(sources) < 1:
        raise MergeError("merge needs at least one database file")
    if into.exists():
        raise MergeError(f"{into} exists; merge writes a new file, so pick another --into path")
    seen: dict[Path, Path] = {}
    for path in sources:
        if not path.exists():
            raise MergeError(f"{path}: no such database file")
        real = path.resolve()
        if real in seen:
            raise MergeError(f"{path} is given twice (also as {seen[real]}); list each file once")
        if real == into.resolve():
            raise MergeError(f"{path} is also --into; merge into a new file")
        seen[real] = path


def _attach(con: duckdb.DuckDBPyConnection, k: int, path: Path) -> None:
    quoted = str(path).replace("'", "''")
    try:
        con.execute(f"ATTACH '{quoted}' AS s{k} (READ_ONLY)")
    except duckdb.Error as exc:
        text = str(exc).splitlines()[0]
        if "lock" in text.lower():
            raise DatabaseError(
                f"{path}: in use by another teacherforge process; merge it when that run has finished"
            ) from exc
        raise MergeError(f"{path}: cannot open as a DuckDB file ({text})") from exc


def _tables(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, str]:
    rows = con.execute(
        "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND NOT temporary",
        [f"s{k}"],
    ).fetchall()
    return dict(rows)


def _columns(con: duckdb.DuckDBPyConnection, db: str, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = ? ORDER BY column_index",
        [db, table],
    ).fetchall()
    return [r[0] for r in rows]


def _copy_tables(con: duckdb.DuckDBPyConnection, n: int, sources: list[Path], report: MergeReport) -> None:
    """Every table but events: created as in the first file that has it, rows deduplicated by key."""
    ensure_schema(con)
    tables = [_tables(con, k) for k in range(n)]
    names = sorted({name for t in tables for name in t} - {"events"})
    for name in names:
        holders = [k for k in range(n) if name in tables[k]]
        con.execute(tables[holders[0]][name])
        if name in CONTENT_KEYS:
            _check_content(con, name, holders, sources)
        here = con.execute("SELECT current_database()").fetchall()[0][0]
        target = _columns(con, here, name)
        has_key = bool(
            con.execute(
                "SELECT count(*) FROM duckdb_constraints() WHERE database_name = ? AND table_name = ? "
                "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
                [here, name],
            ).fetchall()[0][0]
        )
        for k in holders:
            cols = ", ".join(f'"{c}"' for c in target if c in set(_columns(con, f"s{k}", name)))
            if has_key:  # the first file wins for a key that several files hold (checked equal above)
                con.execute(f"INSERT OR IGNORE INTO {name} ({cols}) SELECT {cols} FROM s{k}.{name}")
            else:
                con.execute(
                    f"INSERT INTO {name} ({cols}) SELECT {cols} FROM s{k}.{name} "
                    f"EXCEPT SELECT {cols} FROM {name}"
                )
        report.tables[name] = con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]


def _check_content(
    con: duckdb.DuckDBPyConnection, name: str, holders: list[int], sources: list[Path]
) -> None:
    keys, values = CONTENT_KEYS[name]
    union = " UNION ALL ".join(
        f"SELECT {k} AS src, {', '.join(keys + values)} FROM s{k}.{name}" for k in holders
    )
    key_sql, value_sql = ", ".join(keys), " || '|' || ".join(f"coalesce({v}::VARCHAR, '')" for v in values)
    row = con.execute(
        f"SELECT {key_sql}, list(DISTINCT src ORDER BY src) FROM ({union}) GROUP BY {key_sql} "
        f"HAVING count(DISTINCT {value_sql}) > 1 LIMIT 1"
    ).fetchone()
    if row:
        files = " and ".join(str(sources[k]) for k in row[-1])
        raise MergeError(
            f"{name} {row[0]} differs between {files}; shards must run on copies of one ingested "
            "corpus (ingest once, copy the file to every shard)"
        )


def _merge_events(con: duckdb.DuckDBPyConnection, sources: list[Path], report: MergeReport) -> None:
    cols = ", ".join(EVENT_COLUMNS)
    union = " UNION ALL ".join(f"SELECT {cols}, {k} AS src FROM s{k}.events" for k in range(len(sources)))
    con.execute(f"CREATE TEMP TABLE staged AS {union}")
    digest = (
        "md5(concat_ws('|', run_id, coalesce(sample_id, ''), seq, type, coalesce(agent, ''), "
        "coalesce(payload::VARCHAR, ''), coalesce(parent_event_id, ''), ts::VARCHAR))"
    )
    clash = con.execute(
        f"SELECT event_id, list(DISTINCT src ORDER BY src) FROM staged GROUP BY event_id "
        f"HAVING count(DISTINCT {digest}) > 1 LIMIT 1"
    ).fetchone()
    if clash:
        files = _files(sources, clash[1])
        raise MergeError(f"event {clash[0]} differs between {files}; the files are not copies")
    split = _split_runs(con)
    for run_id in split:  # before the sample check: "two runs with one id" says more than "a sample differs"
        report.runs[run_id] = _check_shards(con, run_id, sources)
    sample = con.execute(
        """
        WITH per_sample AS (SELECT sample_id, count(DISTINCT src) AS n,
                                   list(DISTINCT src ORDER BY src) AS srcs
                            FROM staged WHERE sample_id IS NOT NULL GROUP BY 1),
             per_event AS (SELECT sample_id, event_id, count(DISTINCT src) AS n
                           FROM staged WHERE sample_id IS NOT NULL GROUP BY 1, 2)
        SELECT s.sample_id, s.srcs FROM per_sample s JOIN per_event e USING (sample_id)
        WHERE s.n > 1 AND e.n < s.n LIMIT 1"""
    ).fetchone()
    if sample:
        raise MergeError(
            f"sample {sample[0]} has different events in {_files(sources, sample[1])}; shards must be "
            "disjoint (was one --shard run twice, or the same run id used for two runs?)"
        )
    con.execute(
        f"CREATE TEMP TABLE uniq AS SELECT {cols}, src FROM staged "
        "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY src) = 1"
    )
    total = con.execute("SELECT count(*) FROM staged").fetchall()[0][0]
    report.events = con.execute("SELECT count(*) FROM uniq").fetchall()[0][0]
    report.duplicate_events = total - report.events
    for run_id in split:
        con.execute(
            """
            UPDATE uniq SET seq = r.new_seq, parent_event_id = r.new_parent
            FROM (SELECT event_id, row_number() OVER w - 1 AS new_seq, lag(event_id) OVER w AS new_parent
                  FROM uniq WHERE run_id = ? AND sample_id IS NULL
                  WINDOW w AS (ORDER BY ts, src, seq)) r
            WHERE uniq.event_id = r.event_id""",
            [run_id],
        )
    con.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM uniq ORDER BY src, ts")
    con.execute("DROP TABLE staged")
    con.execute("DROP TABLE uniq")


def _split_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs whose run-level events come from several files and are not mere copies of each other."""
    rows = con.execute(
        """
        WITH per_run AS (SELECT run_id, count(DISTINCT src) AS n FROM staged
                         WHERE sample_id IS NULL GROUP BY 1),
             per_event AS (SELECT run_id, event_id, count(DISTINCT src) AS n
                           FROM staged WHERE sample_id IS NULL GROUP BY 1, 2)
        SELECT DISTINCT r.run_id FROM per_run r JOIN per_event e USING (run_id)
        WHERE r.n > 1 AND e.n < r.n ORDER BY 1"""
    ).fetchall()
    return [r[0] for r in rows]


def _check_shards(con: duckdb.DuckDBPyConnection, run_id: str, sources: list[Path]) -> dict:
    """The run-level streams of one run id in several files must be shards of one plan."""
    rows = con.execute(
        "SELECT src, payload FROM staged WHERE run_id = ? AND sample_id IS NULL AND type = 'run.started' "
        "ORDER BY src",
        [run_id],
    ).fetchall()
    starts = {src: json.loads(p) for src, p in rows}
    unsharded = [src for src, p in starts.items() if not p.get("shard")]
    if unsharded or len(starts) < 2:
        raise MergeError(
            f"run {run_id} was started separately in {_files(sources, sorted(starts))} and not as shards "
            "of one run (run --shard I/N); merge refuses two runs with one id"
        )
    shards = {src: (p["shard"]["index"], p["shard"]["count"]) for src, p in starts.items()}
    if len({c for _, c in shards.values()}) > 1:
        raise MergeError(f"run {run_id}: the shards were split differently ({sorted(set(shards.values()))})")
    if len({p.get("plan_hash") for p in starts.values()}) > 1:
        raise MergeError(f"run {run_id}: the shards ran different configs (plan hashes differ); re-run one")
    indexes = [i for i, _ in shards.values()]
    if len(set(indexes)) < len(indexes):
        dup = next(i for i in indexes if indexes.count(i) > 1)
        raise MergeError(f"run {run_id}: shard {dup} is in more than one file; merge each shard once")
    count = next(iter(shards.values()))[1]
    return {"shards": sorted(indexes), "count": count, "missing": sorted(set(range(count)) - set(indexes))}


def _finish_sharded_runs(con: duckdb.DuckDBPyConnection, sources: list[Path], report: MergeReport) -> None:
    """Append one ``run.finished`` per sharded run with the totals, so the ``runs`` view shows them."""
    for run_id, info in report.runs.items():
        finished = con.execute(
            "SELECT payload FROM events WHERE run_id = ? AND sample_id IS NULL AND type = 'run.finished'",
            [run_id],
        ).fetchall()
        payloads = [json.loads(p[0]) for p in finished]
        sql = "SELECT status, count(*) FROM samples WHERE run_id = ? GROUP BY 1"
        counts = dict(con.execute(sql, [run_id]).fetchall())
        all_done = not info["missing"] and len(payloads) >= len(info["shards"])
        all_done = all_done and all(p.get("status") == "finished" for p in payloads)
        info["status"] = "finished" if all_done else "partial"
        payload = {
            "status": info["status"],
            "run_id": run_id,
            "accepted": counts.get("accepted", 0),
            "rejected": counts.get("rejected", 0),
            "failed": counts.get("failed", 0),
            "llm_calls": sum(p.get("llm_calls", 0) for p in payloads),
            "reused_calls": sum(p.get("reused_calls", 0) for p in payloads),
            "wall_s": max((p.get("wall_s", 0.0) for p in payloads), default=0.0),
            "merged": True,
            "merged_from": [str(s) for s in sources],
            "shards": info["shards"],
            "missing_shards": info["missing"],
        }
        last = con.execute(
            "SELECT seq, event_id FROM events WHERE run_id = ? AND sample_id IS NULL "
            "ORDER BY seq DESC LIMIT 1",
            [run_id],
        ).fetchone()
        con.execute(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            "VALUES (?, ?, NULL, ?, ?, 'run.finished', NULL, ?, ?)",
            [
                uuid.uuid4().hex,
                run_id,
                last[0] + 1,
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                json.dumps(payload),
                last[1],
            ],
        )


def _files(sources: list[Path], indexes: list[int]) -> str:
    return " and ".join(str(sources[k]) for k in indexes)
