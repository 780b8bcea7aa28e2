"""Reading while another process writes: DuckDB locks the file, so readers use the writer's snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import pytest
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.snapshot import SnapshotPublisher, snapshot_path
from teacherforge.store.views import create_views

runner = CliRunner()

# A second process that holds the writer lock: it writes three events, flushes (which publishes
# the snapshot when asked to), says "ready", and keeps the file until told to close.
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
    log = EventLog(con, snapshot=SnapshotPublisher(db, interval_s=3600) if sys.argv[2] == "snap" else None)
    log.append("run-live", "run.started", {"n": 1, "config_hash": "h"})
    log.append("run-live", "sample.planned", {"tier": "direct"}, sample_id="run-live-0")
    log.append("run-live", "turn.added", {"turn_index": 0, "role": "user", "content": "hi"},
               sample_id="run-live-0")
    log.flush()
    log.append("run-live", "turn.added", {"turn_index": 1, "role": "assistant", "content": "later"},
               sample_id="run-live-0")  # after the flush: in the file, not yet in the snapshot
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
    assert json.loads(result.stdout) == [{"n": 3}]  # as of the flush, consistent
    notice = result.stderr.strip()
    assert notice.startswith(f"run in progress by PID {proc.pid}; reading snapshot from ")
    assert notice.count("\n") == 0

    runs = runner.invoke(app, ["runs", "--db", str(db_path), "--format", "json"])
    assert [r["run_id"] for r in json.loads(runs.stdout)] == ["run-live"]
    replay = runner.invoke(app, ["replay", "run-live-0", "--db", str(db_path), "--format", "json"])
    assert json.loads(replay.stdout)["conversation"] == [{"role": "user", "content": "hi"}]
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
    path = snapshot_path(db_path)
    leftovers = [p.name for p in path.parent.iterdir() if ".tmp-" in p.name or p.name.endswith(".wal")]
    assert leftovers == [] or leftovers == [db_path.name + ".wal"]  # only the live file's own WAL
    snap = duckdb.connect(str(path), read_only=True)
    try:
        assert snap.execute("select sample_id, tier from samples").fetchall() == [("run-a-0", "edge")]
        assert snap.execute("select count(*) from events").fetchall()[0][0] == con.execute(
            "select count(*) from events"
        ).fetchall()[0][0]
        assert "embedding" not in [r[0] for r in snap.execute("describe chunks").fetchall()]
    finally:
        snap.close()
    log.close()
    assert not path.exists()
    con.close()
