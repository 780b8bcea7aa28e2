"""The driver's side of a run on Ray workers: hand out jobs, replay events, react to a lost worker.

Why apart from graph/workers.py: this is the state machine (who holds which sample, what goes back
in the queue when a worker dies) and it needs no Ray to be read or tested; graph/workers.py starts
the workers and the run around it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from teacherforge.agents.llm import Endpoint, LLMCallRecord
from teacherforge.graph.budget import CallMeter, stop_at_cap
from teacherforge.graph.interrupt import StopControl
from teacherforge.graph.ray_worker import Assignment
from teacherforge.graph.remote_log import Batch, PendingEvent, replay_batch
from teacherforge.graph.runner import ABORT_AFTER_FAILED_SAMPLES, SampleJob, abort_detail
from teacherforge.store.events import EventLog
from teacherforge.store.replies import REPLY_FIELDS

POLL_WAIT_S = 0.5  # a worker's long poll returns at least this often, so a dead one is noticed
RESTART_REASON = "worker lost"


@dataclass
class WorkerHandle:
    """The driver's view of one worker: its actor, where it runs, and the samples it holds."""

    index: int
    actor: Any
    slots: int
    pid: int | None = None
    node: str = ""
    owned: set[str] = field(default_factory=set)
    alive: bool = True
    finished: int = 0  # samples it brought to an end (the hand-out is dynamic: these differ)

    def info(self) -> dict:
        return {"worker": self.index, "pid": self.pid, "node": self.node, "slots": self.slots}


class Dispatcher:
    """Hands jobs to workers, replays their events into the log and reacts to their loss."""

    def __init__(
        self,
        log: EventLog,
        run_id: str,
        jobs: list[SampleJob],
        meter: CallMeter,
        control: StopControl,
        generator: Endpoint,
        on_sample_done: Callable[[str, str], None] | None,
        notify: Callable[[str], None],
        kill: Callable[[Any], None],
    ):
        self.log, self.run_id, self.meter, self.control = log, run_id, meter, control
        self.kill = kill  # stops a lost actor for good, so it sends no more calls to the model
        self.generator, self.on_sample_done, self.notify = generator, on_sample_done, notify
        self.queue: collections.deque[Assignment] = collections.deque(Assignment(j) for j in jobs)
        self.jobs = {j.sample_id: j for j in jobs}
        self.owner: dict[str, WorkerHandle] = {}
        self.written: set[str] = set()  # samples with at least one event written by this invocation
        self.sample_replies: dict[str, dict[str, dict]] = {}  # per owned sample, for a restart
        self.workers: list[WorkerHandle] = []
        self.pumps: list[asyncio.Task] = []
        self.progress: dict[str, Any] = {"failed_in_a_row": 0, "skipped": [], "abandoned": []}
        self.finished = asyncio.Event()
        self.spawn: Callable[[], Any] | None = None  # starts a replacement worker (set by the caller)
        self.replacements_left = 0
        self.starting = 0
        self.closing = False  # set once the run has ended: no more pumps or replacements
        self.budget_keeper: Any = None  # the run's BudgetKeeper actor, with --max-tokens/--max-cost
        self.lost: list[dict] = []

    # -- workers ------------------------------------------------------------------------------------

    def add(self, handle: WorkerHandle) -> None:
        self.workers.append(handle)
        self.pumps.append(asyncio.create_task(self._pump(handle), name=f"pump-{handle.index}"))
        self.fill()

    async def _pump(self, h: WorkerHandle) -> None:
        """The worker's one channel: poll, replay, hand out more; a failed poll means the worker is lost."""
        while h.alive:
            try:
                batch = await h.actor.next_batch.remote(POLL_WAIT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ActorDiedError, node lost, or a bug in the worker: all lose it
                self._lose(h, exc)
                return
            self.apply(h, batch)

    def apply(self, h: WorkerHandle, batch: Batch) -> None:
        done = replay_batch(batch, self.log, lambda sid: self.owner.get(sid) is h, self._observe)
        for sample_id, status in done:
            self._sample_done(h, sample_id, status, batch.refusals.get(sample_id))
        self.fill()

    def _observe(self, event: PendingEvent) -> None:
        if event.sample_id is not None:
            self.written.add(event.sample_id)
        if event.type != "llm.call":
            return
        payload = event.payload
        if not payload.get("reused"):  # as in a local run: only calls sent to a model are metered
            self.meter.observe(LLMCallRecord(**payload))
            stop_at_cap(self.meter, self.control)
        if event.sample_id is not None and payload.get("error") is None and payload.get("parsed") is not None:
            replies = self.sample_replies.setdefault(event.sample_id, {})
            replies.setdefault(payload["request_hash"], {k: payload.get(k) for k in REPLY_FIELDS})

    def _sample_done(self, h: WorkerHandle, sample_id: str, status: str, refusal: dict | None = None) -> None:
        h.owned.discard(sample_id)
        h.finished += status not in ("abandoned", "budget")
        self.owner.pop(sample_id, None)
        self.sample_replies.pop(sample_id, None)
        if status == "budget":  # the run budget refused its next call: the run stops, --resume restarts it
            self.control.request("budget_reached", **(refusal or {}))
        if status in ("abandoned", "budget"):  # cancelled after the Ctrl-C grace, or refused: unfinished
            self.progress["abandoned"].append(sample_id)
            return
        progress = self.progress
        progress["failed_in_a_row"] = progress["failed_in_a_row"] + 1 if status == "failed" else 0
        if progress["failed_in_a_row"] >= ABORT_AFTER_FAILED_SAMPLES and self.meter.ok_calls == 0:
            detail = abort_detail(self.meter, self.generator, progress["failed_in_a_row"])
            self.control.request("aborted", **detail)
        if self.on_sample_done:
            self.on_sample_done(sample_id, status)

    def _lose(self, h: WorkerHandle, exc: BaseException) -> None:
        """Put the lost worker's samples back at the front of the queue as restarts; maybe replace it."""
        h.alive = False
        with contextlib.suppress(Exception):
            self.kill(h.actor)
        taken = sorted(h.owned)
        for sample_id in reversed(taken):
            self.owner.pop(sample_id, None)
            job = self.jobs[sample_id]
            restart = job.restart or sample_id in self.written
            replies = self.sample_replies.pop(sample_id, None)
            self.queue.appendleft(Assignment(replace(job, restart=restart), RESTART_REASON, replies))
        h.owned.clear()
        if self.budget_keeper is not None:  # the calls it had in flight will never settle: free them
            _fire_and_forget(self.budget_keeper.forget_worker.remote(h.index))
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        lost = {**h.info(), "error": error, "restarted": taken}
        self.lost.append(lost)
        self.log.append(self.run_id, "worker.lost", lost)
        self.notify(
            f"worker {h.index} (pid {h.pid} on {h.node}) was lost ({error}); "
            f"{len(taken)} sample(s) will restart on another worker"
        )
        if self.spawn is not None and self.replacements_left > 0 and not self.control.stopping:
            self.replacements_left -= 1
            self.starting += 1
            asyncio.get_running_loop().create_task(self._replace())
        if not any(w.alive for w in self.workers) and self.starting == 0:
            self.control.request(
                "aborted",
                message=f"all workers were lost (the last: {error})",
                lost_workers=len(self.lost),
            )
        self.fill()

    async def _replace(self) -> None:
        try:
            handle = await self.spawn()
        except Exception as exc:  # no room on the cluster, or the endpoint unreachable from the new node
            self.notify(f"no replacement worker: {exc}")
            handle = None
        finally:
            self.starting -= 1
        if handle is not None and self.closing:  # the run ended while it started: nothing left for it
            with contextlib.suppress(Exception):
                self.kill(handle.actor)
            return
        if handle is not None:
            self.log.append(self.run_id, "worker.started", {**handle.info(), "replacement": True})
            self.add(handle)
        elif not any(w.alive for w in self.workers) and self.starting == 0:
            self.control.request("aborted", message="all workers were lost and none could be replaced")
            self.fill()

    # -- hand-out -----------------------------------------------------------------------------------

    def fill(self) -> None:
        """Give every live worker jobs up to its free slots; notice when the run has nothing left."""
        if not self.control.stopping:
            for h in sorted(self.workers, key=lambda w: len(w.owned)):
                free = h.slots - len(h.owned) if h.alive else 0
                batch = [self.queue.popleft() for _ in range(min(free, len(self.queue)))]
                if batch:
                    for a in batch:
                        self.owner[a.job.sample_id] = h
                        h.owned.add(a.job.sample_id)
                    _fire_and_forget(h.actor.submit.remote(batch))
        if not self.owner and (not self.queue or self.control.stopping):
            self.finished.set()

    async def watch_stop(self, workers_cancel: Callable[[], Any]) -> None:
        """A stop asked from outside (Ctrl-C): no new jobs; after the grace period, cancel the rest."""
        reason = await self.control.wait()
        self.fill()
        if reason != "interrupted" or self.control.grace_s is None:
            return
        await asyncio.sleep(self.control.grace_s)
        await workers_cancel()

    async def drain(self) -> None:
        """Stop polling; take what each live worker still holds (run-level events such as endpoint.*)."""
        self.closing = True
        for task in self.pumps:
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        for h in self.workers:
            if h.alive:
                with contextlib.suppress(Exception):
                    self.apply(h, await h.actor.next_batch.remote(0.0, 0.0))


def _fire_and_forget(ref) -> None:
    """Await a Ray call in the background so a dead actor's error is consumed (the pump reports it)."""

    async def consume() -> None:
        with contextlib.suppress(Exception):
            await ref

    asyncio.get_running_loop().create_task(consume())
