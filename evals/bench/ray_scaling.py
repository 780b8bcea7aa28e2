"""Scaling on Ray: the same plan in one process and on --workers 1 and 2, samples/s and efficiency.

Why: one Python process tops out at one core (7-15 ms of CPU per call, docs/performance.md), so
C=64 at 200 ms per call (320 calls/s) needs more than one process. This runs the real pipeline
(retrieval, agents, rules, events) against stub servers in their own processes, on a local Ray
cluster on 127.0.0.1, and compares the wall time with the ideal schedule (pipeline_bench).

    python -m evals.bench.ray_scaling --quick             # workers_2_efficiency: C=64, 128 samples
    python -m evals.bench.ray_scaling --n 400 --concurrency 64 --workers 1,2 --nodes 4

``--nodes 4`` adds a simulated 4-node cluster (four raylets on this machine, one worker each)
driving two stub servers that each serve at most ``--slots`` requests at once, like a vLLM server
with ``--max-num-seqs``; the rest queue. Efficiency there is against the ideal on those slots.
Prints one JSON line. Timings never go into tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from teacherforge.agents.llm import Endpoint
from teacherforge.evals.bench.pipeline_bench import corpus_template, ideal_wall_s, plan_calls, run_pipeline
from teacherforge.evals.paths import checkout_root
from teacherforge.graph.config import RunConfig
from teacherforge.graph.ray_cluster import Cluster, connect, disconnect, import_ray
from teacherforge.graph.workers import generate_on_workers
from teacherforge.store.database import connect as connect_db
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

ROOT = checkout_root()

# A stub server in its own process: the scripted good model, each reply after a fixed delay, and at
# most ``slots`` requests served at once (0: unlimited); the rest wait, as on a full vLLM server.
STUB = """
import sys, threading, time
sys.path.insert(0, "tests")
from stub_server import StubServer, _as_reply
from scripted import GoodModel
delay, slots, good = float(sys.argv[1]), int(sys.argv[2]), GoodModel()
gate, lock = (threading.BoundedSemaphore(slots) if slots else None), threading.Lock()
def responder(body):
    with lock:
        reply = _as_reply(good(body))
    if gate is None:
        reply.delay_s = delay
        return reply
    with gate:
        time.sleep(delay)
    return reply
with StubServer(responder) as stub:
    print(stub.url, flush=True)
    threading.Event().wait()
"""


@contextlib.contextmanager
def stub_servers(count: int, latency_s: float, slots: int = 0) -> Iterator[list[str]]:
    procs, urls = [], []
    try:
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-c", STUB, str(latency_s), str(slots)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            url = proc.stdout.readline().strip() if proc.stdout else ""
            if not url.startswith("http"):
                raise RuntimeError("a stub server did not start")
            urls.append(url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def run_workers(
    template: Path, urls: list[str], n: int, concurrency: int, workers: int, cluster: Cluster, work: Path
) -> dict:
    """One run of ``n`` samples on ``workers`` Ray workers; wall with and without worker start-up."""
    path = work / f"ray-{uuid.uuid4().hex[:8]}.duckdb"
    shutil.copy(template, path)
    con = connect_db(path)
    create_views(con)
    log = EventLog(con)
    cfg = RunConfig(n=n, concurrency=concurrency, seed=1, structured_output="json_schema")
    endpoint = Endpoint(urls[0], "stub-model", "bench", "json_schema", tuple(urls[1:]))
    cpu, wall = time.process_time(), time.perf_counter()
    summary = asyncio.run(
        generate_on_workers(con, log, cfg, endpoint, endpoint, cluster, workers, notify=lambda m: None)
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    log.close()
    # from the moment the workers were ready (workers.started) to the last sample's end
    dispatch = con.execute(
        "SELECT epoch(max(e.ts) - min(w.ts)) FROM events e, events w WHERE e.run_id = ? AND w.run_id = ? "
        "AND w.type = 'workers.started' AND e.type IN ('sample.accepted', 'sample.rejected', "
        "'sample.failed')",
        [summary.run_id, summary.run_id],
    ).fetchone()[0]
    calls = plan_calls(con, summary.run_id)
    usage = con.execute(
        "SELECT payload FROM events WHERE run_id = ? AND type = 'workers.finished'", [summary.run_id]
    ).fetchone()
    per_worker = json.loads(usage[0])["workers"] if usage else []
    con.close()
    path.unlink(missing_ok=True)
    return {
        "samples": n,
        "workers": workers,
        "wall_s": wall,
        "dispatch_s": float(dispatch),
        "driver_cpu_s": cpu,
        "calls": sum(calls),
        "calls_per_sample": calls,
        "failed": summary.failed,
        "worker_cpu_s": sum(w["cpu_s"] or 0 for w in per_worker),
        "samples_per_worker": [w["samples"] for w in per_worker],
    }


def _figures(r: dict, concurrency: int, latency_s: float, slots: int | None = None) -> dict:
    ideal = ideal_wall_s(r["calls_per_sample"], concurrency, latency_s)
    if slots:  # the servers serve at most ``slots`` calls at once in all
        ideal = max(ideal, r["calls"] * latency_s / slots)
    wall = r.get("dispatch_s", r["wall_s"])
    out = {
        "efficiency": round(ideal / wall, 3),
        "samples_per_s": round(r["samples"] / wall, 2),
        "wall_s": round(wall, 2),
        "ideal_s": round(ideal, 2),
        "calls": r["calls"],
        "failed": r["failed"],
    }
    if "cpu_s" in r:  # one process: all of TeacherForge's CPU
        out["cpu_ms_per_call"] = round(r["cpu_s"] * 1000 / max(1, r["calls"]), 2)
    if "dispatch_s" in r:
        out |= {
            "efficiency_incl_startup": round(ideal / r["wall_s"], 3),
            "wall_incl_startup_s": round(r["wall_s"], 2),
            "driver_cpu_ms_per_call": round(r["driver_cpu_s"] * 1000 / max(1, r["calls"]), 2),
            "worker_cpu_ms_per_call": round(r["worker_cpu_s"] * 1000 / max(1, r["calls"]), 2),
            "samples_per_worker": r["samples_per_worker"],
        }
    return out


def local_scaling(
    template: Path, work: Path, n: int, concurrency: int, latency_s: float, worker_counts: list[int]
) -> dict:
    """One process, then each worker count, on one stub and one local cluster."""
    results: dict[str, dict] = {}
    cluster = connect(max(worker_counts), None)
    try:
        with stub_servers(1, latency_s) as urls:
            run_pipeline(template, urls[0], 2, 2, work)  # warm-up of this process: imports, embedder
            single = run_pipeline(template, urls[0], n, concurrency, work)
            results["single_process"] = _figures(single, concurrency, latency_s)
            for workers in worker_counts:
                r = run_workers(template, urls, n, concurrency, workers, cluster, work)
                results[f"workers_{workers}"] = _figures(r, concurrency, latency_s)
    finally:
        disconnect(cluster)
    return results


def simulated_cluster(
    template: Path, work: Path, n: int, concurrency: int, latency_s: float, nodes: int, slots: int
) -> dict:
    """``nodes`` raylets on this machine (one CPU, one worker each) and two slot-limited stub servers."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every simulated node on 127.0.0.1
    import_ray(local=True)
    from ray.cluster_utils import Cluster as RayTestCluster

    fake = RayTestCluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            fake.add_node(num_cpus=1)
        fake.wait_for_nodes()
        cluster = connect(None, fake.address)
        try:
            with stub_servers(2, latency_s, slots) as urls:
                r = run_workers(template, urls, n, concurrency, nodes, cluster, work)
        finally:
            disconnect(cluster)
    finally:
        fake.shutdown()
    return {
        f"simulated_{nodes}_nodes": {
            **_figures(r, concurrency, latency_s, slots=2 * slots),
            "servers": 2,
            "slots_per_server": slots,
        }
    }


def workers_2_efficiency(template: Path, work: Path, n: int = 128, concurrency: int = 64) -> dict:
    """The ``python -m evals.bench`` key: C=64, 200 ms calls, 2 x C samples, --workers 2 vs the ideal."""
    got = local_scaling(template, work, n, concurrency, 0.2, [2])
    w2, one = got["workers_2"], got["single_process"]
    return {
        "workers_2_efficiency": w2["efficiency"],
        "workers_2_efficiency_incl_startup": w2["efficiency_incl_startup"],
        "workers_2_samples_per_s": w2["samples_per_s"],
        "workers_2_driver_cpu_ms_per_call": w2["driver_cpu_ms_per_call"],
        "workers_2_worker_cpu_ms_per_call": w2["worker_cpu_ms_per_call"],
        "workers_2_samples_per_worker": w2["samples_per_worker"],
        "workers_2_failed_samples": w2["failed"],
        f"single_process_efficiency_c{concurrency}": one["efficiency"],
        "workers_2_note": f"C={concurrency}, 200 ms stub, {n} samples; efficiency = ideal schedule / wall "
        "from workers ready to the last sample's end (incl_startup: worker start-up included, the local "
        "cluster already up)",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="only workers_2_efficiency (default 128 samples)")
    p.add_argument("--n", type=int, help="samples (default 400; --quick: 128)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--nodes", type=int, default=0, help="also a simulated cluster of this many nodes")
    p.add_argument("--slots", type=int, default=16, help="requests each of the 2 simulated servers serves")
    p.add_argument("--template", type=Path)
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = args.template or corpus_template(work)
        if args.quick:
            result = workers_2_efficiency(template, work, args.n or 128, args.concurrency)
        else:
            args.n = args.n or 400
            counts = [int(w) for w in args.workers.split(",")]
            result = local_scaling(template, work, args.n, args.concurrency, args.latency, counts)
            if args.nodes:
                result |= simulated_cluster(
                    template, work, args.n, args.concurrency, args.latency, args.nodes, args.slots
                )
            result |= {"n": args.n, "concurrency": args.concurrency, "latency_ms": args.latency * 1000}
    result |= {
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(load, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps({"bench": "ray_scaling", **result}), flush=True)


if __name__ == "__main__":
    main()
