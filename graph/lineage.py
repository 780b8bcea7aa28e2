"""Resume and fork: which samples to (re)generate, and the recorded replies they may reuse."""

from __future__ import annotations

from dataclasses import replace

import duckdb

from teacherforge.graph.config import RunConfig
from teacherforge.graph.feedback import run_seeds, seed_of_planned, with_chunks
from teacherforge.graph.runner import RunError, SampleJob, new_run_id
from teacherforge.store.replies import recorded_replies
from teacherforge.store.run_queries import (
    event_id_at,
    events_matching,
    last_planned,
    run_started,
    sample_has_events,
    sample_statuses,
)

FINAL = ("accepted", "rejected")


def run_config(con: duckdb.DuckDBPyConnection, run_id: str) -> RunConfig:
    started = run_started(con, run_id)
    if started is None:
        raise RunError(f"no run '{run_id}' in this database; list runs with: teacherforge runs")
    return RunConfig.model_validate(started["config"])


def resume_jobs(con: duckdb.DuckDBPyConnection, run_id: str, n: int) -> tuple[list[SampleJob], int]:
    """Jobs for every index whose sample is not accepted/rejected; failed and unfinished ones restart.

    Returns (jobs, kept) where kept counts samples that stay as they are. A ``--from-eval`` run's
    jobs get their seeds back from ``run.started``, so the restarted plans are the same. A fork run
    resumes its one sample, at the parent's index, with the parent's seed and lineage.
    """
    origin = (run_started(con, run_id) or {}).get("forked_from")
    if origin:
        return _resume_fork(con, run_id, origin)
    status = sample_statuses(con, run_id)
    seeds = run_seeds(con, run_id)
    jobs, kept = [], 0
    for index in range(n):
        sample_id = f"{run_id}-{index:05d}"
        if status.get(sample_id) in FINAL:
            kept += 1
            continue
        started = sample_has_events(con, sample_id)
        seed = with_chunks(con, seeds[index]) if seeds and index < len(seeds) else None
        jobs.append(SampleJob(index, sample_id, restart=started, seed=seed))
    return jobs, kept


def resume_replies(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, dict]:
    """Replies a resumed run may reuse: its own, and for a fork also the parent's up to the fork event."""
    replies = recorded_replies(con, run_id=run_id)
    origin = (run_started(con, run_id) or {}).get("forked_from")
    rows = events_matching(con, origin["event_id"]) if origin else []
    if len(rows) == 1 and rows[0][1] is not None:
        replies = recorded_replies(con, sample_id=rows[0][1], up_to_seq=rows[0][2]) | replies
    return replies


def _resume_fork(con: duckdb.DuckDBPyConnection, run_id: str, origin: dict) -> tuple[list[SampleJob], int]:
    """A fork run has no ``plan_seeds`` and its sample sits at the parent's index, not at 0..n-1.

    Why: walking 0..n-1 re-planned index 0 from scratch, so the fork lost its seed (tier, turns,
    technique, ``seeded_from``) and its parent, or a new sample 0 appeared next to the unfinished fork.
    """
    if not sample_has_events(con, origin["sample_id"]):
        raise RunError(
            f"{run_id} is a fork of {origin['sample_id']}, which is not in this database; "
            "resume it in the file it was forked in"
        )
    job = _fork_sample_job(con, run_id, origin["sample_id"], origin["event_id"])
    if sample_statuses(con, run_id).get(job.sample_id) in FINAL:
        return [], 1
    return [replace(job, restart=sample_has_events(con, job.sample_id))], 0


def _fork_sample_job(con: duckdb.DuckDBPyConnection, fork_run: str, parent: str, event_id: str) -> SampleJob:
    """The fork's job: the parent's plan index and seed (a seeded sample's fork keeps it), and lineage."""
    planned = last_planned(con, parent)
    index, seed = planned["index"], seed_of_planned(planned)
    return SampleJob(
        index,
        f"{fork_run}-{index:05d}",
        parent_sample_id=parent,
        forked_from_event=event_id,
        seed=with_chunks(con, seed) if seed else None,
    )


def fork_job(con: duckdb.DuckDBPyConnection, event_id: str) -> tuple[str, str, SampleJob, dict[str, dict]]:
    """(parent run id, fork run id, the fork's job, replies the parent recorded up to the event).

    The fork is a new one-sample run with the same plan (same seed and index); requests that are
    unchanged up to the fork point reuse the parent's replies, later or changed ones call the model.
    """
    rows = events_matching(con, event_id)
    if len(rows) != 1 or rows[0][1] is None:
        found = "no" if not rows else f"{len(rows)}"
        raise RunError(
            f"{found} sample event(s) match '{event_id}'; copy an event_id from replay --format json"
        )
    run_id, parent, seq = rows[0]
    fork_run = new_run_id()
    job = _fork_sample_job(con, fork_run, parent, event_id_at(con, parent, seq))
    return run_id, fork_run, job, recorded_replies(con, sample_id=parent, up_to_seq=seq)
