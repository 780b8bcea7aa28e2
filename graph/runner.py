"""The runner: plans a run, drives many sample graphs concurrently, and records run-level events."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import duckdb

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import Endpoint, RetryPolicy, SamplingParams, StructuredLLM
from teacherforge.graph.config import RunConfig
from teacherforge.graph.sample_graph import build_sample_graph
from teacherforge.graph.state import RunDeps
from teacherforge.prompts import PromptLibrary
from teacherforge.store.embedder import load_embedder
from teacherforge.store.events import EventLog
from teacherforge.store.index import load_chunks
from teacherforge.store.retriever import InMemoryRetriever, Retriever


class RunError(Exception):
    """The run cannot start; one line that says why."""


@dataclass
class RunSummary:
    run_id: str
    accepted: int
    rejected: int
    failed: int
    llm_calls: int
    reused_calls: int
    wall_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def new_run_id() -> str:
    return f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def build_agents(config: RunConfig, generator: Endpoint, critic: Endpoint) -> AgentContext:
    retry = RetryPolicy(max_attempts=config.max_attempts)
    gen_params = SamplingParams(config.temperature, config.max_tokens, timeout_s=config.timeout_s)
    critic_params = SamplingParams(config.critic_temperature, config.max_tokens, timeout_s=config.timeout_s)
    return AgentContext(
        generator=StructuredLLM(generator, gen_params, retry, generator.structured),
        critic=StructuredLLM(critic, critic_params, retry, critic.structured),
        prompts=PromptLibrary(config.language, config.prompt_dir),
    )


def build_retriever(con: duckdb.DuckDBPyConnection) -> InMemoryRetriever:
    table = load_chunks(con)
    if not table.ids:
        raise RunError("the database has no chunks; run 'teacherforge ingest DOCS --db DB' first")
    if table.embedder is None:
        raise RunError("chunks were embedded with different models; re-ingest with one --embedder")
    return InMemoryRetriever(table, load_embedder(table.embedder))


def _endpoint_payload(endpoint: Endpoint) -> dict:
    return {"url": endpoint.url, "model": endpoint.model, "structured_output": endpoint.structured}


@dataclass(frozen=True)
class SampleJob:
    """One sample to generate: a fresh index, a resumed one (restart) or a fork of another sample."""

    index: int
    sample_id: str
    restart: bool = False
    parent_sample_id: str | None = None
    forked_from_event: str | None = None

    def graph_input(self) -> dict:
        lineage = {"parent_sample_id": self.parent_sample_id, "forked_from_event": self.forked_from_event}
        return {"index": self.index, "sample_id": self.sample_id, **{k: v for k, v in lineage.items() if v}}


def fresh_jobs(run_id: str, n: int) -> list[SampleJob]:
    return [SampleJob(i, f"{run_id}-{i:05d}") for i in range(n)]


async def generate(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    config: RunConfig,
    generator: Endpoint,
    critic: Endpoint,
    run_id: str | None = None,
    on_sample_done: Callable[[str, str], None] | None = None,
    jobs: list[SampleJob] | None = None,
    replies: Mapping[str, dict] | None = None,
    offline: bool = False,
    resumed: bool = False,
    extra_start: dict | None = None,
    retriever: Retriever | None = None,
) -> RunSummary:
    """Generate the jobs (default: ``config.n`` fresh samples); every step is an event.

    ``replies`` are recorded replies by request hash: matching requests are not sent to the model
    (``offline`` refuses any other). With ``resumed`` the run already has ``run.started``.
    """
    started, started_at = time.perf_counter(), dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run_id = run_id or new_run_id()
    jobs = fresh_jobs(run_id, config.n) if jobs is None else jobs
    retriever = retriever if retriever is not None else build_retriever(con)
    agents = build_agents(config, generator, critic)
    for llm in (agents.generator, agents.critic):
        llm.replies, llm.offline = replies, offline
    deps = RunDeps(run_id, config, agents, retriever, log, retriever.categories())
    if resumed:
        log.append(
            run_id,
            "run.resumed",
            {"samples": [j.sample_id for j in jobs], "reusable_replies": len(replies or {})},
        )
    else:
        log.append(
            run_id,
            "run.started",
            {
                "n": config.n,
                "config": config.model_dump(mode="json"),
                "config_hash": config.config_hash(),
                "generator": _endpoint_payload(generator),
                "critic": _endpoint_payload(critic),
                "categories": deps.categories,
                "chunks": retriever.count(),
                **(extra_start or {}),
            },
        )
    graph = build_sample_graph()
    semaphore = asyncio.Semaphore(config.concurrency)

    async def one(job: SampleJob) -> None:
        async with semaphore:
            if job.restart:
                log.append(run_id, "sample.restarted", {"reason": "resume"}, sample_id=job.sample_id)
            try:
                final = await graph.ainvoke(
                    job.graph_input(), config={"configurable": {"thread_id": job.sample_id}}, context=deps
                )
                status = final.get("status", "failed")
            except Exception as exc:  # a bug must not lose the run: record it and go on
                error = f"{type(exc).__name__}: {exc}"
                log.append(
                    run_id, "sample.failed", {"error": error, "reasons": [error]}, sample_id=job.sample_id
                )
                status = "failed"
            if on_sample_done:
                on_sample_done(job.sample_id, status)

    status = "finished"
    try:
        await asyncio.gather(*(one(job) for job in jobs))
    except asyncio.CancelledError:
        status = "interrupted"
        raise
    finally:
        log.flush()
        summary = _summarise(con, run_id, started_at, round(time.perf_counter() - started, 3))
        log.append(run_id, "run.finished", {"status": status, **summary.as_dict()})
        log.flush()
    return summary


def _summarise(con: duckdb.DuckDBPyConnection, run_id: str, since: dt.datetime, wall_s: float) -> RunSummary:
    """Counts over the whole run (a resumed run includes earlier samples); calls of this invocation."""
    cur = con.cursor()
    status = dict(
        cur.execute("SELECT status, count(*) FROM samples WHERE run_id = ? GROUP BY 1", [run_id]).fetchall()
    )
    calls = cur.execute(
        "SELECT count(*) FILTER (WHERE NOT reused), count(*) FILTER (WHERE reused) FROM llm_calls "
        "WHERE run_id = ? AND ts >= ?",
        [run_id, since],
    ).fetchall()[0]
    return RunSummary(
        run_id=run_id,
        accepted=status.get("accepted", 0),
        rejected=status.get("rejected", 0),
        failed=status.get("failed", 0),
        llm_calls=calls[0],
        reused_calls=calls[1],
        wall_s=wall_s,
    )
