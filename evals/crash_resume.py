"""Crash safety, measured: kill -9 a real `teacherforge run` at random moments and resume each time.

Against the stub server (a subprocess, scripted 'good model' replies with a small latency), this
script starts ``teacherforge run``, SIGKILLs it after a random delay, checks the log with the same
checks as ``teacherforge verify``, and continues with ``run --resume`` (or starts the run again if
the kill came before ``run.started`` was written), until it has killed the run ``--kills`` times; the
last resume runs to the end. It then checks that the target count is met exactly, that no sample id
appears twice, and that every sample ever seen accepted is still accepted (and accepted once).

    python -m evals.crash_resume --kills 20 --n 80          # the figures in docs/reliability.md
    python -m evals.crash_resume --kills 3 --n 12            # the CI version (tests/test_crash_resume.py)

Prints one JSON summary on stdout; exit code 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from teacherforge.evals.paths import checkout_root

ROOT = checkout_root()
TESTS = ROOT / "tests"
EXAMPLES = ROOT / "examples" / "university"
CONFIG = """\
structured_output: json_schema
plan:
  min_user_turns: 1
  max_user_turns: 2
  hard_negative_rate: 0.1
  multi_source_rate: 0.2
"""


def serve_stub(latency_s: float) -> None:
    """The stub server process: scripted good replies, each after ``latency_s``, until killed."""
    sys.path.insert(0, str(TESTS))
    from scripted import GoodModel
    from stub_server import StubServer

    model = GoodModel()

    def slow(body: dict):
        time.sleep(latency_s)
        return model(body)

    with StubServer(slow) as stub:
        print(stub.url, flush=True)
        threading.Event().wait()


def _teacherforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "teacherforge.cli.app", *args]


def _state(db: Path, run_id: str) -> dict:
    """Read the database between kills (no writer is alive): verify findings and sample states."""
    from teacherforge.store.database import connect
    from teacherforge.store.verify import verify

    con = connect(db, read_only=True)
    try:
        started = con.execute(
            "SELECT count(*) FROM events WHERE run_id = ? AND type = 'run.started'", [run_id]
        ).fetchall()[0][0]
        rows = con.execute("SELECT sample_id, status FROM samples WHERE run_id = ?", [run_id]).fetchall()
        events = con.execute("SELECT count(*) FROM events WHERE run_id = ?", [run_id]).fetchall()[0][0]
        running = con.execute(
            "SELECT s.sample_id, max(e.seq) FROM samples s JOIN events e USING (sample_id) "
            "WHERE s.run_id = ? AND s.status = 'running' GROUP BY 1",
            [run_id],
        ).fetchall()
        accepted_twice = con.execute(
            "SELECT sample_id FROM events WHERE run_id = ? AND type = 'sample.accepted' "
            "GROUP BY 1 HAVING count(*) > 1",
            [run_id],
        ).fetchall()
        return {
            "started": bool(started),
            "problems": verify(con),
            "samples": rows,
            "accepted_twice": [r[0] for r in accepted_twice],
            "events": events,
            "running": dict(running),
        }
    finally:
        con.close()


def crash_resume(
    kills: int, n: int, seed: int, latency_s: float, workdir: Path, concurrency: int = 4
) -> dict:
    rng = random.Random(seed)
    db = workdir / "forge.duckdb"
    config = workdir / "run.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        _teacherforge("ingest", str(EXAMPLES), "--db", str(db)), check=True, capture_output=True, env=env
    )
    stub = subprocess.Popen(
        [sys.executable, "-m", "evals.crash_resume", "--serve-stub", "--latency", str(latency_s)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = stub.stdout.readline().strip()
        run_id = f"run-crash-{seed}-{os.getpid()}"
        fresh = ["--n", str(n), "--seed", str(seed), "--concurrency", str(concurrency)]
        fresh += ["--config", str(config)]
        common = ["--db", str(db), "--llm-url", url, "--model", "stub-model"]
        seen_accepted: set[str] = set()
        problems_after_kill: list[str] = []
        kill_log: list[dict] = []
        killed, attempts, finished, events, running = 0, 0, 0, 0, {}
        startup_s, per_sample_s = 3.0, 0.3  # first guesses, corrected from what each kill finds
        while True:
            state = _state(db, run_id) if db.exists() and attempts else {"started": False}
            args = ["run", "--resume", run_id] if state["started"] else ["run", "--run-id", run_id, *fresh]
            with open(workdir / "stderr.log", "a") as stderr:
                proc = subprocess.Popen(
                    _teacherforge(*args, *common),
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=env,
                    cwd=workdir,
                )
            attempts += 1
            if killed >= kills:  # the last resume runs to the end
                final_rc = proc.wait(timeout=1800)
                break
            # A kill moment: some during start-up (imports, opening the file, loading the index), the
            # rest spread over generation so that the remaining samples last for the remaining kills.
            if rng.random() < 0.15:
                delay = rng.uniform(0.1, startup_s)
            else:
                share = (n - finished) * per_sample_s / (kills - killed + 1)
                delay = startup_s + rng.uniform(0.0, 2 * share)
            try:
                final_rc = proc.wait(timeout=delay)
                kill_log.append({"delay_s": round(delay, 2), "killed": False, "rc": final_rc})
                if final_rc == 0:
                    break  # finished before the kill: nothing left to kill
                continue
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed += 1
            state = _state(db, run_id)
            done = sum(1 for _, status in state["samples"] if status in ("accepted", "rejected"))
            wrote = state["events"] - events  # did this process get as far as generating?
            cut = [sid for sid, seq in state["running"].items() if seq > running.get(sid, -1)]
            if not state["started"] or not wrote:
                startup_s = max(startup_s, 1.1 * delay)
            elif done > finished and delay > startup_s:
                per_sample_s = 0.5 * per_sample_s + 0.5 * (delay - startup_s) / (done - finished)
            finished, events, running = done, state["events"], state["running"]
            accepted = {sid for sid, status in state["samples"] if status == "accepted"}
            seen_accepted |= accepted
            problems_after_kill += [f"after kill {killed}: {p}" for p in state["problems"]]
            kill_log.append(
                {
                    "delay_s": round(delay, 2),
                    "killed": True,
                    "run_started": state["started"],
                    "samples": len(state["samples"]),
                    "accepted": len(accepted),
                    "events_written": wrote,
                    "samples_cut_mid_stream": len(cut),
                }
            )
        final = _state(db, run_id)
    finally:
        stub.kill()
        stub.wait()
    ids = [sid for sid, _ in final["samples"]]
    status = [s for _, s in final["samples"]]
    final_accepted = {sid for sid, s in final["samples"] if s == "accepted"}
    lost = sorted(seen_accepted - final_accepted)
    checks = {
        "kills_reached": killed >= kills,
        "verify_clean_after_every_kill": not problems_after_kill,
        "verify_clean_at_end": not final["problems"],
        "exact_target_count": len(ids) == n,
        "all_samples_finished": all(s in ("accepted", "rejected") for s in status),
        "no_duplicate_sample_ids": len(ids) == len(set(ids)),
        "no_lost_accepted_sample": not lost,
        "no_sample_accepted_twice": not final["accepted_twice"],
        "final_run_exit_0": final_rc == 0,
    }
    return {
        "kills_requested": kills,
        "kills": killed,
        "kills_before_run_started": sum(1 for k in kill_log if k.get("killed") and not k["run_started"]),
        "kills_during_start_up": sum(1 for k in kill_log if k.get("killed") and not k["events_written"]),
        "kills_during_generation": sum(1 for k in kill_log if k.get("events_written")),
        "samples_cut_mid_stream": sum(k.get("samples_cut_mid_stream", 0) for k in kill_log),
        "processes": attempts,
        "target": n,
        "samples": len(ids),
        "distinct_sample_ids": len(set(ids)),
        "accepted": status.count("accepted"),
        "rejected": status.count("rejected"),
        "failed": status.count("failed"),
        "accepted_seen_during_kills": len(seen_accepted),
        "lost_accepted": lost,
        "duplicated": len(ids) - len(set(ids)),
        "problems": problems_after_kill + final["problems"],
        "checks": checks,
        "passed": all(checks.values()),
        "kill_log": kill_log,
        "run_id": run_id,
        "stub_latency_s": latency_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05, help="stub seconds per reply")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the database here")
    parser.add_argument("--serve-stub", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_stub:
        serve_stub(args.latency)
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tf-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        summary = crash_resume(args.kills, args.n, args.seed, args.latency, workdir, args.concurrency)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary), flush=True)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
