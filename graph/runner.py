"""The runner: plans a run, drives many sample graphs concurrently, and records run-level events."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
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
from teacherforge.store.retriever import InMemoryRetriever


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


async def generate(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    config: RunConfig,
    generator: Endpoint,
    critic: Endpoint,
    run_id: str | None = None,
    on_sample_done: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Generate ``config.n`` samples; every step is an event, so nothing here is lost on a crash."""
    started = time.perf_counter()
    run_id = run_id or new_run_id()
    retriever = build_retriever(con)
    deps = RunDeps(
        run_id=run_id,
        config=config,
        agents=build_agents(config, generator, critic),
        retriever=retriever,
        log=log,
        categories=retriever.categories(),
    )
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
            "chunks": len(retriever.table.ids),
        },
    )
    graph = build_sample_graph()
    semaphore = asyncio.Semaphore(config.concurrency)
    counts = {"accepted": 0, "rejected": 0, "failed": 0}

    async def one(index: int) -> None:
        async with semaphore:
            sample_id = f"{run_id}-{index:05d}"
            try:
                final = await graph.ainvoke(
                    {"index": index}, config={"configurable": {"thread_id": sample_id}}, context=deps
                )
                status = final.get("status", "failed")
            except Exception as exc:  # a bug must not lose the run: record it and go on
                log.append(
                    run_id, "sample.failed", {"error": f"{type(exc).__name__}: {exc}"}, sample_id=sample_id
                )
                status = "failed"
            counts[status] = counts.get(status, 0) + 1
            if on_sample_done:
                on_sample_done(sample_id, status)

    status = "finished"
    try:
        await asyncio.gather(*(one(i) for i in range(config.n)))
    except asyncio.CancelledError:
        status = "interrupted"
        raise
    finally:
        log.flush()
        llm_calls = (
            con.cursor()
            .execute("SELECT count(*) FROM events WHERE run_id = ? AND type = 'llm.call'", [run_id])
            .fetchall()[0][0]
        )
        summary = RunSummary(
            run_id=run_id,
            accepted=counts["accepted"],
            rejected=counts["rejected"],
            failed=counts["failed"],
            llm_calls=llm_calls,
            reused_calls=0,
            wall_s=round(time.perf_counter() - started, 3),
        )
        log.append(run_id, "run.finished", {"status": status, **summary.as_dict()})
        log.flush()
    return summary
