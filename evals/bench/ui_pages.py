"""Page latency of ``teacherforge ui`` on a big log: the samples page and a sample page (target < 300 ms).

Why a separate server process: the figures are what a browser waits for, so the server runs as
``teacherforge ui`` would (its own process, real sockets) and this process only sends requests.
Prints one JSON line: the server's start (Python imports included), the first samples page (it
waits for the index to be built), then the median and the slowest of repeated requests per page,
and the machine's load.

    python -m evals.bench.ui_pages [--samples 10000] [--events-per-sample 100] [--db FILE] [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from teacherforge.evals.bench.ui_synthetic import RUN_ID, build

PAGES = {
    "samples_page": "/samples",
    "samples_filtered_sorted": "/samples?status=rejected&sort=score&order=desc",
    "samples_search": "/samples?q=deposit+sample",
    "samples_page_150": "/samples?page=150",
    "api_samples": "/api/samples?per_page=100",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def measure(db: Path, repeat: int, samples: int) -> dict:
    port = _free_port()
    command = [sys.executable, "-m", "teacherforge.cli.app", "ui", "--db", str(db), "--port", str(port)]
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    figures: dict = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            while True:  # this endpoint reads no database: it answers as soon as the server is up
                try:
                    client.get("/api/reviews/pending").raise_for_status()
                    break
                except httpx.TransportError:
                    if server.poll() is not None:
                        raise RuntimeError(server.stderr.read()) from None
                    time.sleep(0.05)
            figures["server_start_s"] = round(time.perf_counter() - started, 2)
            figures["first_samples_page_s"] = round(
                _timed(client, "/samples") / 1000, 2
            )  # waits for the index
            for name, path in PAGES.items():
                _timed(client, path)  # the first of a kind fills the list cache; then steady state
                figures[name] = _summary([_timed(client, path) for _ in range(repeat)])
            ids = [f"{RUN_ID}-{i:05d}" for i in range(0, samples, max(1, samples // repeat))][:repeat]
            figures["sample"] = _summary([_timed(client, f"/samples/{sid}") for sid in ids])
            figures["dashboard_first_s"] = round(_timed(client, "/dashboard") / 1000, 2)
            figures["dashboard"] = _summary([_timed(client, "/dashboard") for _ in range(repeat)])
    finally:
        server.terminate()
        server.wait(timeout=30)
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--events-per-sample", type=int, default=100)
    p.add_argument("--db", type=Path, help="reuse this synthetic log (built there if missing)")
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "ui-bench.duckdb"
        build_s = None
        if not db.exists():
            started = time.perf_counter()
            build(db, args.samples, args.events_per_sample)
            build_s = round(time.perf_counter() - started, 1)
        figures = measure(db, args.repeat, args.samples)
        events = args.samples * args.events_per_sample
    load = {"load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    head = {"bench": "ui_pages", "samples": args.samples, "events": events, "build_s": build_s}
    print(json.dumps({**head, **figures, **load, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
