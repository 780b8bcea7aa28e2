"""Dedup: planted exact and near duplicates are dropped, near-misses (same template, other facts) kept,
and every drop is a dedup.dropped event that SQL and export can see."""

from __future__ import annotations

import json

import pytest
from conftest import query, run_generation
from scripted import GoodModel
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.dataset.dedup import find_duplicates, lsh_params
from teacherforge.store.database import connect
from teacherforge.store.dedup_events import dropped_sample_ids
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

runner = CliRunner()

FEE = (
    "Hi, what is the tuition fee for international students in the engineering programme, and when is it due?"
)
PLANTED = [
    FEE,  # 0 kept
    "What are the housing options for first-year students who arrive in January?",  # 1 kept
    "hi   WHAT is the tuition fee for international students in the engineering programme and when is it due",
    # 2: exact duplicate of 0 after normalisation
    FEE.replace("due?", "due, please?"),  # 3: near duplicate of 0
    FEE.replace("engineering", "nursing"),  # 4: near-miss: another programme
    FEE.replace("programme,", "programme for 2026,"),  # 5: near-miss: a year the original lacks
    FEE.replace("programme,", "programme for 2025,"),  # 6: near-miss of 5: another year
    "What are the housing options for first-year students who arrive in September?",  # 7: other month
    "Can I apply for the merit scholarship if my GPA is 3.2?",  # 8 kept
    "Can I apply for the merit scholarship if my GPA is 3.5?",  # 9: another number
    "What are the housing options for first-year students who arrive in January please?",  # 10 near 1
]


@pytest.mark.parametrize("method", ["minhash", "embedding"])
def test_planted_duplicates_dropped_and_near_misses_kept(method):
    drops = find_duplicates(PLANTED, method)
    assert [(d, k, how) for d, k, _, how in drops] == [(2, 0, "exact"), (3, 0, method), (10, 1, method)]
    assert all(sim >= (0.85 if method == "minhash" else 0.95) for _, _, sim, _ in drops)


def test_number_guard_is_what_keeps_numeric_near_misses_for_embeddings():
    """MiniLM puts "GPA 3.2" and "GPA 3.5" above 0.95 cosine: without the guard they would merge."""
    texts = [PLANTED[8], PLANTED[9]]
    assert find_duplicates(texts, "embedding", number_guard=False) != []
    assert find_duplicates(texts, "embedding") == []


def test_greedy_keeps_the_earliest_and_compares_only_with_kept_samples():
    base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    words = base.split()
    a = base
    b = " ".join(words[:-1] + ["x"])  # ~0.88 Jaccard with a
    c = " ".join(words[:-2] + ["x", "y"])  # close to b, farther from a
    drops = find_duplicates([a, b, c], "minhash", threshold=0.8)
    assert [(d, k) for d, k, _, _ in drops] == [(1, 0)]  # c is compared with a (kept), not b (dropped)


def test_lsh_banding_finds_pairs_at_the_threshold():
    for threshold in (0.5, 0.85, 0.95):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.99


def write_run(db, conversations: list[list[str]], statuses: list[str] | None = None) -> str:
    """A run in the real event schema: plan, turns (user/assistant alternating), terminal event."""
    con = connect(db)
    create_views(con)
    log = EventLog(con)
    run_id = "run-20260101-000000-test"
    log.append(run_id, "run.started", {"n": len(conversations), "config": {}, "config_hash": "x"})
    for i, turns in enumerate(conversations):
        sid = f"{run_id}-{i:05d}"
        plan = {"sample_id": sid, "index": i, "tier": "direct", "technique": "standard", "category": "fees"}
        log.append(run_id, "sample.planned", plan, sample_id=sid)
        for t, content in enumerate(turns):
            role = "user" if t % 2 == 0 else "assistant"
            log.append(
                run_id, "turn.added", {"turn_index": t, "role": role, "content": content}, sample_id=sid
            )
        status = (statuses or ["accepted"] * len(conversations))[i]
        log.append(run_id, f"sample.{status}", {"revisions": 0}, sample_id=sid)
    log.append(run_id, "run.finished", {"status": "finished"})
    log.close()
    con.close()
    return run_id


ANSWER = (
    "According to the fee schedule, tuition for international engineering students is 14,500 euros per "
    "year, paid in two instalments: the first by 15 August and the second by 15 January. Late payment "
    "adds a fee of 50 euros per week, and students can ask the bursar for a payment plan in writing."
)


def test_conversation_dedup_on_the_event_log(tmp_path):
    db = tmp_path / "d.duckdb"
    conversations = [
        ["How much is tuition?", ANSWER],  # 0 kept
        ["How much is tuition?", ANSWER.replace("in writing", "in person")],  # 1: near duplicate of 0
        ["How much is tuition?", ANSWER.replace("14,500", "16,200")],  # 2: other fee: kept
        ["What does tuition cost?", ANSWER],  # 3 rejected: never a candidate
        ["How much is tuition?", ANSWER],  # 4: exact duplicate of 0
    ]
    run_id = write_run(db, conversations, ["accepted", "accepted", "accepted", "rejected", "accepted"])
    result = runner.invoke(
        app, ["dedup", run_id, "--db", str(db), "--on", "conversation", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["candidates"], summary["exact"], summary["near"]) == (4, 1, 1)
    rows = query(db, "SELECT sample_id, kept_sample_id, method, field FROM dedup_drops ORDER BY sample_id")
    assert [(r[0][-1], r[1][-1], r[2], r[3]) for r in rows] == [
        ("1", "0", "minhash", "conversation"),
        ("4", "0", "exact", "conversation"),
    ]
    # a first-turn pass sees only the samples still in: 0 and 2 ask the same question, so 2 goes now
    result = runner.invoke(app, ["dedup", run_id, "--db", str(db), "--on", "first-turn"])
    assert result.exit_code == 0, result.output
    assert "dropped 1 of 2" in result.stdout
    con = connect(db, read_only=True)
    assert {s[-1] for s in dropped_sample_ids(con, run_id)} == {"1", "2", "4"}
    con.close()


def test_dedup_command_on_a_generated_run(db_path):
    """Every sample asks the same first question: all but the earliest are dropped, as events."""
    same = GoodModel(
        {"UserMessage": lambda body, n: {"message": "Hello, how much does a year of tuition cost?"}}
    )
    plan = {"min_user_turns": 1, "max_user_turns": 1, "hard_negative_rate": 0, "multi_source_rate": 0}
    with StubServer(same) as stub:
        summary = run_generation(db_path, stub.url, n=4, plan=plan)
    assert summary.accepted == 4
    run_id = summary.run_id
    dry = runner.invoke(app, ["dedup", run_id, "--db", str(db_path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would drop 3 of 4" in dry.stdout
    assert query(db_path, "SELECT count(*) FROM events WHERE type LIKE 'dedup.%'")[0][0] == 0

    result = runner.invoke(app, ["dedup", run_id, "--db", str(db_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    dedup_id = json.loads(result.stdout)["dedup_id"]
    rows = query(
        db_path,
        "SELECT sample_id, kept_sample_id, method, similarity, threshold, dedup_id FROM dedup_drops "
        "ORDER BY sample_id",
    )
    assert [r[0] for r in rows] == [f"{run_id}-{i:05d}" for i in (1, 2, 3)]
    assert {r[1] for r in rows} == {f"{run_id}-00000"}
    assert {(r[2], r[3], r[4], r[5]) for r in rows} == {("exact", 1.0, 1.0, dedup_id)}
    finished = query(db_path, "SELECT payload FROM events WHERE type = 'dedup.finished'")
    assert json.loads(finished[0][0])["dropped"] == 3
    # the drop sits in the dropped sample's own stream, after its terminal event: verify stays clean
    check = runner.invoke(app, ["verify", "--db", str(db_path)])
    assert check.exit_code == 0, check.output

    again = runner.invoke(app, ["dedup", run_id, "--db", str(db_path)])
    assert "dropped 0 of 1" in again.stdout  # idempotent: dropped samples are not candidates again
    con = connect(db_path, read_only=True)
    assert dropped_sample_ids(con, run_id) == {r[0] for r in rows}
    con.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dedup", "run-nope"], "no run 'run-nope'"),
        (["dedup", "RUN", "--on", "turns"], "--on must be first-turn or conversation"),
        (["dedup", "RUN", "--method", "simhash"], "--method must be minhash or embedding"),
        (["dedup", "RUN", "--threshold", "1.5"], "--threshold must be in (0, 1]"),
    ],
)
def test_bad_dedup_input_is_one_line(tmp_path, args, message):
    db = tmp_path / "d.duckdb"
    run_id = write_run(db, [["a question", "an answer"]])
    args = [run_id if a == "RUN" else a for a in args]
    result = runner.invoke(app, [*args, "--db", str(db)])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
