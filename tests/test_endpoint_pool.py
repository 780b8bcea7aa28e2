"""Several endpoints: least-in-flight spreading, cool-down of a failing replica, and what is recorded."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import pytest
from conftest import query
from scripted import GoodModel
from stub_server import FaultPlan, StubReply, StubServer
from typer.testing import CliRunner

from teacherforge.agents.llm import Endpoint
from teacherforge.cli.app import app
from teacherforge.graph.config import RunConfig
from teacherforge.graph.endpoint_pool import AdaptiveLimit, EndpointPool
from teacherforge.graph.runner import generate
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pool(n=3, **kw):
    endpoints = [Endpoint(f"http://r{i}/v1", "m") for i in range(n)]
    return endpoints, EndpointPool(endpoints, **kw)


def test_least_in_flight_then_turns():
    (a, b, c), pool = _pool()
    assert [pool.acquire() for _ in range(3)] == [a, b, c]
    pool.release(b, failed=False)
    assert pool.acquire() == b  # the only one with nothing in flight
    for e in (a, b, c):
        pool.release(e, failed=False)
    assert [pool.acquire(), pool.acquire()] == [a, c]  # all idle: the ones that got fewest so far
    assert [s["in_flight"] for s in pool.stats()] == [1, 0, 1]
    assert [s["sent"] for s in pool.stats()] == [2, 2, 2]


def test_failing_replica_cools_down_and_comes_back_on_probation():
    clock, changes = Clock(), []
    (a, b), pool = _pool(
        2, failures_to_cool=2, cooldown_s=10, clock=clock, on_change=lambda *c: changes.append(c)
    )
    for _ in range(2):
        pool.acquire()  # a then b, or b then a: release the failures on a either way
        pool.release(a, failed=True)
    pool.release(b, failed=False)
    assert [c[:2] for c in changes] == [(a.url, "cooled")]
    assert {pool.acquire() for _ in range(4)} == {b}  # a is out
    clock.now += 11
    got = [pool.acquire() for _ in range(2)]
    assert a in got and changes[-1][:2] == (a.url, "restored")
    pool.release(a, failed=True)  # one failure on probation takes it out again
    assert changes[-1][:2] == (a.url, "cooled") and pool.stats()[0]["cooldowns"] == 2


def test_all_cooling_uses_the_one_back_first():
    clock = Clock()
    (a, b), pool = _pool(2, failures_to_cool=1, cooldown_s=10, clock=clock)
    pool.release(pool.acquire(), failed=True)  # a out until 110
    clock.now += 5
    pool.release(pool.acquire(), failed=True)  # b out until 115
    assert pool.acquire() == a


def test_pool_refuses_replicas_of_different_models():
    with pytest.raises(ValueError, match="one model"):
        EndpointPool([Endpoint("http://a/v1", "m1"), Endpoint("http://b/v1", "m2")])


def test_adaptive_limit_halves_on_429_and_grows_back():
    limit = AdaptiveLimit(16, maximum=16, window=4)
    limit.observe(100.0, rate_limited=True)
    assert limit.limit == 8
    for _ in range(8):
        limit.observe(100.0, rate_limited=False)
    assert limit.limit == 10
    limit.observe(1000.0, rate_limited=False)  # 10x the best latency: congestion
    assert limit.limit == 5


def test_adaptive_limit_caps_calls_in_flight():
    limit = AdaptiveLimit(2, maximum=2)
    peak = 0

    async def call():
        nonlocal peak
        async with limit:
            peak = max(peak, limit.in_flight)
            await asyncio.sleep(0.01)

    async def main():
        await asyncio.gather(*(call() for _ in range(10)))

    asyncio.run(main())
    assert peak == 2 and limit.in_flight == 0


def test_run_spreads_over_replicas_and_routes_around_a_failing_one(db_path):
    broken = FaultPlan(rate=1.0, kinds=("500",))
    with StubServer(GoodModel()) as s1, StubServer(GoodModel()) as s2, StubServer(faults=broken) as bad:
        endpoint = Endpoint(s1.url, "stub-model", "k", "json_schema", (bad.url, s2.url))
        con = connect(db_path)
        create_views(con)
        log = EventLog(con)
        cfg = RunConfig(n=4, concurrency=4, seed=2)
        try:
            summary = asyncio.run(generate(con, log, cfg, endpoint, endpoint))
        finally:
            log.close()
            con.close()
        served = {s.url: len(s.requests) for s in (s1, s2, bad)}
        good, good2, broken_url = s1.url, s2.url, bad.url
    assert summary.failed == 0 and summary.accepted + summary.rejected == 4, summary
    assert served[good] > 0 and served[good2] > 0 and 0 < served[broken_url] <= 6
    rows = query(db_path, "SELECT endpoint, count(*) FILTER (WHERE error IS NULL) FROM llm_calls GROUP BY 1")
    ok = dict(rows)
    assert ok[broken_url] == 0 and ok[good] > 0 and ok[good2] > 0
    # the endpoint is recorded per attempt; the request hash is the same whichever replica served it
    moved = query(
        db_path,
        "SELECT count(*) FROM (SELECT payload->>'request_hash' FROM events WHERE type = 'llm.call' "
        "GROUP BY 1 HAVING count(DISTINCT payload->>'endpoint') > 1)",
    )[0][0]
    assert moved > 0
    cooled = query(db_path, "SELECT payload->>'url' FROM events WHERE type = 'endpoint.cooled'")
    assert cooled == [(broken_url,)]
    started, finished = (
        json.loads(query(db_path, f"SELECT payload FROM events WHERE type = '{t}'")[0][0])
        for t in ("run.started", "run.finished")
    )
    assert started["generator"]["replicas"] == [broken_url, good2]
    stats = {s["url"]: s for s in finished["endpoints"]}
    assert stats[broken_url]["cooldowns"] == 1 and stats[broken_url]["failed"] == served[broken_url]


def test_cli_takes_repeated_llm_url_and_checks_every_replica(db_path):
    runner = CliRunner()
    with StubServer(GoodModel()) as s1, StubServer(GoodModel()) as s2, StubServer(model="other") as s3:
        base = ["run", "--db", str(db_path), "--llm-url", s1.url]
        ok = runner.invoke(app, [*base, "--n", "2", "--llm-url", s2.url])
        wrong = runner.invoke(app, [*base, "--n", "1", "--llm-url", s3.url])
        both = (len(s1.requests), len(s2.requests))
    assert ok.exit_code == 0, ok.output
    assert all(both), both
    assert wrong.exit_code == 2 and "does not serve model 'stub-model'" in wrong.output


class Capacity:
    """A server that can work on ``slots`` requests at once and answers 429 to any more."""

    def __init__(self, slots: int, work_s: float = 0.05):
        self.slots, self.work_s = slots, work_s
        self.model, self.lock = GoodModel(), threading.Lock()
        self.in_flight = self.rejected = 0

    def __call__(self, body):
        with self.lock:
            if self.in_flight >= self.slots:
                self.rejected += 1
                return StubReply("stub: over capacity", status=429, headers={"Retry-After": "0"})
            self.in_flight += 1
        try:
            time.sleep(self.work_s)
            return self.model(body)
        finally:
            with self.lock:
                self.in_flight -= 1


def _run_against_capacity(db_path, adaptive: bool) -> tuple[int, int]:
    # Each request holds its slot for 200 ms: long against the client's own scheduling jitter, so
    # how many requests collide depends on the limiter, not on how busy the CPU is (at 50 ms a loaded
    # CI machine saw the fixed run's 429s fall to 37 and, once, an adaptive sample fail).
    server = Capacity(slots=3, work_s=0.2)
    with StubServer(server) as stub:
        con = connect(db_path)
        create_views(con)
        log = EventLog(con)
        cfg = RunConfig(n=12, concurrency=12, seed=3, adaptive=adaptive, max_attempts=6)
        endpoint = Endpoint(stub.url, "stub-model", "k", "json_schema")
        try:
            summary = asyncio.run(generate(con, log, cfg, endpoint, endpoint))
        finally:
            log.close()
            con.close()
    return summary.failed, server.rejected


def test_adaptive_concurrency_backs_off_a_server_that_answers_429(db_path, tmp_path):
    fixed = tmp_path / "fixed.duckdb"
    shutil.copy(db_path, fixed)  # the same ingested corpus for both runs
    failed_fixed, rejected_fixed = _run_against_capacity(fixed, adaptive=False)
    failed_adaptive, rejected_adaptive = _run_against_capacity(db_path, adaptive=True)
    reasons = query(db_path, "SELECT sample_id, reasons FROM samples WHERE status = 'failed'")
    assert failed_adaptive == 0, reasons
    assert rejected_fixed > 0 and rejected_adaptive < rejected_fixed / 2, (rejected_adaptive, rejected_fixed)
    recorded = query(db_path, "SELECT count(*) FROM llm_calls WHERE error LIKE 'RateLimit%'")
    assert recorded == [(rejected_adaptive,)]  # every 429 is an llm.call event with its error
