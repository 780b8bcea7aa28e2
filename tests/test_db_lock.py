"""Two processes on one database: the second writer is told who holds it (a teacherforge command from the
lock file, or any other process from DuckDB's own lock), or waits with --wait; kill -9 frees the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.store import db_lock

HOLD_TEACHERFORGE = """
import sys, time
from pathlib import Path
db, seconds = sys.argv[1], float(sys.argv[2])
sys.argv = ["teacherforge", "run", "--n", "5", "--db", db]  # what the lock file records as the command
from teacherforge.cli.common import open_writer
open_writer(Path(db))
print("ready", flush=True)
time.sleep(seconds)
"""
HOLD_DUCKDB = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(99)"
)


def hold(db, seconds: float = 120.0, duckdb_only: bool = False) -> subprocess.Popen:
    script = HOLD_DUCKDB if duckdb_only else HOLD_TEACHERFORGE
    args = [sys.executable, "-c", script, str(db), str(seconds)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def holder(db_path):
    procs: list[subprocess.Popen] = []

    def start(**kwargs) -> subprocess.Popen:
        procs.append(hold(db_path, **kwargs))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_writer_gets_one_line_naming_the_holder(db_path, holder):
    proc = holder()
    result = CliRunner().invoke(app, ["run", "--n", "2", "--db", str(db_path), "--llm-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.count("\n") == 0 and f"pid {proc.pid}" in line and "teacherforge run --n 5" in line
    assert "--wait" in line


def test_a_holder_that_is_not_teacherforge_is_named_from_duckdbs_lock(db_path, holder):
    proc = holder(duckdb_only=True)
    with pytest.raises(db_lock.DatabaseLocked) as info:
        db_lock.connect_writer(db_path)
    assert f"pid {proc.pid}" in str(info.value) and "--wait" in str(info.value)


def test_wait_blocks_until_the_holder_is_gone(db_path, holder):
    proc = holder(seconds=1.5)
    said: list[str] = []
    con = db_lock.connect_writer(db_path, wait=True, notify=said.append)
    try:
        assert proc.poll() is not None  # we only got in after the holder left
        assert len(said) == 1 and f"waiting for pid {proc.pid}" in said[0]
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] > 0
    finally:
        con.close()


def test_kill_9_frees_the_lock_and_the_stale_file_blocks_no_one(db_path, holder):
    proc = holder()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert db_lock.lock_path(db_path).exists() and db_lock.holder(db_path)["pid"] == proc.pid
    db_lock.connect_writer(db_path).close()
    assert db_lock.holder(db_path)["pid"] == os.getpid()
