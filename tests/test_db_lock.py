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
    result = CliRunner().invoke(
        app, ["run", "--n", "2", "--db", str(db_path), "--llm-url", "http://127.0.0.1:9"]
    )
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


# A writer that exits normally, or on an uncaught exception before it closed anything.
WRITE_AND_EXIT = """
import sys
from pathlib import Path
db, how = Path(sys.argv[1]), sys.argv[2]
from teacherforge.cli.common import open_writer
con, log = open_writer(db)
log.append("run-x", "run.started", {"n": 1})
if how == "raise":
    raise RuntimeError("boom")
log.close()
con.close()
"""


@pytest.mark.parametrize("how", ["return", "raise"])
def test_no_lock_file_is_left_after_the_writer_exits(db_path, how):
    done = subprocess.run(
        [sys.executable, "-c", WRITE_AND_EXIT, str(db_path), how], capture_output=True, text=True, timeout=120
    )
    if how == "raise":  # the exit code may be DuckDB's abort: its writer thread is still inside it
        assert done.returncode != 0 and "RuntimeError: boom" in done.stderr
    else:
        assert done.returncode == 0 and done.stderr == "", done.stderr
    left = sorted(p.name for p in db_path.parent.iterdir() if p.name.startswith(db_path.name + "."))
    assert not db_lock.lock_path(db_path).exists() and [n for n in left if n != db_path.name + ".wal"] == []


# Writers that wait (--wait) on one database. Locking sleeps first: it widens the window in which a
# waiter has opened the lock file that the leaving holder is about to unlink (the classic race).
CONTEND = """
import fcntl, os, sys, time
from pathlib import Path
from teacherforge.store import db_lock
db, journal = Path(sys.argv[1]), sys.argv[2]
lockf = fcntl.lockf
def slow_lockf(fd, op, *args):
    time.sleep(0.02)
    return lockf(fd, op, *args)
fcntl.lockf = slow_lockf
db_lock.POLL_S = 0.005
def note(mark):
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{mark} {os.getpid()}\\n".encode())
    os.close(fd)
print("ready", flush=True)
sys.stdin.readline()
db_lock.acquire(db, wait=True)
note("+")
time.sleep(0.05)
note("-")
"""


def test_waiting_writers_never_hold_the_lock_together(tmp_path):
    db, journal = tmp_path / "x.duckdb", tmp_path / "journal"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTEND, str(db), str(journal)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == b"ready"
        for proc in procs:  # all at once
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    inside, most = 0, 0
    lines = journal.read_text().splitlines()
    for line in lines:
        inside += 1 if line.startswith("+") else -1
        most = max(most, inside)
    assert most == 1 and len(lines) == 2 * len(procs), lines
    assert not db_lock.lock_path(db).exists()
