"""Reviewing beside a running generation: while another process holds the writer lock the UI reads its
snapshot, queues decisions durably and shows them pending; they land once, and nothing is lost."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import query
from ui_support import make_run, sample_ids, served

from teacherforge.cli.common import open_writer
from teacherforge.store.review_queue import enqueue, new_decision, pending, queue_path

# A writer like `run`: the lock, the file, a published snapshot; it holds them until told to close.
HOLDER = """
import sys
from pathlib import Path
sys.argv = ["teacherforge", "run", "--n", "5"]
from teacherforge.cli.common import open_writer
con, log = open_writer(Path({db!r}))
log.append("ingest-holder", "ingest.started", {{"paths": []}})
log.flush()  # publishes the snapshot readers use
print("ready", flush=True)
sys.stdin.readline()
log.close()
con.close()
print("closed", flush=True)
"""


@pytest.fixture(scope="module")
def base_db(ingested_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("ui-live") / "forge.duckdb"
    shutil.copy(ingested_template, path)
    make_run(path)
    return path


@pytest.fixture
def db(base_db, tmp_path):
    path = tmp_path / "forge.duckdb"
    shutil.copy(base_db, path)
    return path


def wait_for(check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_decisions_made_during_a_run_are_queued_then_land_once(db: Path):
    accepted = sample_ids(db, "accepted")
    with served(db) as client:
        client.get("/api/samples")  # the index is built before the writer arrives
        holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(db=str(db))], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "ready"
            listed = client.get("/api/samples")
            assert listed.status_code == 200 and listed.json()["total"] == 6  # read from the snapshot
            assert "reading snapshot" in client.get("/samples").text
            first = client.post(f"/api/samples/{accepted[0]}/review", json={"action": "approve"})
            second = client.post(
                f"/api/samples/{accepted[1]}/review", json={"action": "reject", "reason": "dull"}
            )
            change = {"action": "edit", "turn": 1, "content": "Edited while the run wrote."}
            edit = client.post(f"/api/samples/{accepted[0]}/review", json=change)
            assert [r.status_code for r in (first, second, edit)] == [202, 202, 202]
            assert first.json()["state"] == "pending" and "PID" in first.json()["blocked_by"]
            queued = client.get("/api/reviews/pending").json()
            assert len(queued["pending"]) == 3 and queued["writer_pid"] == holder.pid
            assert len(pending(db)) == 3  # on disk, fsync'ed: a crash of the UI now loses nothing
            page = client.get(f"/samples/{accepted[0]}").text
            assert "Queued, not yet in the log" in page and "3 review decision(s) queued" in page
            states = {s["sample_id"]: s["review"] for s in client.get("/api/samples").json()["samples"]}
            assert states[accepted[0]] == states[accepted[1]] == "pending"
            time.sleep(1.0)  # the lander tries every 0.2 s meanwhile and must leave them queued
            assert len(pending(db)) == 3
        finally:
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "closed"
            holder.wait(timeout=60)
        wait_for(lambda: client.get("/api/reviews/pending").json()["pending"] == [])
        shown = client.get(f"/api/samples/{accepted[0]}").json()
        assert shown["review"]["decision"] == "approved"
        assert shown["turns"][1]["content"] == "Edited while the run wrote."
    assert not queue_path(db).exists()
    rows = query(db, "SELECT sample_id, action FROM reviews ORDER BY sample_id, action")
    assert rows == sorted([(accepted[0], "approved"), (accepted[0], "edited"), (accepted[1], "rejected")])


def test_a_writer_opening_the_database_lands_the_queue_and_never_twice(db: Path):
    target = sample_ids(db, "rejected")[0]
    run_id = target.rsplit("-", 1)[0]
    decision = new_decision("tag", run_id, target, "script", tag="later")
    enqueue(db, decision)
    enqueue(db, decision)  # the same decision twice (a retry): it lands once
    con, log = open_writer(db)  # what `run` does first
    log.close()
    con.close()
    assert pending(db) == [] and not queue_path(db).exists()
    assert query(db, "SELECT sample_id, tag, reviewer FROM reviews") == [(target, "later", "script")]
    enqueue(db, decision)  # already in the log: draining again adds nothing
    con, log = open_writer(db)
    log.close()
    con.close()
    assert query(db, "SELECT count(*) FROM reviews")[0][0] == 1


def test_a_torn_last_line_does_not_swallow_the_next_decision(db: Path):
    target = sample_ids(db, "accepted")[0]
    run_id = target.rsplit("-", 1)[0]
    queue_path(db).write_text('{"type": "review.appro')  # a crash in the middle of a write
    enqueue(db, new_decision("approve", run_id, target, "script"))
    assert [d["type"] for d in pending(db)] == ["review.approved"]
