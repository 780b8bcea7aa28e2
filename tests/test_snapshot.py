"""Reading while another process writes: DuckDB locks the file, so readers use the writer's snapshot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.store import snapshot as snapshot_module
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.snapshot import SnapshotPublisher, snapshot_path
from teacherforge.store.views import create_views

runner = CliRunner()

# A second process that holds the writer lock: it writes three events, flushes, writes a fourth, says
# "ready", and keeps the file until told to close. With "snap" its writer answers readers' requests.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from teacherforge.store.database import connect
    from teacherforge.store.events import EventLog
    from teacherforge.store.snapshot import SnapshotPublisher
    from teacherforge.store.views import create_views

    db = Path(sys.argv[1])
    con = connect(db)
    create_views(con)
    log = EventLog(con, snapshot=SnapshotPublisher(db) if sys.argv[2] == "snap" else None)
    log.append("run-live", "run.started", {"n": 1, "config_hash": "h"})
    log.append("run-live", "sample.planned", {"tier": "direct"}, sample_id="run-live-0")
    log.append("run-live", "turn.added", {"turn_index": 0, "role": "user", "content": "hi"},
               sample_id="run-live-0")
    log.flush()
    log.append("run-live", "turn.added", {"turn_index": 1, "role": "assistant", "content": "later"},
               sample_id="run-live-0")  # after the flush: a reader's request still gets it
    print("ready", flush=True)
    sys.stdin.readline()
    log.close()
    con.close()
    print("closed", flush=True)
    """
)


@pytest.fixture
def holder(db_path, tmp_path):
    """Start the holder process; yields a function that starts it in a mode and returns it."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    procs = []

    def start(mode: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db_path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sql(db_path, query, *args):
    return runner.invoke(app, ["sql", query, "--db", str(db_path), *args])


def test_sql_reads_the_snapshot_while_another_process_holds_the_lock(db_path, holder):
    proc = holder("snap")
    with pytest.raises(duckdb.IOException, match="lock"):  # the premise: DuckDB refuses any other opener
        duckdb.connect(str(db_path), read_only=True)

    result = sql(db_path, "select count(*) as n from events where run_id = 'run-live'", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 4}]  # as of the request, not of some earlier flush
    notice = result.stderr.strip()
    assert notice.startswith(f"run in progress by PID {proc.pid}; reading snapshot from ")
    assert notice.count("\n") == 0

    runs = runner.invoke(app, ["runs", "--db", str(db_path), "--format", "json"])
    assert [r["run_id"] for r in json.loads(runs.stdout)] == ["run-live"]
    replay = runner.invoke(app, ["replay", "run-live-0", "--db", str(db_path), "--format", "json"])
    assert [t["content"] for t in json.loads(replay.stdout)["conversation"]] == ["hi", "later"]
    chunks = sql(db_path, "select count(*) as n from chunks", "--format", "json")
    assert json.loads(chunks.stdout)[0]["n"] > 0  # the corpus came along (without embeddings)

    write = sql(db_path, "delete from events")
    assert write.exit_code == 2 and "read-only" in write.stderr

    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "closed"
    assert not snapshot_path(db_path).exists()  # the writer cleans up; readers use the file again
    after = sql(db_path, "select count(*) as n from events where run_id = 'run-live'", "--format", "json")
    assert json.loads(after.stdout) == [{"n": 4}] and "snapshot" not in after.stderr


def test_without_a_snapshot_the_error_names_the_holder_pid(db_path, holder):
    proc = holder("nosnap")
    result = sql(db_path, "select 1")
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and result.stderr.strip().count("\n") == 0
    assert f"locked by PID {proc.pid}" in result.stderr and "no snapshot" in result.stderr


def test_a_snapshot_left_by_another_process_is_not_read(db_path, holder):
    con = connect(db_path)
    create_views(con)
    SnapshotPublisher(db_path).publish(con.cursor())  # signed with this PID, never removed: a dead writer's
    con.close()
    assert snapshot_path(db_path).exists()
    proc = holder("nosnap")
    result = sql(db_path, "select 1")
    assert result.exit_code == 2
    assert f"locked by PID {proc.pid}" in result.stderr and "not the holder" in result.stderr


def test_snapshot_is_a_complete_database_with_views_published_atomically(db_path):
    con = connect(db_path)
    create_views(con)
    log = EventLog(con, snapshot=SnapshotPublisher(db_path))
    log.append("run-a", "run.started", {"n": 1, "config_hash": "h"})
    log.append("run-a", "sample.planned", {"tier": "edge"}, sample_id="run-a-0")
    log.flush()
    asked = snapshot_module.request_snapshot(db_path)
    path = snapshot_path(db_path)
    snapshot_info(db_path, answering=asked)
    leftovers = [p.name for p in path.parent.iterdir() if ".tmp-" in p.name or p.name.endswith(".wal")]
    assert leftovers == [] or leftovers == [db_path.name + ".wal"]  # only the live file's own WAL
    snap = duckdb.connect(str(path), read_only=True)
    try:
        assert snap.execute("select sample_id, tier from samples").fetchall() == [("run-a-0", "edge")]
        assert (
            snap.execute("select count(*) from events").fetchall()[0][0]
            == con.execute("select count(*) from events").fetchall()[0][0]
        )
        assert "embedding" not in [r[0] for r in snap.execute("describe chunks").fetchall()]
    finally:
        snap.close()
    log.close()
    assert not path.exists()
    con.close()


def snapshot_info(db_path, answering: int, timeout_s: float = 30.0) -> dict:
    """Wait for the snapshot that answers the request stamped ``answering``; its snapshot_info row."""
    path, deadline = snapshot_path(db_path), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            snap = duckdb.connect(str(path), read_only=True)
        except duckdb.Error:
            snap = None
        if snap is not None:
            try:
                cur = snap.execute("select * from snapshot_info")
                info = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
            finally:
                snap.close()
            if info["request_ns"] >= answering:
                return info
        time.sleep(0.05)
    raise AssertionError(f"no snapshot answered the request within {timeout_s} s")


# A writer that keeps the file and adds events when told ("add N"), like a run between its samples.
LIVE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from teacherforge.store.database import connect
    from teacherforge.store.events import EventLog
    from teacherforge.store.snapshot import SnapshotPublisher
    from teacherforge.store.views import create_views

    db = Path(sys.argv[1])
    con = connect(db)
    create_views(con)
    log = EventLog(con, snapshot=SnapshotPublisher(db))

    def add(n):
        for i in range(n):
            log.append("run-live", "llm.call", {"agent": "teacher", "i": i})
        log.flush()

    log.append("run-live", "run.started", {"n": 1, "config_hash": "h"})
    add(2)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.startswith("add "):
            break
        add(int(line.split()[1]))
        print("added", flush=True)
    log.close()
    con.close()
    print("closed", flush=True)
    """
)


def test_a_writer_publishes_only_when_a_reader_asks_and_each_answer_is_fresh(db_path, tmp_path, monkeypatch):
    monkeypatch.setattr(
        snapshot_module, "REQUEST_WAIT_S", 30.0, raising=False
    )  # a loaded machine: be patient
    script = tmp_path / "live.py"
    script.write_text(LIVE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    request_file = db_path.with_name(db_path.name + ".snapshot.request")

    def live_events() -> tuple[int, str]:
        result = sql(
            db_path, "select count(*) as n from events where run_id = 'run-live'", "--format", "json"
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)[0]["n"], result.stderr.strip()

    def tell(command: str, answer: str) -> None:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == answer, proc.stderr.read()

    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(1.5)  # its steady state: events written and flushed, nobody reading
        assert not snapshot_path(db_path).exists()
        count, notice = live_events()
        assert count == 3 and notice.startswith(f"run in progress by PID {proc.pid}; reading snapshot from ")
        assert " old" not in notice  # an answer to this request, not a fallback
        published = snapshot_path(db_path).stat().st_mtime_ns
        tell("add 4", "added")
        time.sleep(1.0)
        assert snapshot_path(db_path).stat().st_mtime_ns == published  # answered once, not republished
        assert live_events()[0] == 7  # the next reader asks again and sees the 4 new events
        tell("close", "closed")
        assert not snapshot_path(db_path).exists() and not request_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_request_is_answered_after_the_batch_written_after_it(db_path):
    con = connect(db_path)
    create_views(con)
    log = EventLog(con, snapshot=SnapshotPublisher(db_path, poll_s=60.0))  # idle: it looks only after batches
    try:
        before = con.execute("select count(*) from events").fetchall()[0][0]  # the ingest's
        log.append("run-a", "run.started", {"n": 1, "config_hash": "h"})
        log.flush()
        time.sleep(0.3)  # the writer ends that batch's round and waits, idle, for the next one
        asked = snapshot_module.request_snapshot(db_path)
        assert asked is not None
        time.sleep(0.3)
        assert not snapshot_path(db_path).exists()  # an idle writer looks every poll_s (60 s here)
        log.append("run-a", "sample.planned", {"tier": "edge"}, sample_id="run-a-0")  # after the request
        log.flush()
        info = snapshot_info(db_path, answering=asked)
        assert info["events"] == before + 2 and info["request_ns"] >= asked
    finally:
        log.close()
        con.close()


# A writer whose log answers no request, but which published one snapshot earlier.
STALE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from teacherforge.store.database import connect
    from teacherforge.store.events import EventLog
    from teacherforge.store.snapshot import SnapshotPublisher
    from teacherforge.store.views import create_views

    db = Path(sys.argv[1])
    con = connect(db)
    create_views(con)
    log = EventLog(con)
    log.append("run-live", "run.started", {"n": 1, "config_hash": "h"})
    log.flush()
    SnapshotPublisher(db).publish(con.cursor())
    log.append("run-live", "sample.planned", {"tier": "direct"}, sample_id="run-live-0")
    log.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def test_an_unanswered_request_falls_back_to_the_snapshot_there_and_says_its_age(db_path, tmp_path):
    script = tmp_path / "stale.py"
    script.write_text(STALE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        con, notice = snapshot_module.open_for_reading(db_path, wait_s=0.5)
        try:
            assert 0.5 <= time.monotonic() - started < 5  # it asked, waited, then took what was there
            assert con.execute("select count(*) from events where run_id = 'run-live'").fetchall() == [(1,)]
        finally:
            con.close()
        assert notice.startswith(f"run in progress by PID {proc.pid}; reading snapshot from ")
        assert re.search(r"\(\d+ events, \d+ s old\)$", notice), notice
    finally:
        proc.kill()
        proc.wait()


# A writer whose first copy is slow (a big log): the temp file is there, the snapshot comes later.
SLOW_FIRST_COPY = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from teacherforge.store.database import connect
    from teacherforge.store.events import EventLog
    from teacherforge.store.snapshot import SnapshotPublisher
    from teacherforge.store.views import create_views

    db = Path(sys.argv[1])
    con = connect(db)
    create_views(con)
    log = EventLog(con)
    log.append("run-live", "run.started", {"n": 1, "config_hash": "h"})
    log.flush()
    publisher = SnapshotPublisher(db)
    publisher.path.with_name(f"{publisher.path.name}.tmp-{os.getpid()}").write_text("")
    print("ready", flush=True)
    time.sleep(1.5)
    publisher.publish(con.cursor())
    sys.stdin.readline()
    """
)


def test_with_nothing_to_fall_back_on_a_reader_waits_for_the_copy_under_way(db_path, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_FIRST_COPY)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        con, notice = snapshot_module.open_for_reading(db_path, wait_s=0.3)
        try:
            assert time.monotonic() - started >= 0.5  # beyond its own wait: the copy was on its way
            assert con.execute("select count(*) from events where run_id = 'run-live'").fetchall() == [(1,)]
        finally:
            con.close()
        assert notice.startswith(f"run in progress by PID {proc.pid}; reading snapshot from ")
    finally:
        proc.kill()
        proc.wait()
