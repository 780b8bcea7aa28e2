"""`run --workers N` / `--ray-address`: one run's samples on Ray worker processes, one event log.

The Ray tests start real clusters (a few seconds each), so they share one head per module for the
`--ray-address` cases; `--workers 2` starts and stops its own, as a user's run does. Everything
listens on 127.0.0.1 only. Timings are never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import query
from scripted import GoodModel
from stub_server import StubReply, StubServer

from teacherforge.graph.ray_cluster import ClusterError, check_address, require_ray, split_address
from teacherforge.graph.remote_log import Batch, RemoteSink, replay_batch

TEACHERFORGE = [sys.executable, "-m", "teacherforge.cli.app"]
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
# A token of our own for the shared head and the runs that join it: Ray's token auth stays on, and
# nothing is read from or written to ~/.ray.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # 127.0.0.1 stays 127.0.0.1 (Ray would use the LAN address)
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}


def _ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


@pytest.fixture
def ray_required():
    if not _ray_installed():
        if os.environ.get("CI"):
            pytest.fail('ray is not installed; CI must install the extra: pip install -e ".[dev,ray]"')
        pytest.skip('ray not installed (pip install "teacherforge[ray]")')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slow_good_model(delay_s: float):
    """GoodModel with every reply after ``delay_s``: samples last long enough to be caught mid-flight.

    Its questions are keyed by request, not numbered by arrival: two runs of one plan (one process,
    then workers) interleave their samples differently, and numbered questions made a sample's
    conversation, and so whether the rules sent it to the refiner, depend on that order."""
    good = GoodModel(keyed_questions=True)

    def responder(body: dict) -> StubReply:
        result = good(body)
        reply = result if isinstance(result, StubReply) else StubReply(content=json.dumps(result))
        reply.delay_s = delay_s
        return reply

    return responder


def tf(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TEACHERFORGE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def per_sample(db: Path, run_id: str) -> dict[str, tuple]:
    """(status, turns, event types in stream order) per sample: what must not depend on the workers."""
    status = dict(query(db, "SELECT sample_id, status FROM samples WHERE run_id = ?", run_id))
    turns = dict(query(db, "SELECT sample_id, count(*) FROM turns WHERE run_id = ? GROUP BY 1", run_id))
    types = query(
        db,
        "SELECT sample_id, list(type ORDER BY seq) FROM live_events WHERE run_id = ? "
        "AND sample_id IS NOT NULL GROUP BY 1",
        run_id,
    )
    return {sid: (status.get(sid), turns.get(sid, 0), tuple(kinds)) for sid, kinds in types}


def verify_clean(db: Path) -> None:
    result = tf("verify", "--db", db)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def ray_head():
    """One Ray head on 127.0.0.1 for the module's --ray-address runs; stopped by its own process id."""
    if not _ray_installed():
        yield None
        return
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="tfray", dir="/tmp")  # short: Ray's socket paths live under it
    head = subprocess.Popen(
        [
            RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
        ],
        env={**os.environ, **RAY_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so teardown reaches exactly its processes
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                check_address(f"127.0.0.1:{port}", timeout_s=1.0)
                break
            except ClusterError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(0.5)
        time.sleep(2)  # the head answers TCP before its raylet has registered
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)  # a polite stop drains for up to 30 s; the group is killed next
        with contextlib.suppress(ProcessLookupError):  # the group this fixture created: gcs, raylet, agents
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)
        shutil.rmtree(temp, ignore_errors=True)


# -- no Ray needed ---------------------------------------------------------------------------------


def test_remote_sink_ships_events_in_order_and_the_driver_drops_a_lost_attempt():
    sink = RemoteSink()
    sink.append("run-x", "sample.planned", {"i": 0}, sample_id="s0")
    sink.append("run-x", "endpoint.cooled", {"url": "u"})
    sink.append("run-x", "sample.planned", {"i": 1}, sample_id="s1")
    sink.finished("s0", "accepted")
    sink.finished("s1", "accepted")
    batch = sink.take()
    assert not sink.take()  # swapped out: the next batch starts empty

    written: list[tuple] = []

    class Log:
        def append(self, run_id, type, payload=None, sample_id=None, agent=None, parent_event_id=None):
            written.append((type, sample_id))

    done = replay_batch(batch, Log(), owns=lambda sid: sid == "s0")  # s1 was taken from this worker
    assert written == [("sample.planned", "s0"), ("endpoint.cooled", None)]
    assert done == [("s0", "accepted")]
    assert not Batch()


def test_address_errors_are_one_line_without_ray():
    with pytest.raises(ClusterError, match="expected HOST:PORT"):
        split_address("nonsense")
    assert split_address("ray://10.0.0.5:10001") == ("10.0.0.5", 10001)
    with pytest.raises(ClusterError, match="no Ray head answers there"):
        check_address(f"127.0.0.1:{_free_port()}", timeout_s=1.0)


def test_missing_ray_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(ClusterError, match=r'pip install "teacherforge\[ray\]"'):
        require_ray()


def test_wrong_ray_address_is_one_line_exit_2(db_path):
    result = tf("run", "--db", db_path, "--n", "2", "--ray-address", f"127.0.0.1:{_free_port()}", timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --ray-address 127.0.0.1:"), result.stderr
    assert result.stdout == ""  # refused before a run id was given out


# -- on Ray ----------------------------------------------------------------------------------------


def test_two_workers_match_a_single_process_run(ray_required, db_path, tmp_path):
    local, on_workers = db_path, tmp_path / "workers.duckdb"
    shutil.copy(db_path, on_workers)
    common = ["--n", 6, "--seed", 5, "--concurrency", 4, "--model", "stub-model", "--run-id", "run-same"]
    with StubServer(slow_good_model(0.02)) as stub:
        one = tf("run", "--db", local, "--llm-url", stub.url, *common, "--json")
        two = tf("run", "--db", on_workers, "--llm-url", stub.url, *common, "--workers", 2, "--json")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert "local Ray cluster on 127.0.0.1" in two.stderr
    assert (
        json.loads(two.stdout.splitlines()[-1])["accepted"]
        == json.loads(one.stdout.splitlines()[-1])["accepted"]
    )
    expected = per_sample(local, "run-same")
    assert len(expected) == 6
    assert per_sample(on_workers, "run-same") == expected
    workers = query(on_workers, "SELECT payload FROM events WHERE type = 'workers.started'")
    assert len(json.loads(workers[0][0])["workers"]) == 2
    verify_clean(on_workers)


def test_a_killed_worker_loses_and_duplicates_nothing(ray_required, ray_head, db_path):
    n = 16
    args = [
        *TEACHERFORGE, "run", "--db", db_path, "--n", n, "--seed", 7, "--concurrency", 4,
        "--model", "stub-model", "--ray-address", ray_head, "--workers", 2, "--json",
    ]  # fmt: skip
    stderr: list[str] = []
    with StubServer(slow_good_model(0.1)) as stub:
        proc = subprocess.Popen(
            [str(a) for a in [*args, "--llm-url", stub.url]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **RAY_ENV},
        )
        reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 180
        while not any("worker(s)" in line for line in stderr) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(stderr)
            time.sleep(0.1)
        line = next(line for line in stderr if "worker(s)" in line)
        victim = int(line.split("0: pid ", 1)[1].split()[0])
        time.sleep(1.0)  # samples take >= 0.7 s (7 calls at 0.1 s): the victim is mid-sample now
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(stderr)[-3000:]
    run_id = out.splitlines()[0]
    summary = json.loads(out.splitlines()[-1])
    assert summary["accepted"] + summary["rejected"] + summary["failed"] == n
    rows = query(db_path, "SELECT count(*), count(DISTINCT sample_id) FROM samples WHERE run_id = ?", run_id)
    assert rows == [(n, n)]  # none lost, none twice
    assert query(db_path, "SELECT count(*) FROM samples WHERE status = 'running'") == [(0,)]
    lost = query(db_path, "SELECT payload FROM events WHERE type = 'worker.lost' AND run_id = ?", run_id)
    assert len(lost) == 1, "".join(stderr)
    restarted = json.loads(lost[0][0])["restarted"]
    assert restarted, "the killed worker held no sample"
    for sample_id in restarted:
        marks = query(
            db_path,
            "SELECT seq FROM events WHERE sample_id = ? AND type = 'sample.restarted' "
            "AND payload->>'reason' = 'worker lost'",
            sample_id,
        )
        before = query(
            db_path,
            "SELECT count(*) FROM events WHERE sample_id = ? AND type = 'llm.call' AND seq < ? "
            "AND payload->>'error' IS NULL",
            sample_id,
            marks[0][0] if marks else -1,
        )[0][0]
        if before:  # the lost attempt had answers: the restart reused them instead of asking again
            assert len(marks) == 1
            reused = query(
                db_path, "SELECT count(*) FROM llm_calls WHERE sample_id = ? AND reused", sample_id
            )
            assert reused[0][0] >= 1
    verify_clean(db_path)


def test_a_worker_that_cannot_reach_its_endpoint_names_the_url(ingested_template):
    """Checked from the worker's own machine at start-up (not only from the driver's), URL in the line."""
    from teacherforge.agents.llm import Endpoint
    from teacherforge.graph.config import RunConfig
    from teacherforge.graph.ray_worker import SampleWorker, WorkerSpec
    from teacherforge.graph.runner import load_chunk_table
    from teacherforge.store.database import connect

    con = connect(ingested_template, read_only=True)
    try:
        table = load_chunk_table(con)
    finally:
        con.close()
    url = f"http://127.0.0.1:{_free_port()}/v1"
    endpoint = Endpoint(url, "stub-model", "k", "json_schema")
    worker = SampleWorker(WorkerSpec("run-x", RunConfig(n=1), endpoint, endpoint, 1), table, None)
    info = asyncio.run(worker.setup(3))
    assert info["error"].startswith("worker 3 on ") and f"cannot reach its endpoint: {url}" in info["error"]


def test_the_dispatcher_restarts_a_lost_workers_samples_once_with_their_replies():
    """The hand-out state machine without Ray: fake actors, a worker lost mid-sample, a late batch dropped."""
    from teacherforge.graph.budget import CallMeter
    from teacherforge.graph.interrupt import StopControl
    from teacherforge.graph.remote_log import PendingEvent
    from teacherforge.graph.runner import fresh_jobs
    from teacherforge.graph.worker_dispatch import Dispatcher, WorkerHandle

    class Actor:
        def __init__(self):
            self.got: list = []
            self.submit = self  # actor.submit.remote(batch)

        def remote(self, batch):
            self.got.extend(batch if isinstance(batch, list) else [batch])
            return asyncio.sleep(0)

    class Log:
        def __init__(self):
            self.events: list[tuple] = []

        def append(self, run_id, type, payload=None, sample_id=None, agent=None, parent_event_id=None):
            self.events.append((type, sample_id))

    def event(kind: str, sid: str, **payload) -> PendingEvent:
        return PendingEvent("run-x", kind, payload, sid, None, None)

    reply = {"request_hash": "h1", "parsed": {"message": "hi"}, "raw": "{}", "tokens_in": 1, "tokens_out": 1}
    call = {"agent": "persona_user", "endpoint": "u", "model": "m", "messages": [], "params": {}}
    call |= {"schema_name": "S", "template": "t", "template_hash": "th", "attempt": 1, "latency_ms": 1.0}

    async def scenario():
        log, jobs = Log(), fresh_jobs("run-x", 4)
        d = Dispatcher(
            log, "run-x", jobs, CallMeter(), StopControl(), None, None, lambda m: None, lambda a: None
        )
        keeper = type("Keeper", (), {"forget_worker": Actor()})()  # the run's budget keeper
        d.budget_keeper = keeper
        a, b = WorkerHandle(0, Actor(), 2), WorkerHandle(1, Actor(), 2)
        d.workers += [a, b]
        d.fill()
        await asyncio.sleep(0)
        held_by_a = sorted(a.owned)
        assert len(held_by_a) == 2 and len(b.owned) == 2
        first = held_by_a[0]
        d.apply(a, Batch([event("sample.planned", first), event("llm.call", first, **call, **reply)], []))
        d._lose(a, RuntimeError("killed"))
        assert keeper.forget_worker.got == [0]  # its reservations are freed at the keeper
        assert sorted(x.job.sample_id for x in list(d.queue)) == held_by_a
        restarted = {x.job.sample_id: x for x in d.queue}
        assert restarted[first].job.restart and restarted[first].restart_reason == "worker lost"
        assert restarted[first].replies == {
            "h1": {k: reply[k] for k in ("raw", "parsed", "tokens_in", "tokens_out")}
        }
        assert not restarted[held_by_a[1]].job.restart  # nothing of it was written: a plain first attempt
        d.apply(a, Batch([event("turn.added", first)], [(first, "accepted")]))  # late: dropped
        assert ("turn.added", first) not in log.events
        for sid in sorted(b.owned):
            d.apply(b, Batch([event("sample.accepted", sid)], [(sid, "accepted")]))
        assert sorted(b.owned) == held_by_a  # the freed slots took the restarts
        for sid in held_by_a:
            d.apply(b, Batch([event("sample.accepted", sid)], [(sid, "accepted")]))
        assert d.finished.is_set() and not d.queue and not d.owner
        assert [e for e in log.events if e[0] == "worker.lost"] == [("worker.lost", None)]
        assert b.finished == 4 and a.finished == 0

    asyncio.run(scenario())


def test_workers_search_the_shared_weaviate_and_match_a_single_process_run(ray_required, db_path, tmp_path):
    """--store weaviate on workers: each worker queries the one Weaviate, as a local run does."""
    pytest.importorskip("weaviate", reason="weaviate-client is not installed (pip install -e '.[weaviate]')")
    from test_weaviate_fake import FakeWeaviate

    from teacherforge.retrieval.weaviate_client import WeaviateSettings, connect_weaviate
    from teacherforge.retrieval.weaviate_mirror import sync_to_weaviate
    from teacherforge.retrieval.weaviate_store import WeaviateChunkStore
    from teacherforge.store.database import connect

    on_workers = tmp_path / "workers.duckdb"
    common = ["--n", 4, "--seed", 3, "--concurrency", 4, "--model", "stub-model", "--run-id", "run-wv"]
    with FakeWeaviate() as fake, StubServer(slow_good_model(0.02)) as stub:
        settings = WeaviateSettings(url=fake.url, grpc_port=fake.grpc_port)
        con = connect(db_path)
        store = WeaviateChunkStore(connect_weaviate(settings), settings)
        sync_to_weaviate(con, store)
        store.client.close()
        con.close()
        shutil.copy(db_path, on_workers)
        store_args = [
            "--store",
            "weaviate",
            "--weaviate-url",
            fake.url,
            "--weaviate-grpc-port",
            fake.grpc_port,
        ]
        one = tf("run", "--db", db_path, "--llm-url", stub.url, *common, *store_args)
        searched_locally = len(fake.searches)
        two = tf("run", "--db", on_workers, "--llm-url", stub.url, *common, *store_args, "--workers", 2)
        searched_on_workers = len(fake.searches) - searched_locally
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    # the same searches on the same store, plus one warm-up per worker
    assert searched_locally > 0 and searched_on_workers == searched_locally + 2
    expected = per_sample(db_path, "run-wv")
    assert len(expected) == 4
    assert per_sample(on_workers, "run-wv") == expected
    hits = "SELECT sample_id, purpose, query, chunk_ids FROM retrievals WHERE run_id = ? ORDER BY ALL"
    assert query(on_workers, hits, "run-wv") == query(db_path, hits, "run-wv")
    verify_clean(on_workers)


def test_a_token_cap_holds_across_workers_and_a_resume_on_workers_completes_the_run(
    ray_required, db_path, tmp_path
):
    """--max-tokens on workers: one keeper admits every worker's attempts, so the whole run stays
    under the cap; it stops as a local run does (run.budget_reached), and a resume with a higher cap
    finishes the rest without a duplicate."""
    n, cfg = 10, tmp_path / "run.yaml"
    cfg.write_text("max_tokens: 300\n")  # every attempt reserves 300 completion tokens
    common = ["--db", db_path, "--model", "stub-model", "--workers", 2, "--config", cfg]
    with StubServer(slow_good_model(0.02)) as stub:
        cap = ["--max-tokens", 4000, "--llm-url", stub.url]
        first = tf("run", "--n", n, "--seed", 4, "--concurrency", 4, *cap, *common)
        assert first.returncode == 0, first.stderr[-2000:]
        run_id = first.stdout.splitlines()[0]
        assert "budget reached" in first.stderr and f"--resume {run_id}" in first.stderr
        ((payload,),) = query(db_path, "SELECT payload FROM events WHERE type = 'run.budget_reached'")
        reached = json.loads(payload)
        spent = query(db_path, "SELECT sum(tokens_in) + sum(tokens_out) FROM llm_calls WHERE NOT reused")[0][
            0
        ]
        assert reached["cap"] == "max_tokens" and reached["limit"] == 4000
        assert reached["refused"]["max_tokens"] == 300  # a worker's attempt was refused by the keeper
        assert "2 worker(s)" in first.stderr
        assert 0 < spent == reached["tokens"] <= 4000  # the driver's count is the events', under the cap
        done = query(db_path, "SELECT count(*) FROM samples WHERE run_id = ?", run_id)[0][0]
        assert 0 < done < n
        final = tf("run", "--resume", run_id, "--max-tokens", 10**7, "--llm-url", stub.url, *common)
    assert final.returncode == 0, final.stderr[-2000:]
    assert "budget reached" not in final.stderr
    assert query(db_path, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(n, n)]
    verify_clean(db_path)
