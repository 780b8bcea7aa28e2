"""The runner: plans a run, drives many sample graphs concurrently, and records run-level events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import duckdb

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import CallRefused, Endpoint, RetryPolicy, SamplingParams, StructuredLLM
from teacherforge.agents.small_teacher import SMALL_CRITIC
from teacherforge.graph.budget import Budget, CallMeter, stop_at_cap
from teacherforge.graph.config import RunConfig
from teacherforge.graph.endpoint_pool import attach as attach_pools
from teacherforge.graph.interrupt import STOP_EVENTS, StopControl
from teacherforge.graph.nodes import record_calls
from teacherforge.graph.sample_graph import build_sample_graph
from teacherforge.graph.state import RunDeps
from teacherforge.prompts import PromptLibrary
from teacherforge.retrieval.embedder import load_embedder
from teacherforge.retrieval.index import ChunkTable, load_chunks
from teacherforge.retrieval.retriever import InMemoryRetriever, Retriever
from teacherforge.store.events import EventLog
from teacherforge.store.run_queries import call_counts_since, sample_status_counts


class RunError(Exception):
    """The run cannot start; one line that says why."""


def check_categories(wanted: list[str] | None, corpus: list[str]) -> None:
    """A ``plan.categories`` name the corpus lacks would silently plan samples without a category."""
    unknown = sorted(set(wanted or []) - set(corpus))
    if unknown:
        raise RunError(
            f"plan.categories: {unknown} not in the ingested corpus (it has {corpus}); "
            "fix the config or ingest those documents"
        )


# A run whose first samples all fail without one successful model call stops: the endpoint is down,
# or the model name is wrong, and failing every remaining sample the same way helps nobody.
ABORT_AFTER_FAILED_SAMPLES = 3


@dataclass
class RunSummary:
    run_id: str
    accepted: int
    rejected: int
    failed: int
    llm_calls: int
    reused_calls: int
    wall_s: float
    budget: dict | None = None  # with a cap: spent, limit, and how far under or over (CallMeter.outcome)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k != "budget"}


def new_run_id() -> str:
    return f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def build_agents(config: RunConfig, generator: Endpoint, critic: Endpoint) -> AgentContext:
    retry = RetryPolicy(max_attempts=config.max_attempts, deadline_s=config.call_deadline_s)
    gen_params = SamplingParams(config.temperature, config.max_tokens, timeout_s=config.timeout_s)
    critic_params = SamplingParams(config.critic_temperature, config.max_tokens, timeout_s=config.timeout_s)
    return AgentContext(
        generator=StructuredLLM(generator, gen_params, retry, generator.structured),
        critic=StructuredLLM(critic, critic_params, retry, critic.structured),
        prompts=PromptLibrary(config.language, config.prompt_dir),
    )


def load_chunk_table(con: duckdb.DuckDBPyConnection) -> ChunkTable:
    """Every chunk in memory, or a one-line error when there is nothing (or nothing consistent) to search."""
    table = load_chunks(con)
    if not table.ids:
        raise RunError("the database has no chunks; run 'teacherforge ingest DOCS --db DB' first")
    if table.embedder is None:
        raise RunError("chunks were embedded with different models; re-ingest with one --embedder")
    return table


def build_retriever(con: duckdb.DuckDBPyConnection) -> InMemoryRetriever:
    table = load_chunk_table(con)
    return InMemoryRetriever(table, load_embedder(table.embedder))


def endpoint_payload(endpoint: Endpoint) -> dict:
    replicas = {"replicas": list(endpoint.replicas)} if endpoint.replicas else {}
    payload = {"url": endpoint.url, "model": endpoint.model, "structured_output": endpoint.structured}
    return {**payload, **replicas}


def start_payload(
    config: RunConfig,
    generator: Endpoint,
    critic: Endpoint,
    categories: list[str],
    chunks: int,
    extra_start: dict | None = None,
) -> dict:
    """The ``run.started`` payload; one builder, so a run on workers records what a local one does."""
    return {
        "n": config.n,
        "config": config.model_dump(mode="json"),
        "config_hash": config.config_hash(),
        "generator": endpoint_payload(generator),
        "critic": {"judge": SMALL_CRITIC} if config.small_profile else endpoint_payload(critic),
        "categories": categories,
        "chunks": chunks,
        **(extra_start or {}),
    }


@dataclass(frozen=True)
class SampleJob:
    """One sample to generate: a fresh index, a resumed one (restart) or a fork of another sample.

    ``seed`` (``run --from-eval``, graph/feedback.py) fixes the plan's tier, turns and
    technique and gives the seed context's chunks instead of a random anchor.
    """

    index: int
    sample_id: str
    restart: bool = False
    parent_sample_id: str | None = None
    forked_from_event: str | None = None
    seed: dict | None = field(default=None, hash=False, compare=False)

    def graph_input(self) -> dict:
        lineage = {"parent_sample_id": self.parent_sample_id, "forked_from_event": self.forked_from_event}
        lineage |= {"plan_seed": self.seed}
        return {"index": self.index, "sample_id": self.sample_id, **{k: v for k, v in lineage.items() if v}}


def fresh_jobs(run_id: str, n: int) -> list[SampleJob]:
    return [SampleJob(i, f"{run_id}-{i:05d}") for i in range(n)]


async def invoke_sample(graph, deps: RunDeps, job: SampleJob, restart_reason: str = "resume") -> str:
    """One sample through the graph; returns its status. Shared by the local runner and Ray workers.

    A restarted job first opens a new section of its stream (``sample.restarted``). Cancellation and
    ``CallRefused`` propagate (the caller decides: abandoned, budget); any other exception is a bug
    that must not lose the run, so it is recorded as ``sample.failed``.
    """
    log, run_id = deps.log, deps.run_id
    if job.restart:
        log.append(run_id, "sample.restarted", {"reason": restart_reason}, sample_id=job.sample_id)
    try:
        final = await graph.ainvoke(
            job.graph_input(), config={"configurable": {"thread_id": job.sample_id}}, context=deps
        )
        return final.get("status", "failed")
    except (asyncio.CancelledError, CallRefused):
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.append(run_id, "sample.failed", {"error": error, "reasons": [error]}, sample_id=job.sample_id)
        return "failed"


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
    control: StopControl | None = None,
    budget: Budget | None = None,
) -> RunSummary:
    """Generate the jobs (default: ``config.n`` fresh samples); every step is an event.

    ``replies`` are recorded replies by request hash: matching requests are not sent to the model
    (``offline`` refuses any other). With ``resumed`` the run already has ``run.started``.
    ``control`` stops the run from outside (Ctrl-C); a ``budget`` cap or an endpoint that fails every
    call stops it from inside. Stopping means no new samples; the stop is recorded as an event.
    """
    started, started_at = time.perf_counter(), dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run_id = run_id or new_run_id()
    jobs = fresh_jobs(run_id, config.n) if jobs is None else jobs
    retriever = retriever if retriever is not None else build_retriever(con)
    check_categories(config.plan.categories, retriever.categories())
    agents = build_agents(config, generator, critic)
    control = control if control is not None else StopControl()
    meter = CallMeter(budget or Budget())
    if resumed and meter.budget.active:
        meter.load_run(con, run_id)

    def observe(record) -> None:
        meter.observe(record)
        stop_at_cap(meter, control)

    for llm in (agents.generator, agents.critic):
        llm.replies, llm.offline, llm.observer = replies, offline, observe
        llm.gate = meter if meter.budget.active else None  # each attempt reserves its worst case first

    def endpoint_changed(url: str, state: str, details: dict) -> None:  # a replica cooled down or came back
        log.append(run_id, f"endpoint.{state}", {"url": url, **details})

    pools = attach_pools(agents, config.adaptive, config.concurrency, endpoint_changed)
    deps = RunDeps(run_id, config, agents, retriever, log, retriever.categories())
    if resumed:
        log.append(
            run_id,
            "run.resumed",
            {"samples": [j.sample_id for j in jobs], "reusable_replies": len(replies or {})},
        )
    else:
        payload = start_payload(config, generator, critic, deps.categories, retriever.count(), extra_start)
        log.append(run_id, "run.started", payload)
    stop_at_cap(meter, control)  # a resumed run may be over its cap already
    graph = build_sample_graph()
    semaphore = asyncio.Semaphore(config.concurrency)
    progress = {"failed_in_a_row": 0, "skipped": [], "abandoned": []}
    inflight: set[asyncio.Task] = set()

    async def one(job: SampleJob) -> None:
        async with semaphore:
            if control.stopping:
                progress["skipped"].append(job.sample_id)
                return
            inflight.add(asyncio.current_task())
            try:
                status = await invoke_sample(graph, deps, job)
            except asyncio.CancelledError:
                if control.reason != "interrupted":
                    raise
                progress["abandoned"].append(job.sample_id)  # unfinished: --resume restarts it
                return
            except CallRefused as exc:  # the budget has no room for its next call: unfinished, not failed
                record_calls(deps, job.sample_id, exc.calls)  # its earlier attempts spent tokens: counted
                control.request("budget_reached", **exc.detail)
                progress["abandoned"].append(job.sample_id)  # --resume with a higher cap restarts it
                return
            finally:
                inflight.discard(asyncio.current_task())
            progress["failed_in_a_row"] = progress["failed_in_a_row"] + 1 if status == "failed" else 0
            if progress["failed_in_a_row"] >= ABORT_AFTER_FAILED_SAMPLES and meter.ok_calls == 0:
                control.request("aborted", **abort_detail(meter, generator, progress["failed_in_a_row"]))
            if on_sample_done:
                on_sample_done(job.sample_id, status)

    status = "finished"
    tasks = [asyncio.create_task(one(job)) for job in jobs]
    watcher = asyncio.create_task(_abandon_after_grace(control, inflight))
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        status = "interrupted"
        for task in tasks:
            task.cancel()
        raise
    finally:
        watcher.cancel()
        endpoints = [s for pool in pools for s in pool.stats()] if pools else None
        summary = record_finish(
            con, log, run_id, status, control, meter, progress, (started, started_at), endpoints
        )
        with contextlib.suppress(Exception):  # the run is recorded; a failing socket close must not hide it
            await agents.aclose()
    return summary


def record_finish(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    run_id: str,
    status: str,
    control: StopControl,
    meter: CallMeter,
    progress: dict,
    started: tuple[float, dt.datetime],
    endpoints: list[dict] | None,
) -> RunSummary:
    """The stop event (if the run was stopped), the summary and ``run.finished``; shared with workers.

    ``progress`` holds the ``skipped`` and ``abandoned`` sample ids; ``started`` is (perf_counter, UTC).
    """
    if control.stopping and status == "finished":
        status = control.reason or status
        control.detail.update(not_started=len(progress["skipped"]), abandoned=progress["abandoned"])
        spent = {"tokens_in": meter.tokens_in, "tokens_out": meter.tokens_out}
        budget_caps = {"budget": meter.budget.as_dict()} if meter.budget.active else {}
        if status == "budget_reached":  # the final figures, not those when the stop was asked
            control.detail.update(meter.outcome(control.detail.get("cap")))
        log.append(run_id, STOP_EVENTS[status], {**control.detail, **spent, **budget_caps})
    log.flush()
    summary = summarise(con, run_id, started[1], round(time.perf_counter() - started[0], 3))
    if meter.budget.active:
        summary.budget = meter.outcome(control.detail.get("cap") if status == "budget_reached" else None)
    extra = {"endpoints": endpoints} if endpoints else {}
    log.append(run_id, "run.finished", {"status": status, **summary.as_dict(), **extra})
    log.flush()
    return summary


async def _abandon_after_grace(control: StopControl, inflight: set[asyncio.Task]) -> None:
    """After Ctrl-C, in-flight samples get ``control.grace_s`` to finish, then they are cancelled."""
    if await control.wait() != "interrupted" or control.grace_s is None:
        return
    await asyncio.sleep(control.grace_s)
    for task in list(inflight):
        task.cancel()


def abort_detail(meter: CallMeter, generator: Endpoint, failed: int) -> dict:
    last = meter.last_error or {"endpoint": generator.url, "model": generator.model, "error": "unknown"}
    message = (
        f"every LLM call failed ({meter.failed_attempts} attempts, {failed} samples in a row, none "
        f"succeeded): {last['endpoint']} model '{last['model']}' said: {last['error']} "
        "(is the server up, and is that the model it serves?)"
    )
    return {"message": message, "failed_samples": failed, "attempts": meter.failed_attempts, **last}


def summarise(con: duckdb.DuckDBPyConnection, run_id: str, since: dt.datetime, wall_s: float) -> RunSummary:
    """Counts over the whole run (a resumed run includes earlier samples); calls of this invocation."""
    status = sample_status_counts(con, run_id)
    calls = call_counts_since(con, run_id, since)
    return RunSummary(
        run_id=run_id,
        accepted=status.get("accepted", 0),
        rejected=status.get("rejected", 0),
        failed=status.get("failed", 0),
        llm_calls=calls[0],
        reused_calls=calls[1],
        wall_s=wall_s,
    )
