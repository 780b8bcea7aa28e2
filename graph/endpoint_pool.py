"""Spreading requests over data-parallel replicas of one model (``--llm-url`` given several times).

Why: one vLLM replica reaches its throughput only with many requests in flight, and a fleet of them
needs the load spread evenly. The pool hands each attempt to the replica with the fewest requests in
flight (ties: the one that got fewest so far, so replicas take turns). A replica that fails
``failures_to_cool`` attempts in a row (connection error, timeout, HTTP 5xx or 429) is taken out for
``cooldown_s`` and then put back on probation: one more failure takes it out again. When every
replica is cooling down the one due back first is used, so a run never stalls on the pool itself.

Optional adaptive concurrency (``--adaptive``): :class:`AdaptiveLimit` caps the calls in flight with
AIMD, halving on a 429 or a latency far above the best seen, growing by one per window of good calls.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from teacherforge.agents.llm import Endpoint

StateChange = Callable[[str, str, dict], None]  # (url, "cooled" | "restored", details)


@dataclass
class _Replica:
    endpoint: Endpoint
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    consecutive_failures: int = 0
    cooling_until: float = 0.0
    cooldowns: int = 0


class EndpointPool:
    """Least-in-flight choice among replicas, with a cool-down for replicas that keep failing."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        failures_to_cool: int = 3,
        cooldown_s: float = 30.0,
        on_change: StateChange | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        models = {e.model for e in endpoints}
        if len(models) > 1:
            raise ValueError(f"replicas must serve one model; got {sorted(models)}")
        self._replicas = [_Replica(e) for e in endpoints]
        self._by_url = {r.endpoint.url: r for r in self._replicas}
        self.failures_to_cool = failures_to_cool
        self.cooldown_s = cooldown_s
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> list[Endpoint]:
        return [r.endpoint for r in self._replicas]

    def acquire(self) -> Endpoint:
        """The replica for the next attempt; the caller must ``release`` it when the attempt ends."""
        now = self._clock()
        with self._lock:
            restored = [r for r in self._replicas if r.cooling_until and r.cooling_until <= now]
            for r in restored:
                r.cooling_until = 0.0
                r.consecutive_failures = self.failures_to_cool - 1  # probation: one failure re-cools
            live = [r for r in self._replicas if not r.cooling_until] or [
                min(self._replicas, key=lambda r: r.cooling_until)
            ]
            chosen = min(live, key=lambda r: (r.in_flight, r.sent))
            chosen.in_flight += 1
            chosen.sent += 1
        for r in restored:
            self._notify(r, "restored")
        return chosen.endpoint

    def release(self, endpoint: Endpoint, failed: bool) -> None:
        """End an attempt; ``failed`` means the replica itself failed (not a bad reply from the model)."""
        cooled = None
        with self._lock:
            r = self._by_url[endpoint.url]
            r.in_flight = max(0, r.in_flight - 1)
            if not failed:
                r.consecutive_failures = 0
                return
            r.failed += 1
            r.consecutive_failures += 1
            if r.consecutive_failures >= self.failures_to_cool and not r.cooling_until:
                r.cooling_until = self._clock() + self.cooldown_s
                r.cooldowns += 1
                cooled = r
        if cooled is not None:
            self._notify(cooled, "cooled")

    def stats(self) -> list[dict]:
        """Per replica: requests sent, failed, in flight, times cooled down, cooling now."""
        with self._lock:
            return [
                {
                    "url": r.endpoint.url,
                    "sent": r.sent,
                    "failed": r.failed,
                    "in_flight": r.in_flight,
                    "cooldowns": r.cooldowns,
                    "cooling": bool(r.cooling_until),
                }
                for r in self._replicas
            ]

    def _notify(self, r: _Replica, state: str) -> None:
        if self.on_change is not None:
            details = {"consecutive_failures": r.consecutive_failures, "failed": r.failed, "sent": r.sent}
            if state == "cooled":
                details["cooldown_s"] = self.cooldown_s
            self.on_change(r.endpoint.url, state, details)


class AdaptiveLimit:
    """AIMD cap on LLM calls in flight (off by default): the semaphore a call holds while it runs.

    Additive increase: +1 after ``window`` good calls in a row (up to ``maximum``). Multiplicative
    decrease: halve (down to ``minimum``) on a 429, or when a call takes more than ``latency_factor``
    times the best latency seen, at most once per ``window`` calls so one burst is one decrease.
    """

    def __init__(
        self,
        initial: int,
        minimum: int = 1,
        maximum: int = 1024,
        window: int | None = None,
        latency_factor: float = 4.0,
    ):
        self.limit = max(minimum, min(initial, maximum))
        self.minimum, self.maximum = minimum, maximum
        self.window = window
        self.latency_factor = latency_factor
        self.in_flight = 0
        self.best_ms: float | None = None
        self.decreases = 0
        self._good = 0
        self._since_decrease = 0
        self._cond: asyncio.Condition | None = None

    async def __aenter__(self) -> AdaptiveLimit:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._cond is not None
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def observe(self, latency_ms: float, rate_limited: bool) -> None:
        """Feed one finished attempt's outcome into the limit."""
        window = self.window or max(1, self.limit)
        self._since_decrease += 1
        slow = False
        if not rate_limited and latency_ms > 0:
            self.best_ms = latency_ms if self.best_ms is None else min(self.best_ms, latency_ms)
            slow = latency_ms > self.latency_factor * self.best_ms
        if rate_limited or slow:
            self._good = 0
            if self._since_decrease >= window or self.decreases == 0:
                self.limit = max(self.minimum, self.limit // 2)
                self.decreases += 1
                self._since_decrease = 0
            return
        self._good += 1
        if self._good >= window and self.limit < self.maximum:
            self.limit += 1  # waiters see it at the next release, which follows every observe
            self._good = 0


def attach(
    agents, adaptive: bool, concurrency: int, on_change: StateChange | None = None
) -> list[EndpointPool]:
    """Give each agent LLM a pool (when its endpoint has replicas) and, with ``adaptive``, a limiter.

    Agents on the same URLs and model share one pool and one limiter, so in-flight counts are real.
    """
    pools: dict[tuple, EndpointPool] = {}
    limiters: dict[tuple, AdaptiveLimit] = {}
    for llm in (agents.generator, agents.critic):
        endpoint, key = llm.endpoint, (llm.endpoint.model, llm.endpoint.urls)
        if endpoint.replicas:
            if key not in pools:
                replicas = [replace(endpoint, url=url, replicas=()) for url in endpoint.urls]
                pools[key] = EndpointPool(replicas, on_change=on_change)
            llm.router = pools[key]
        if adaptive:
            llm.limiter = limiters.setdefault(key, AdaptiveLimit(concurrency, maximum=concurrency))
    return list(pools.values())
