"""``run --workers N`` / ``--ray-address``: one run's samples on N Ray worker processes, one event log.

The driver (this module and graph/worker_dispatch.py, in the ``run`` process) keeps what must be
single: the DuckDB writer, the plan, the run-level events, the stop decisions. Workers
(graph/ray_worker.py) run the samples.

- **Dynamic hand-out.** Jobs wait in one queue; whenever a worker has a free slot (``--concurrency``
  split over the workers) the driver hands it the next job, so a slow worker or node simply takes
  fewer samples. Nothing is split up front.
- **One writer.** Each worker ships its events in batches through a long poll; the driver appends
  them to its ``EventLog``, which gives ids, seqs and parents exactly as in a local run (a sample is
  owned by one worker at a time, so its stream arrives in order).
- **Faults.** A worker that dies (or whose node does) is noticed by the failed poll. Its samples go
  back to the front of the queue as restarts (``sample.restarted``, reason ``worker lost``) with the
  replies they had already been given, so the restarted attempt re-asks nothing that was answered;
  events the lost worker might still send for them are dropped (graph/remote_log.py). A replacement
  worker is started while the cluster has room. When no worker is left, the run stops as
  ``aborted`` and ``--resume`` continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import duckdb

from teacherforge.agents.llm import Endpoint
from teacherforge.graph.budget import Budget, CallMeter, stop_at_cap
from teacherforge.graph.config import RunConfig
from teacherforge.graph.interrupt import StopControl
from teacherforge.graph.ray_cluster import Cluster, ClusterError, check_address, require_ray
from teacherforge.graph.ray_worker import SampleWorker, WorkerSpec
from teacherforge.graph.remote_budget import BudgetKeeper
from teacherforge.graph.runner import (
    RunSummary,
    SampleJob,
    check_categories,
    fresh_jobs,
    load_chunk_table,
    new_run_id,
    record_finish,
    start_payload,
)
from teacherforge.graph.worker_dispatch import Dispatcher, WorkerHandle
from teacherforge.retrieval.weaviate_client import WeaviateSettings
from teacherforge.store.events import EventLog

SETUP_TIMEOUT_S = 300.0  # start-up (placement, embedder load, endpoint check) of one worker


class WorkerError(ClusterError):
    """A worker could not start (endpoint unreachable from its node, no room on the cluster)."""


def check_worker_options(workers: int | None, address: str | None) -> None:
    """Bad worker options, refused in one line before anything starts."""
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers {workers}: give at least 1")
    if address is not None:
        check_address(address)
    require_ray()


def split_concurrency(concurrency: int, workers: int) -> int:
    """Slots per worker: the run's --concurrency over the workers (at least one each)."""
    return max(1, math.ceil(concurrency / workers))


def default_workers(cluster: Cluster) -> int:
    """One worker per node of a joined cluster: one process already feeds many GPUs (performance.md)."""
    return max(1, cluster.nodes)


def spawner(cluster: Cluster, spec: WorkerSpec, table: Any, replies: Mapping[str, dict] | None):
    """A coroutine function that starts one worker and returns its handle once it is ready.

    The chunk table and the recorded replies go to the object store once; every worker (and every
    replacement) gets them by reference.
    """
    ray = cluster.ray
    table_ref, replies_ref = ray.put(table), ray.put(dict(replies or {}))
    actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(SampleWorker)
    indexes = iter(range(1_000_000))

    async def spawn() -> WorkerHandle:
        index = next(indexes)
        actor = actor_class.options(scheduling_strategy="SPREAD").remote(spec, table_ref, replies_ref)
        try:
            info = await asyncio.wait_for(actor.setup.remote(index), SETUP_TIMEOUT_S)
        except TimeoutError:
            ray.kill(actor)
            raise WorkerError(f"worker {index} did not start within {SETUP_TIMEOUT_S:g} s") from None
        except Exception as exc:
            ray.kill(actor)
            last = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            raise WorkerError(f"worker {index} failed to start: {last}") from None
        if info.get("error"):
            ray.kill(actor)
            raise WorkerError(info["error"])
        return WorkerHandle(index, actor, spec.slots, info["pid"], info["node"])

    return spawn


async def start_workers(spawn, count: int, kill: Callable[[Any], None]) -> list[WorkerHandle]:
    """All ``count`` workers, or none: one that cannot start stops the run before ``run.started``."""
    results = await asyncio.gather(*(spawn() for _ in range(count)), return_exceptions=True)
    handles = [r for r in results if isinstance(r, WorkerHandle)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for h in handles:
            with contextlib.suppress(Exception):
                kill(h.actor)
        raise errors[0] if isinstance(errors[0], ClusterError) else WorkerError(str(errors[0]))
    return handles


async def generate_on_workers(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    config: RunConfig,
    generator: Endpoint,
    critic: Endpoint,
    cluster: Cluster,
    workers: int | None = None,
    run_id: str | None = None,
    on_sample_done: Callable[[str, str], None] | None = None,
    jobs: list[SampleJob] | None = None,
    replies: Mapping[str, dict] | None = None,
    resumed: bool = False,
    extra_start: dict | None = None,
    control: StopControl | None = None,
    notify: Callable[[str], None] | None = None,
    weaviate: WeaviateSettings | None = None,
    budget: Budget | None = None,
) -> RunSummary:
    """``runner.generate`` on Ray workers: the same events, samples handed out one slot at a time.

    With ``weaviate`` every worker searches that store (as a local ``--store weaviate`` run does);
    without, the chunk table this process loaded, shipped to the workers once. A ``budget`` is kept
    by one actor that every worker's attempts ask first (graph/remote_budget.py).
    """
    started, started_at = time.perf_counter(), dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run_id = run_id or new_run_id()
    notify = notify or (lambda message: print(message, file=sys.stderr, flush=True))
    jobs = fresh_jobs(run_id, config.n) if jobs is None else jobs
    table = load_chunk_table(con)
    categories = sorted({c for c in table.categories if c})
    check_categories(config.plan.categories, categories)
    control = control if control is not None else StopControl()
    count = workers or default_workers(cluster)
    if cluster.cpus and count > cluster.cpus:
        raise WorkerError(
            f"--workers {count}: the cluster has {cluster.cpus:g} CPU(s) and each worker takes one; "
            "lower --workers or add nodes"
        )
    meter = CallMeter(budget or Budget())
    if resumed and meter.budget.active:
        meter.load_run(con, run_id)
    keeper = budget_keeper(cluster, meter)
    slots = split_concurrency(config.concurrency, count)
    spec = WorkerSpec(run_id, config, generator, critic, slots, weaviate, keeper)
    kill = cluster.ray.kill
    spawn = spawner(cluster, spec, table, replies)
    try:
        handles = await start_workers(spawn, count if jobs else 0, kill)  # a resume with nothing left: none
    except BaseException:
        if keeper is not None:
            kill(keeper)
        raise
    dispatcher = Dispatcher(log, run_id, jobs, meter, control, generator, on_sample_done, notify, kill)
    dispatcher.spawn, dispatcher.replacements_left = spawn, count
    dispatcher.budget_keeper = keeper
    if resumed:
        reusable = len(replies or {})
        log.append(
            run_id, "run.resumed", {"samples": [j.sample_id for j in jobs], "reusable_replies": reusable}
        )
    else:
        payload = start_payload(config, generator, critic, categories, len(table.ids), extra_start)
        log.append(run_id, "run.started", payload)
    stop_at_cap(meter, control)  # a resumed run may be over its cap already
    log.append(
        run_id, "workers.started", {"address": cluster.address, "workers": [h.info() for h in handles]}
    )
    where = ", ".join(f"{h.index}: pid {h.pid} on {h.node}" for h in handles)
    notify(f"{len(handles)} worker(s), {spec.slots} sample(s) at once each: {where}")

    async def cancel_all() -> None:
        live = [h for h in dispatcher.workers if h.alive]
        await asyncio.gather(*(h.actor.cancel_all.remote() for h in live), return_exceptions=True)

    status = "finished"
    watcher = asyncio.create_task(dispatcher.watch_stop(cancel_all))
    try:
        for h in handles:
            dispatcher.add(h)
        dispatcher.fill()  # with no jobs (a resume with nothing left) this ends the run at once
        await dispatcher.finished.wait()
    except asyncio.CancelledError:
        status = "interrupted"
        raise
    finally:
        watcher.cancel()
        summary = await _finish(con, log, run_id, status, control, meter, dispatcher, (started, started_at))
        if keeper is not None:
            with contextlib.suppress(Exception):
                kill(keeper)
    return summary


def budget_keeper(cluster: Cluster, meter: CallMeter) -> Any:
    """The run's BudgetKeeper actor (no CPU of its own), starting from what the run already spent;
    None without a budget."""
    if not meter.budget.active:
        return None
    actor_class = cluster.ray.remote(num_cpus=0, max_restarts=0)(BudgetKeeper)
    return actor_class.remote(meter.budget, meter.tokens_in, meter.tokens_out)


async def _finish(
    con, log: EventLog, run_id: str, status: str, control, meter, dispatcher, started
) -> RunSummary:
    """Take the workers' last events and figures, record the end as a local run does, stop the workers."""
    dispatcher.progress["skipped"] = [a.job.sample_id for a in dispatcher.queue]
    await dispatcher.drain()
    endpoints = await _endpoint_stats(dispatcher.workers)
    log.append(run_id, "workers.finished", {"workers": await _worker_usage(dispatcher.workers)})
    summary = record_finish(con, log, run_id, status, control, meter, dispatcher.progress, started, endpoints)
    for h in dispatcher.workers:
        with contextlib.suppress(Exception):
            if h.alive:
                await h.actor.close.remote()
            dispatcher.kill(h.actor)
    return summary


async def _worker_usage(workers: list[WorkerHandle]) -> list[dict]:
    """Per worker: samples finished and CPU seconds (None for a lost one): how the hand-out went."""
    live = [h for h in workers if h.alive]
    cpu = await asyncio.gather(*(h.actor.cpu_s.remote() for h in live), return_exceptions=True)
    used = {h.index: round(c, 3) for h, c in zip(live, cpu, strict=True) if isinstance(c, float)}
    return [{**h.info(), "samples": h.finished, "cpu_s": used.get(h.index)} for h in workers]


async def _endpoint_stats(workers: list[WorkerHandle]) -> list[dict] | None:
    """Per replica, summed over the live workers (a lost worker's counts are lost with it)."""
    lists = await asyncio.gather(
        *(h.actor.stats.remote() for h in workers if h.alive), return_exceptions=True
    )
    merged: dict[str, dict] = {}
    for stats in lists:
        if isinstance(stats, BaseException):
            continue
        for s in stats:
            m = merged.setdefault(s["url"], {**s, "sent": 0, "failed": 0, "in_flight": 0, "cooldowns": 0})
            for key in ("sent", "failed", "in_flight", "cooldowns"):
                m[key] += s[key]
            m["cooling"] = m["cooling"] or s["cooling"]
    return list(merged.values()) or None
