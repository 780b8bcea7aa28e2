"""The whole pipeline on a stub model: CPU overhead per call, concurrency efficiency, memory, peer.

Why: on a GPU box the teacher is the expensive part, so TeacherForge must add close to nothing per
call and keep C requests in flight. The stub (tests/stub_server.py with the scripted good model
from tests/scripted.py) runs in a separate process, so this process's CPU time is TeacherForge's
own: graph, agents, HTTP client, retrieval (query embedding), rules and the event writer.

    python -m evals.bench.pipeline_bench overhead --n 32
    python -m evals.bench.pipeline_bench concurrency --levels 1,8,32,128 --latency 0.2
    python -m evals.bench.pipeline_bench rss --sizes 1000,10000 (peak RSS after each run, in turn)
    python -m evals.bench.pipeline_bench peer --calls 2000 --concurrency 8
                                          (TeacherForge vs distilabel, steady state, same stub)

Each prints one JSON line; ``python -m evals.bench`` runs them all and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import importlib.util
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from teacherforge.agents.llm import Endpoint
from teacherforge.evals.paths import checkout_root
from teacherforge.graph.config import RunConfig
from teacherforge.graph.runner import build_retriever, generate
from teacherforge.retrieval.ingest import ingest_into
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

ROOT = checkout_root()
EXAMPLES = ROOT / "examples" / "university"

# The stub in its own process: the scripted good model, every reply after a fixed delay. It notes
# the arrival of each chat request as it reaches the responder (CLOCK_MONOTONIC, one list append)
# and, when a line "arrivals" comes on its stdin, prints them as one JSON line and forgets them;
# EOF on stdin stops it.
STUB = """
import json, sys, time
sys.path.insert(0, "tests")
from stub_server import StubServer, _as_reply
from scripted import GoodModel
delay, good, arrivals = float(sys.argv[1]), GoodModel(), []
def responder(body):
    arrivals.append(time.monotonic())
    reply = _as_reply(good(body))
    reply.delay_s = delay
    return reply
with StubServer(responder) as stub:
    print(stub.url, flush=True)
    for line in sys.stdin:
        if line.strip() == "arrivals":
            taken = arrivals[:]
            del arrivals[: len(taken)]  # requests that arrive meanwhile are appended after these
            print(json.dumps(taken), flush=True)
"""


class StubProcess:
    """The stub server's child process: its base URL and the arrival times it recorded."""

    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc, self.url = proc, url

    def arrivals(self) -> list[float]:
        """``time.monotonic()`` at each chat request since the last call, in the stub's process.

        On Linux CLOCK_MONOTONIC is one clock for the whole machine, so these compare with this
        process's ``time.monotonic()`` too.
        """
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("arrivals\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


@contextlib.contextmanager
def stub_server_process(latency_s: float = 0.0) -> Iterator[StubProcess]:
    """A stub server in a child process that records when each chat request arrives."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STUB, str(latency_s)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        if not url.startswith("http"):
            raise RuntimeError("the stub server did not start")
        yield StubProcess(proc, url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def stub_process(latency_s: float = 0.0) -> Iterator[str]:
    """A stub server in a child process; yields its base URL."""
    with stub_server_process(latency_s) as stub:
        yield stub.url


def corpus_template(folder: Path) -> Path:
    """The example corpus ingested once; each measurement runs on a copy."""
    path = folder / "template.duckdb"
    if not path.exists():
        ingest_into(path, [EXAMPLES])
    return path


class TimedRetriever:
    """Wraps a retriever and sums the CPU its searches take (they run in worker threads)."""

    def __init__(self, inner):
        self.inner, self.cpu_s, self._lock = inner, 0.0, threading.Lock()

    def search(self, *args, **kwargs):
        started = time.thread_time()
        try:
            return self.inner.search(*args, **kwargs)
        finally:
            with self._lock:
                self.cpu_s += time.thread_time() - started

    def categories(self):
        return self.inner.categories()

    def count(self):
        return self.inner.count()


_RETRIEVERS: dict[Path, object] = {}


def plan_calls(con, run_id: str) -> list[int]:
    """LLM calls per sample in plan order (the ideal schedule starts samples in this order)."""
    rows = con.execute(
        "SELECT s.sample_id, count(e.event_id) FROM samples s LEFT JOIN events e "
        "ON e.sample_id = s.sample_id AND e.type = 'llm.call' WHERE s.run_id = ? GROUP BY 1 ORDER BY 1",
        [run_id],
    ).fetchall()
    return [c for _, c in rows]


def run_pipeline(template: Path, url: str, n: int, concurrency: int, work: Path, seed: int = 1) -> dict:
    """One run of ``n`` samples on a copy of the corpus; wall, CPU and per-sample call counts."""
    path = work / f"run-{uuid.uuid4().hex[:8]}.duckdb"
    shutil.copy(template, path)
    con = connect(path)
    create_views(con)
    log = EventLog(con)
    if template not in _RETRIEVERS:  # load the embedder once per process, as a long run would
        _RETRIEVERS[template] = build_retriever(con)
    retriever = TimedRetriever(_RETRIEVERS[template])
    cfg = RunConfig(n=n, concurrency=concurrency, seed=seed, structured_output="json_schema")
    endpoint = Endpoint(url, "stub-model", "bench", "json_schema")
    cpu, wall = time.process_time(), time.perf_counter()
    summary = asyncio.run(generate(con, log, cfg, endpoint, endpoint, retriever=retriever))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    log.close()
    per_sample = [
        r[0]
        for r in con.execute(
            "SELECT count(*) FROM events WHERE run_id = ? AND type = 'llm.call' GROUP BY sample_id "
            "ORDER BY min(seq), sample_id",
            [summary.run_id],
        ).fetchall()
    ]
    in_plan_order = plan_calls(con, summary.run_id)
    con.close()
    path.unlink(missing_ok=True)
    return {
        "samples": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "retrieval_cpu_s": retriever.cpu_s,
        "calls": sum(per_sample),
        "calls_per_sample": in_plan_order,
        "accepted": summary.accepted,
        "failed": summary.failed,  # a failed sample makes the figures meaningless: reported, not hidden
    }


def ideal_wall_s(calls_per_sample: list[int], concurrency: int, latency_s: float) -> float:
    """Wall time with zero overhead: samples start in plan order on C slots, calls in a sample in turn."""
    slots = [0.0] * min(concurrency, max(1, len(calls_per_sample)))
    for calls in calls_per_sample:
        start = heapq.heappop(slots)
        heapq.heappush(slots, start + calls * latency_s)
    return max(slots)


def overhead(template: Path, work: Path, n: int, concurrency: int) -> dict:
    with stub_process(0.0) as url:
        run_pipeline(template, url, 2, 2, work)  # warm-up: imports, embedder, HTTP pool
        r = run_pipeline(template, url, n, concurrency, work)
    calls = max(1, r["calls"])
    return {
        "overhead_ms_per_call": round(r["cpu_s"] * 1000 / calls, 2),
        "overhead_ms_per_call_excl_retrieval": round((r["cpu_s"] - r["retrieval_cpu_s"]) * 1000 / calls, 2),
        "overhead_samples": n,
        "overhead_calls": r["calls"],
        "pipeline_calls_per_s_zero_latency": round(r["calls"] / r["wall_s"], 1),
        "overhead_failed_samples": r["failed"],
    }


def concurrency(template: Path, work: Path, levels: list[int], latency_s: float, per_level: int) -> dict:
    efficiency, rate, failed = {}, {}, 0
    with stub_process(latency_s) as url:
        run_pipeline(template, url, 2, 2, work)
        for c in levels:
            r = run_pipeline(template, url, max(2, per_level * c), c, work)
            ideal = ideal_wall_s(r["calls_per_sample"], c, latency_s)
            efficiency[str(c)] = round(ideal / r["wall_s"], 3)
            rate[str(c)] = round(r["samples"] / r["wall_s"], 2)
            failed += r["failed"]
    return {
        "concurrency_efficiency": efficiency,
        "samples_per_s": rate,
        "latency_ms": latency_s * 1000,
        "samples_per_level": f"{per_level} x C (at least 2)",
        "concurrency_failed_samples": failed,
    }


def rss(template: Path, work: Path, sizes: list[int], concurrency_level: int, url: str) -> dict:
    """Peak RSS of this process after a run of each size in turn (a leak would show as growth)."""
    peaks = {}
    for n in sizes:
        run_pipeline(template, url, n, concurrency_level, work)
        peaks[str(n)] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"rss_mb": peaks}


def rss_fresh_process(template: Path, work: Path, sizes: list[int], concurrency_level: int) -> dict:
    """``rss`` in a fresh process, so the figures are not the bench's own earlier runs."""
    with stub_process(0.0) as url:
        argv = [
            sys.executable, "-m", "evals.bench.pipeline_bench", "rss", "--sizes", ",".join(map(str, sizes)),
            "--concurrency", str(concurrency_level), "--template", str(template), "--url", url,
            "--work", str(work),
        ]  # fmt: skip
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1])["rss_mb"].items()}


def steady_rate(arrivals: list[float], trim: float = 0.1) -> dict:
    """Calls per second in steady state, from the times the stub saw the calls arrive.

    The arrivals are sorted and trimmed by count, not by time: the window runs from the arrival at
    the ``trim`` quantile (the 10th percentile) to the one at ``1 - trim`` (the 90th), and the rate
    is the number of calls in it (the arrivals after the first one of the window) divided by the
    time between the two. Why this window:

    - Start-up comes before the first arrival, so no arrival-based rate includes it. What the trim
      at the front removes is the ramp: a first call or batch that waits on something the steady
      state does not (a connection pool, a step process still loading, a lone probe call followed
      by a gap). The trim at the end removes the drain, where fewer than C calls are left in flight
      (the last samples of a run, distilabel's last and partial batch).
    - By count rather than a fixed number of seconds, the same function fits a 300-call quick run
      and a 2,000-call full run, a fast side and a slow side, and a start-up gap of any length.
    - A window over many calls rather than the median gap between calls: distilabel sends a batch of
      C requests at once and then waits for the whole batch, so its gaps are bimodal; the median gap
      would measure only the burst and miss the barrier, which is part of its steady-state cost.
    - 10%/90% keeps 80% of the calls: at 2,000 calls that is 1,600 of them, so the figure does not
      hang on a few, and the same cut on both sides keeps the comparison symmetric.

    Returns ``calls_per_s`` (None when fewer than two distinct times are in the window), the
    ``window_calls`` and ``window_s`` behind it, and ``calls``, the number of arrivals.
    """
    times = sorted(arrivals)
    n = len(times)
    out: dict = {"calls": n, "calls_per_s": None, "window_calls": 0, "window_s": 0.0}
    if n < 2:
        return out
    first, last = round(trim * (n - 1)), round((1 - trim) * (n - 1))
    span = times[last] - times[first]
    out |= {"window_calls": last - first, "window_s": span}
    if last > first and span > 0:
        out["calls_per_s"] = (last - first) / span
    return out


PEER = """
import json, sys, time, tempfile
from distilabel.models.llms import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration
url, calls, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [{"instruction": f"Question {i}: what does the fee cover?"} for i in range(calls)]
with tempfile.TemporaryDirectory() as cache, Pipeline(name="peer", cache_dir=cache) as pipeline:
    load = LoadDataFromDicts(data=rows, batch_size=batch)
    gen = TextGeneration(llm=OpenAILLM(model="stub-model", base_url=url, api_key="bench", max_retries=0),
                         input_batch_size=batch)
    load >> gen
    started = time.monotonic()
    distiset = pipeline.run(use_cache=False)
    wall = time.monotonic() - started
rows_out = distiset["default"]["train"]
ok = sum(1 for row in rows_out if row.get("generation"))
print(json.dumps({"rows": len(rows_out), "generated": ok, "started": started, "wall_s": wall}))
"""


def peer_tf_side(template: Path, work: Path, stub: StubProcess, calls: int, concurrency: int) -> dict:
    """TeacherForge on ``stub`` at ``concurrency`` until it has made at least ``calls`` chat calls.

    A warm-up run first (imports, the embedder, the HTTP pool: the start-up of this process) also
    gives the calls per sample that size the measured run; should that run fall short, it is run
    again larger. Only the measured run's arrivals count.
    """
    warm = run_pipeline(template, stub.url, max(2, min(concurrency, 8)), concurrency, work)
    stub.arrivals()  # forget the warm-up's
    per_sample = max(1.0, warm["calls"] / max(1, warm["samples"]))
    n = max(1, math.ceil(calls * 1.1 / per_sample))
    for _ in range(3):
        started = time.monotonic()
        r = run_pipeline(template, stub.url, n, concurrency, work)
        arrivals = stub.arrivals()
        if len(arrivals) >= calls:
            break
        n = math.ceil(n * calls / max(1, len(arrivals)) * 1.1)
    return {"run": r, "started": started, "arrivals": arrivals}


def peer(template: Path, work: Path, calls: int, concurrency: int, note: str = "") -> dict:
    """TeacherForge and distilabel on the same zero-latency stub, at the same concurrency, in steady state.

    One stub process serves both, one after the other: first the whole TeacherForge pipeline at
    ``concurrency`` samples in flight (after a warm-up run), until at least ``calls`` chat calls;
    then distilabel 1.5 ``TextGeneration`` on ``OpenAILLM`` (plain chat, no retrieval or checks) for
    exactly as many rows as TeacherForge made calls, in batches of ``concurrency``
    (``LoadDataFromDicts.batch_size`` = ``input_batch_size``: it sends a batch's requests at once).
    Each side is timed twice: steady state, by ``steady_rate`` on the arrival times the stub
    recorded (so start-up is out of both), and wall: the stub's calls ÷ TeacherForge's
    ``generate()`` / distilabel's ``Pipeline.run()`` wall time, which includes distilabel's start-up
    of its step processes (TeacherForge's process start-up is in the warm-up, not in its wall).
    ``distilabel_ratio`` = steady-state TeacherForge calls/s ÷ steady-state distilabel calls/s.
    """
    if importlib.util.find_spec("distilabel") is None:  # not imported here: it patches asyncio
        return {
            "distilabel_ratio": None,
            "distilabel_note": 'not installed (pip install "teacherforge[bench]")',
        }
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "ERROR"}
    with stub_server_process(0.0) as stub:
        tf = peer_tf_side(template, work, stub, calls, concurrency)
        try:
            done = subprocess.run(
                [sys.executable, "-c", PEER, stub.url, str(len(tf["arrivals"])), str(concurrency)],
                cwd=ROOT, capture_output=True, text=True, check=True, timeout=1800, env=env,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-1:] or [str(exc)]
            tf_rate = steady_rate(tf["arrivals"])["calls_per_s"]
            return {
                "distilabel_ratio": None,
                "tf_calls_per_s_steady": round(tf_rate, 1) if tf_rate else None,
                "tf_calls": len(tf["arrivals"]),
                "distilabel_note": f"distilabel failed: {tail[0][:200]}",
            }
        dl_arrivals = stub.arrivals()
    dl = json.loads(done.stdout.strip().splitlines()[-1])
    tf_steady, dl_steady = steady_rate(tf["arrivals"]), steady_rate(dl_arrivals)
    tf_wall = len(tf["arrivals"]) / tf["run"]["wall_s"]
    dl_wall = len(dl_arrivals) / dl["wall_s"] if dl["wall_s"] > 0 else None
    tf_rate, dl_rate = tf_steady["calls_per_s"], dl_steady["calls_per_s"]

    def first_call_s(arrivals: list[float], started: float) -> float | None:
        return round(min(arrivals) - started, 3) if arrivals else None

    def r(x: float | None, digits: int = 1) -> float | None:
        return round(x, digits) if x is not None else None

    return {
        "distilabel_ratio": r(tf_rate / dl_rate, 3) if tf_rate and dl_rate else None,
        "distilabel_ratio_wall": r(tf_wall / dl_wall, 3) if dl_wall else None,
        "tf_calls_per_s_steady": r(tf_rate),
        "distilabel_calls_per_s_steady": r(dl_rate),
        "tf_calls_per_s_wall": r(tf_wall),
        "distilabel_calls_per_s_wall": r(dl_wall),
        "tf_calls": len(tf["arrivals"]),
        "tf_samples": tf["run"]["samples"],
        "tf_failed_samples": tf["run"]["failed"],
        "distilabel_calls": len(dl_arrivals),
        "distilabel_rows": dl["rows"],
        "distilabel_generated": dl["generated"],
        "peer_concurrency": concurrency,
        "peer_calls_target": calls,
        "tf_first_call_s": first_call_s(tf["arrivals"], tf["started"]),
        "distilabel_first_call_s": first_call_s(dl_arrivals, dl["started"]),
        "peer_window": {
            "tf_calls": tf_steady["window_calls"],
            "tf_s": r(tf_steady["window_s"], 3),
            "distilabel_calls": dl_steady["window_calls"],
            "distilabel_s": r(dl_steady["window_s"], 3),
        },
        "distilabel_note": (
            "distilabel 1.5 TextGeneration on OpenAILLM (plain chat, no retrieval or checks) vs the whole "
            f"TeacherForge pipeline, one zero-latency stub process for both, {concurrency} calls in flight "
            f"(TeacherForge concurrency = distilabel batch size), >= {calls} calls each{note}. "
            "Steady: the stub's arrival times of the chat requests (CLOCK_MONOTONIC), calls between the "
            "10th- and 90th-percentile arrival / time between them, so start-up, ramp and drain are out "
            "for both. Wall: calls / TeacherForge generate() (after a warm-up run in the same process) "
            "and distilabel Pipeline.run() (includes its step processes' start-up); *_first_call_s is "
            "the time from that start to the first call."
        ),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["overhead", "concurrency", "rss", "peer"])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--levels", default="1,8,32,128")
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--per-level", type=int, default=2)
    p.add_argument("--calls", type=int, default=2000, help="peer: at least this many calls per side")
    p.add_argument("--sizes", default="1000,10000", help="rss: sample counts, run one after another")
    p.add_argument("--template", type=Path)
    p.add_argument("--url")
    p.add_argument("--work", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        template = args.template or corpus_template(work)
        if args.what == "overhead":
            result = overhead(template, work, args.n, args.concurrency)
        elif args.what == "concurrency":
            levels = [int(c) for c in args.levels.split(",")]
            result = concurrency(template, work, levels, args.latency, args.per_level)
        elif args.what == "rss":
            sizes = [int(x) for x in args.sizes.split(",")]
            if args.url:
                result = rss(template, work, sizes, args.concurrency, args.url)
            else:
                with stub_process(0.0) as url:
                    result = rss(template, work, sizes, args.concurrency, url)
        else:
            result = peer(template, work, args.calls, args.concurrency)
    print(json.dumps({"bench": f"pipeline_{args.what}", **result}), flush=True)


if __name__ == "__main__":
    main()
