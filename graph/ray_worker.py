"""One Ray worker process: the same sample graph as a local run, with its own agents, endpoint pool and
retriever; its events go to the driver in batches (graph/remote_log.py).

Why this shape: the driver hands a worker sample jobs whenever it has a free slot, and pulls the
worker's events with a long poll (``next_batch``). One channel carries both a sample's events and
its end, in order, so the driver never counts a sample whose events it has not written, and a
worker that dies takes nothing with it that the driver believes it has. The class has no Ray
decorator (Ray is optional): graph/workers.py wraps it with ``ray.remote`` when a run asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from teacherforge.agents.llm import CallRefused, Endpoint
from teacherforge.graph.config import RunConfig
from teacherforge.graph.endpoint_pool import attach as attach_pools
from teacherforge.graph.endpoints import EndpointError, check_endpoint
from teacherforge.graph.nodes import record_calls
from teacherforge.graph.remote_budget import RemoteGate
from teacherforge.graph.remote_log import Batch, RemoteSink
from teacherforge.graph.runner import SampleJob, build_agents, invoke_sample
from teacherforge.graph.sample_graph import build_sample_graph
from teacherforge.graph.state import RunDeps
from teacherforge.retrieval.embedder import load_embedder
from teacherforge.retrieval.index import ChunkTable
from teacherforge.retrieval.retriever import InMemoryRetriever, Retriever
from teacherforge.retrieval.weaviate_client import WeaviateSettings

BATCH_WINDOW_S = 0.02  # gather events this long before shipping, unless a sample just ended


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs besides the chunks and the recorded replies (shared by reference)."""

    run_id: str
    config: RunConfig
    generator: Endpoint
    critic: Endpoint
    slots: int  # samples this worker runs at once; the run's --concurrency is split over the workers
    weaviate: WeaviateSettings | None = None  # --store weaviate: every worker searches the shared store
    budget_keeper: Any = None  # --max-tokens/--max-cost: the run's BudgetKeeper (graph/remote_budget.py)


@dataclass(frozen=True)
class Assignment:
    """One job handed to a worker: why it restarts (if it does) and replies it may reuse."""

    job: SampleJob
    restart_reason: str = "resume"
    replies: dict[str, dict[str, Any]] | None = None


class SampleWorker:
    """Runs the samples it is handed as asyncio tasks; see the module docstring."""

    def __init__(self, spec: WorkerSpec, table: ChunkTable, replies: dict[str, dict[str, Any]] | None):
        self.spec = spec
        self.table = table
        self.replies: dict[str, dict[str, Any]] = dict(replies or {})
        self.sink = RemoteSink()
        self.tasks: dict[str, asyncio.Task] = {}
        self.deps: RunDeps | None = None
        self.graph = None
        self.pools: list = []
        self.ready_cpu_s = 0.0

    async def setup(self, index: int) -> dict[str, Any]:
        """Check the endpoints from this machine, then load the retriever; an error comes back as text."""
        node = _node_address()
        where = {"worker": index, "pid": os.getpid(), "node": node, "host": socket.gethostname()}
        spec = self.spec
        try:
            for url, model, key in _endpoints(spec.generator, spec.critic):
                await asyncio.to_thread(check_endpoint, url, model, key)
        except EndpointError as exc:
            return {**where, "error": f"worker {index} on {node} cannot reach its endpoint: {exc}"}
        retriever = await asyncio.to_thread(_open_retriever, self.table, spec.weaviate)
        # the first query pays the embedder's warm-up: pay it here, not inside the first samples
        await asyncio.to_thread(retriever.search, "warm-up", 1, spec.config.search)
        agents = build_agents(spec.config, spec.generator, spec.critic)
        for llm in (agents.generator, agents.critic):
            llm.replies = self.replies  # one dict, extended by restarted samples' replies
            if spec.budget_keeper is not None:
                llm.gate = RemoteGate(spec.budget_keeper, index)

        def endpoint_changed(url: str, state: str, details: dict) -> None:
            self.sink.append(spec.run_id, f"endpoint.{state}", {"url": url, "worker": index, **details})

        self.pools = attach_pools(agents, spec.config.adaptive, spec.slots, endpoint_changed)
        self.deps = RunDeps(spec.run_id, spec.config, agents, retriever, self.sink, retriever.categories())
        self.graph = build_sample_graph()
        self.ready_cpu_s = time.process_time()  # start-up (embedder load) is not the samples' cost
        return where

    async def submit(self, assignments: list[Assignment]) -> int:
        """Start each job at once (the driver never sends more than the free slots)."""
        for a in assignments:
            if a.replies:
                self.replies.update(a.replies)
            task = asyncio.create_task(self._run(a))
            self.tasks[a.job.sample_id] = task
        return len(self.tasks)

    async def _run(self, a: Assignment) -> None:
        sample_id, run_id, refusal = a.job.sample_id, self.spec.run_id, None
        try:
            status = await invoke_sample(self.graph, self.deps, a.job, a.restart_reason)
        except asyncio.CancelledError:  # the driver asked (Ctrl-C grace over): --resume restarts it
            status = "abandoned"
        except CallRefused as exc:  # the run budget has no room for its next call: unfinished, as locally
            record_calls(self.deps, sample_id, exc.calls)  # its earlier attempts spent tokens: counted
            status, refusal = "budget", exc.detail
        except Exception as exc:  # a bug in the worker: never lose the sample's end
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            self.sink.append(run_id, "sample.failed", {"error": error, "reasons": [error]}, sample_id)
        finally:
            self.tasks.pop(sample_id, None)
        self.sink.finished(sample_id, status, refusal)

    async def next_batch(self, wait_s: float, window_s: float = BATCH_WINDOW_S) -> Batch:
        """The events appended since the last call (and the samples that ended), after a short wait."""
        await self.sink.wait(wait_s)
        if window_s and self.sink.pending() and not self.sink.has_done():
            await asyncio.sleep(window_s)
        return self.sink.take()

    async def cancel_all(self) -> int:
        for task in list(self.tasks.values()):
            task.cancel()
        return len(self.tasks)

    async def cpu_s(self) -> float:
        """CPU seconds of this process since it was ready (all its threads: loop, retrieval, HTTP)."""
        return time.process_time() - self.ready_cpu_s

    async def stats(self) -> list[dict]:
        return [s for pool in self.pools for s in pool.stats()]

    async def close(self) -> None:
        if self.deps is not None:
            with contextlib.suppress(Exception):
                await self.deps.agents.aclose()
            with contextlib.suppress(Exception):
                getattr(self.deps.retriever, "close", lambda: None)()


def _open_retriever(table: ChunkTable, weaviate: WeaviateSettings | None) -> Retriever:
    """The chunks the driver shipped, searched in memory; or, with ``--store weaviate``, the shared
    Weaviate (the driver checked it is in step with the database before any worker started)."""
    embedder = load_embedder(table.embedder)
    if weaviate is None:
        return InMemoryRetriever(table, embedder)
    from teacherforge.retrieval.weaviate_mirror import WeaviateRetriever
    from teacherforge.retrieval.weaviate_store import WeaviateChunkStore, connect_weaviate

    store = WeaviateChunkStore(connect_weaviate(weaviate), weaviate)
    return WeaviateRetriever(store, embedder, sorted({c for c in table.categories if c}), len(table.ids))


def _endpoints(generator: Endpoint, critic: Endpoint) -> list[tuple[str, str, str]]:
    """Each distinct (url, model) the agents will call, with its key."""
    seen: dict[tuple[str, str], str] = {}
    for endpoint in (generator, critic):
        for url in endpoint.urls:
            seen.setdefault((url, endpoint.model), endpoint.api_key)
    return [(url, model, key) for (url, model), key in seen.items()]


def _node_address() -> str:
    """The node's address as Ray knows it; the host name outside Ray (unit tests drive the class)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return socket.gethostname()
