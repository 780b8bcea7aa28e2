"""Forking a sample from one of its events: re-run its graph as a new sample with changed settings.

Requests the parent made up to the fork event, if unchanged, reuse the parent's recorded replies;
anything changed (a new critic prompt, a new model) or later calls the model. ``offline`` refuses
every call that is not recorded, so a user can see which requests a change touches for free.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import duckdb

from teacherforge.agents.llm import OFFLINE_MISS
from teacherforge.graph.lineage import fork_job, run_config
from teacherforge.graph.runner import RunSummary, generate
from teacherforge.graph.session import run_endpoints
from teacherforge.store.events import EventLog
from teacherforge.store.run_queries import failed_calls_with, run_started


@dataclass
class ForkResult:
    sample_id: str
    summary: RunSummary
    changed_requests: list[tuple[str, str]]  # (agent, template) of calls refused offline


def fork(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    event_id: str,
    overrides: dict,
    offline: bool,
    log_line=print,
) -> ForkResult:
    parent_run, fork_run, job, replies = fork_job(con, event_id)
    config = run_config(con, parent_run).model_copy(
        update={"n": 1, **{k: v for k, v in overrides.items() if v is not None}}
    )
    log_line(f"forking {job.parent_sample_id} at {job.forked_from_event} as {job.sample_id}")
    lineage = {"forked_from": {"sample_id": job.parent_sample_id, "event_id": job.forked_from_event}}
    if offline:
        from teacherforge.agents.llm import Endpoint

        endpoint = Endpoint("offline://recorded-replies", _parent_model(con, parent_run))
        summary = asyncio.run(
            generate(
                con, log, config, endpoint, endpoint, fork_run, None, [job], replies, True, False, lineage
            )
        )
    else:
        with run_endpoints(config, log_line) as (generator, critic):
            summary = asyncio.run(
                generate(
                    con, log, config, generator, critic, fork_run, None, [job], replies, False, False, lineage
                )
            )
    return ForkResult(job.sample_id, summary, failed_calls_with(con, job.sample_id, OFFLINE_MISS))


def _parent_model(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """Offline forks hash requests with the parent's model name, so unchanged requests match."""
    return run_started(con, run_id)["generator"]["model"]
