"""Ctrl-C on a real `teacherforge run` process: the first SIGINT stops taking samples and lets the ones in
flight finish (or abandons them after --grace), records run.interrupted and prints the resume command;
a second SIGINT exits at once. Either way the log verifies and a resume completes the run exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import query
from scripted import GoodModel
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.store.database import connect
from teacherforge.store.verify import verify

N = 30


def slow_model(latency_s: float):
    model = GoodModel()

    def reply(body: dict):
        time.sleep(latency_s)
        return model(body)

    return reply


def start_run(db, url, tmp_path, *extra: str) -> tuple[subprocess.Popen, object]:
    config = tmp_path / "run.yaml"
    config.write_text("structured_output: json_schema\nplan: {min_user_turns: 1, max_user_turns: 1}\n")
    stderr = open(tmp_path / "stderr.log", "w")  # noqa: SIM115 - closed by the caller via proc.wait
    args = ["run", "--n", str(N), "--db", str(db), "--llm-url", url, "--config", str(config), *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "teacherforge.cli.app", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, stderr


def wait_for(predicate, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def events(db, run_id: str, type_: str) -> list[dict]:
    rows = query(db, "SELECT payload FROM events WHERE run_id = ? AND type = ? ORDER BY ts", run_id, type_)
    return [json.loads(r[0]) for r in rows]


def assert_consistent_and_resumable(db, run_id: str) -> None:
    con = connect(db, read_only=True)
    try:
        assert verify(con) == []
    finally:
        con.close()
    with StubServer(GoodModel()) as stub:
        result = CliRunner().invoke(app, ["run", "--resume", run_id, "--db", str(db), "--llm-url", stub.url])
    assert result.exit_code == 0, result.output
    assert query(db, "SELECT count(*), count(DISTINCT sample_id) FROM samples WHERE run_id = ?", run_id) == [
        (N, N)
    ]
    assert query(db, "SELECT DISTINCT status FROM samples WHERE run_id = ?", run_id) == [("accepted",)]


def interrupt(db_path, tmp_path, latency_s: float, *extra: str, twice: bool = False):
    with StubServer(slow_model(latency_s)) as stub:
        proc, stderr = start_run(db_path, stub.url, tmp_path, "--concurrency", "2", *extra)
        run_id = proc.stdout.readline().strip()
        wait_for(lambda: len(stub.requests) >= 4, "the run to send requests")
        os.kill(proc.pid, signal.SIGINT)
        if twice:
            log = tmp_path / "stderr.log"
            wait_for(lambda: "stopping:" in log.read_text(), "the first Ctrl-C to be acknowledged")
            os.kill(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=300)
        stderr.close()
    return run_id, code, (tmp_path / "stderr.log").read_text()


def test_first_ctrl_c_lets_in_flight_samples_finish_and_prints_the_resume_command(db_path, tmp_path):
    run_id, code, err = interrupt(db_path, tmp_path, 0.2)
    assert code == 130
    last = err.strip().splitlines()[-1]
    assert f"continue with: teacherforge run --resume {run_id} --db {db_path}" in last
    (stopped,) = events(db_path, run_id, "run.interrupted")
    assert stopped["signal"] == "SIGINT" and stopped["abandoned"] == [] and stopped["not_started"] > 0
    assert events(db_path, run_id, "run.finished")[-1]["status"] == "interrupted"
    statuses = [s for (s,) in query(db_path, "SELECT status FROM samples WHERE run_id = ?", run_id)]
    assert 0 < len(statuses) < N and "running" not in statuses  # in-flight ones finished
    assert_consistent_and_resumable(db_path, run_id)


def test_after_the_grace_period_in_flight_samples_are_abandoned_cleanly(db_path, tmp_path):
    run_id, code, err = interrupt(db_path, tmp_path, 1.0, "--grace", "0")
    assert code == 130 and "abandoned" in err
    (stopped,) = events(db_path, run_id, "run.interrupted")
    running = {s for (s,) in query(db_path, "SELECT sample_id FROM samples WHERE status = 'running'")}
    assert stopped["abandoned"] and set(stopped["abandoned"]) == running
    assert_consistent_and_resumable(db_path, run_id)


def test_second_ctrl_c_exits_at_once_with_a_consistent_log(db_path, tmp_path):
    run_id, code, err = interrupt(db_path, tmp_path, 2.0, twice=True)
    assert code == 130 and f"--resume {run_id}" in err
    forced = events(db_path, run_id, "run.interrupted")
    assert forced and forced[-1]["forced"] is True
    assert_consistent_and_resumable(db_path, run_id)
