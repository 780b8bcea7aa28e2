"""The whole pipeline on a stub model: CPU overhead per call, concurrency efficiency, memory, peer.

Why: on a GPU box the teacher is the expensive part, so TeacherForge must add close to nothing per
call and keep C requests in flight. The stub (tests/stub_server.py with the scripted good model
from tests/scripted.py) runs in a separate process, so this process's CPU time is TeacherForge's
own: graph, agents, HTTP client, retrieval (query embedding), rules and the event writer.

    python -m evals.bench.pipeline_bench overhead --n 32
    python -m evals.bench.pipeline_bench concurrency --levels 1,8,32,128 --latency 0.2
    python -m evals.bench.pipeline_bench rss --sizes 1000,10000 (peak RSS after each run, in turn)
    python -m evals.bench.pipeline_bench peer --calls 200     (distilabel on the same stub)

Each prints one JSON line; ``python -m evals.bench`` runs them all and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import importlib.util
import json
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

# The stub in its own process: the scripted good model, every reply after a fixed delay.
STUB = """
import sys, threading
sys.path.insert(0, "tests")
from stub_server import StubServer, _as_reply
from scripted import GoodModel
delay, good = float(sys.argv[1]), GoodModel()
def responder(body):
    reply = _as_reply(good(body))
    reply.delay_s = delay
    return reply
with StubServer(responder) as stub:
    print(stub.url, flush=True)
    threading.Event().wait()
"""


@contextlib.contextmanager
def stub_process(latency_s: float = 0.0) -> Iterator[str]:
    """A stub server in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STUB, str(latency_s)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        if not url.startswith("http"):
            raise RuntimeError("the stub server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
    order = con.execute(
        "SELECT s.sample_id, count(e.event_id) FROM samples s LEFT JOIN events e "
        "ON e.sample_id = s.sample_id AND e.type = 'llm.call' WHERE s.run_id = ? GROUP BY 1 ORDER BY 1",
        [summary.run_id],
    ).fetchall()
    con.close()
    path.unlink(missing_ok=True)
    return {
        "samples": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "retrieval_cpu_s": retriever.cpu_s,
        "calls": sum(per_sample),
        "calls_per_sample": [c for _, c in order],
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
started = time.perf_counter()
distiset = pipeline.run(use_cache=False)
wall = time.perf_counter() - started
n = len(distiset["default"]["train"])
print(json.dumps({"calls": n, "wall_s": wall}))
"""


def peer(calls: int, batch: int, tf_calls_per_s: float | None) -> dict:
    """distilabel generating ``calls`` chat calls against the same zero-latency stub."""
    if importlib.util.find_spec("distilabel") is None:  # not imported here: it patches asyncio
        return {"distilabel_ratio": None, "distilabel_note": "not installed (pip install distilabel)"}
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "ERROR"}
    with stub_process(0.0) as url:
        try:
            done = subprocess.run(
                [sys.executable, "-c", PEER, url, str(calls), str(batch)],
                cwd=ROOT, capture_output=True, text=True, check=True, timeout=600, env=env,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-1:] or [str(exc)]
            return {"distilabel_ratio": None, "distilabel_note": f"distilabel failed: {tail[0][:200]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    peer_rate = result["calls"] / result["wall_s"]
    return {
        "distilabel_ratio": round(tf_calls_per_s / peer_rate, 3) if tf_calls_per_s else None,
        "distilabel_calls_per_s": round(peer_rate, 1),
        "distilabel_calls": result["calls"],
        "distilabel_note": "distilabel TextGeneration (plain chat, no retrieval or checks) vs the whole "
        "TeacherForge pipeline, both on the zero-latency stub with the same concurrency; wall includes "
        "distilabel's pipeline start-up",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["overhead", "concurrency", "rss", "peer"])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--levels", default="1,8,32,128")
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--per-level", type=int, default=2)
    p.add_argument("--calls", type=int, default=200)
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
            result = peer(args.calls, args.concurrency, None)
    print(json.dumps({"bench": f"pipeline_{args.what}", **result}), flush=True)


if __name__ == "__main__":
    main()
