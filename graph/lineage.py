"""Resume and fork: which samples to (re)generate, and the recorded replies they may reuse."""

from __future__ import annotations

import json

import duckdb

from teacherforge.graph.config import RunConfig
from teacherforge.graph.feedback import run_seeds, seed_of_planned, with_chunks
from teacherforge.graph.runner import RunError, SampleJob, new_run_id
from teacherforge.store.replies import recorded_replies

FINAL = ("accepted", "rejected")


def run_config(con: duckdb.DuckDBPyConnection, run_id: str) -> RunConfig:
    rows = con.execute(
        "SELECT payload->'config' FROM events WHERE run_id = ? AND type = 'run.started' ORDER BY ts LIMIT 1",
        [run_id],
    ).fetchall()
    if not rows:
        raise RunError(f"no run '{run_id}' in this database; list runs with: teacherforge runs")
    return RunConfig.model_validate(json.loads(rows[0][0]))


def resume_jobs(con: duckdb.DuckDBPyConnection, run_id: str, n: int) -> tuple[list[SampleJob], int]:
    """Jobs for every index whose sample is not accepted/rejected; failed and unfinished ones restart.

    Returns (jobs, kept) where kept counts samples that stay as they are. A ``--from-eval`` run's
    jobs get their seeds back from ``run.started``, so the restarted plans are the same.
    """
    status = dict(con.execute("SELECT sample_id, status FROM samples WHERE run_id = ?", [run_id]).fetchall())
    seeds = run_seeds(con, run_id)
    jobs, kept = [], 0
    for index in range(n):
        sample_id = f"{run_id}-{index:05d}"
        if status.get(sample_id) in FINAL:
            kept += 1
            continue
        started = bool(
            con.execute("SELECT count(*) FROM events WHERE sample_id = ?", [sample_id]).fetchall()[0][0]
        )
        seed = with_chunks(con, seeds[index]) if seeds and index < len(seeds) else None
        jobs.append(SampleJob(index, sample_id, restart=started, seed=seed))
    return jobs, kept


def fork_job(con: duckdb.DuckDBPyConnection, event_id: str) -> tuple[str, str, SampleJob, dict[str, dict]]:
    """(parent run id, fork run id, the fork's job, replies the parent recorded up to the event).

    The fork is a new one-sample run with the same plan (same seed and index); requests that are
    unchanged up to the fork point reuse the parent's replies, later or changed ones call the model.
    """
    rows = con.execute(
        "SELECT run_id, sample_id, seq FROM events WHERE event_id = ? OR event_id LIKE ? || '%'",
        [event_id, event_id],
    ).fetchall()
    if len(rows) != 1 or rows[0][1] is None:
        found = "no" if not rows else f"{len(rows)}"
        raise RunError(
            f"{found} sample event(s) match '{event_id}'; copy an event_id from replay --format json"
        )
    run_id, parent, seq = rows[0]
    planned = json.loads(
        con.execute(
            "SELECT payload FROM events WHERE sample_id = ? AND type = 'sample.planned' "
            "ORDER BY seq DESC LIMIT 1",
            [parent],
        ).fetchall()[0][0]
    )
    index, seed = planned["index"], seed_of_planned(planned)  # a seeded sample's fork keeps its seed
    fork_run = new_run_id()
    full_id = con.execute(
        "SELECT event_id FROM events WHERE sample_id = ? AND seq = ?", [parent, seq]
    ).fetchall()
    job = SampleJob(
        index,
        f"{fork_run}-{index:05d}",
        parent_sample_id=parent,
        forked_from_event=full_id[0][0],
        seed=with_chunks(con, seed) if seed else None,
    )
    return run_id, fork_run, job, recorded_replies(con, sample_id=parent, up_to_seq=seq)
