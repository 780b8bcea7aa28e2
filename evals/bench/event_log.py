"""Event-log figures: append rate, replay of one sample and SQL recipe times on a large synthetic log.

Why: the log is the source of truth and the debugger; it must absorb many concurrent samples and
answer a replay or a recipe quickly even with a million events. Prints one JSON line.
    python -m evals.bench.event_log [--samples 10000] [--events-per-sample 100]

``events_per_s`` is wall time from the first append to the flush, so a busy machine lowers it;
``cpu_us_per_event`` (process CPU time over the same span, both threads and DuckDB) does not.
``snapshot_s`` is one copy of the whole log for readers in other processes (store/snapshot.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

from teacherforge.evals.paths import checkout_root
from teacherforge.retrieval.index import ensure_index_schema
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.projection import fold, load_events
from teacherforge.store.snapshot import SnapshotPublisher
from teacherforge.store.verify import verify
from teacherforge.store.views import create_views

DOCS = checkout_root() / "docs" / "provenance.md"
PLAN = {
    "tier": "direct",
    "persona": {"name": "p", "description": "d"},
    "technique": "standard",
    "user_turns": 2,
}


def _sample_events(log: EventLog, run_id: str, sample_id: str, per_sample: int) -> None:
    log.append(run_id, "sample.planned", {"sample_id": sample_id, "index": 0, **PLAN}, sample_id=sample_id)
    for i in range(per_sample - 2):
        if i % 3 == 0:
            payload = {"turn_index": i // 3, "role": "user" if i % 2 else "assistant", "content": "x" * 200}
            log.append(run_id, "turn.added", payload, sample_id=sample_id)
        else:
            payload = {
                "agent": "teacher",
                "model": "m",
                "messages": [{"role": "user", "content": "y" * 400}],
                "tokens_in": 500,
                "tokens_out": 120,
                "latency_ms": 900.0,
                "attempt": 1,
                "error": None,
            }
            log.append(run_id, "llm.call", payload, sample_id=sample_id, agent="teacher")
    log.append(run_id, "sample.accepted", {"revisions": 0}, sample_id=sample_id)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--events-per-sample", type=int, default=100)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        con = connect(path)
        create_views(con)
        ensure_index_schema(con, 384)  # recipes join the (here empty) chunk tables
        log = EventLog(con)
        run_id = "run-bench"
        log.append(run_id, "run.started", {"n": args.samples, "config": {}, "config_hash": "x"})
        started, cpu_started = time.perf_counter(), time.process_time()
        for s in range(args.samples):
            _sample_events(log, run_id, f"{run_id}-{s:05d}", args.events_per_sample)
        log.flush()
        append_s, append_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        total = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        log.append(run_id, "run.finished", {"status": "finished"})
        log.close()
        target = f"{run_id}-{args.samples // 2:05d}"
        started = time.perf_counter()
        fold(target, load_events(con, sample_id=target))
        replay_ms = (time.perf_counter() - started) * 1000
        recipes = {}
        for sql in re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S):
            started = time.perf_counter()
            con.execute(sql).fetchall()
            recipes[sql.strip().splitlines()[0][:60]] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        verify_problems = len(verify(con)) if args.samples <= 20_000 else None
        verify_s = time.perf_counter() - started
        publisher = SnapshotPublisher(path)
        started = time.perf_counter()
        publisher.publish(con.cursor())
        snapshot_s = time.perf_counter() - started
        snapshot_mb = publisher.path.stat().st_size / 2**20
        publisher.remove()
        con.close()
        size_mb = path.stat().st_size / 2**20
    print(
        json.dumps(
            {
                "bench": "event_log",
                "events": total,
                "events_per_s": round(total / append_s),
                "cpu_us_per_event": round(append_cpu_s / total * 1e6, 1),
                "replay_ms": round(replay_ms, 1),
                "recipe_ms_max": max(recipes.values()),
                "recipe_ms": recipes,
                "verify_s": round(verify_s, 2),
                "verify_problems": verify_problems,
                "db_mb_per_1k_samples": round(size_mb / args.samples * 1000, 2),
                "snapshot_s": round(snapshot_s, 2),
                "snapshot_mb": round(snapshot_mb, 1),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
