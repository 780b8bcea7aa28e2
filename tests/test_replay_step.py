"""replay: revisions as a diff of the rewritten turns, and --step through the events one at a time."""

from __future__ import annotations

import json

from conftest import query, run_generation
from scripted import GoodModel, failing_critique
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()


def replay(db_path, sample_id, *args, input=None):
    return runner.invoke(app, ["replay", sample_id, "--db", str(db_path), *args], input=input)


def revised_sample(db_path) -> str:
    model = GoodModel({"Critique": lambda body, n: failing_critique(1) if n == 0 else None})
    with StubServer(model) as stub:
        assert run_generation(db_path, stub.url, n=1, concurrency=1).accepted == 1
    return query(db_path, "SELECT sample_id FROM samples")[0][0]


def test_replay_shows_the_critics_problems_and_a_diff_of_the_refined_turn(db_path):
    sample_id = revised_sample(db_path)
    original = query(
        db_path,
        "SELECT payload->>'content' FROM events WHERE type = 'turn.added' AND sample_id = ? "
        "AND CAST(payload->>'turn_index' AS INTEGER) = 1",
        sample_id,
    )[0][0]
    revised = query(db_path, "SELECT content FROM turns WHERE turn_index = 1")[0][0]
    assert revised != original

    data = json.loads(replay(db_path, sample_id, "--format", "json").stdout)
    [revision] = data["revisions"]
    assert revision["revision"] == 1 and revision["failed_dimensions"] == ["groundedness"]
    assert revision["problems"] == [{"turn_index": 1, "problem": "states a fee not in the sources"}]
    [change] = revision["changes"]
    assert (change["turn_index"], change["before"], change["after"]) == (1, original, revised)
    removed = [line[1:] for line in change["diff"] if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in change["diff"] if line.startswith("+") and not line.startswith("+++")]
    assert removed and added and added[0].startswith("Revised answer:")

    text = replay(db_path, sample_id).stdout
    assert "revision 1 (seq" in text and "what the refiner changed" in text
    assert "critic: below threshold on groundedness" in text
    assert "problem (turn 1): states a fee not in the sources" in text
    assert "--- turn 1 before" in text and "+++ turn 1 after" in text
    assert f"+{added[0]}"[:60] in text.replace("\n", "")  # the added sentence, however it wraps


def test_step_pauses_after_each_event_and_q_quits(db_path):
    with StubServer(GoodModel()) as stub:
        run_generation(db_path, stub.url, n=1)
    sample_id = query(db_path, "SELECT sample_id FROM samples")[0][0]
    total = query(db_path, "SELECT count(*) FROM events WHERE sample_id = ?", sample_id)[0][0]

    result = replay(db_path, sample_id, "--step", input="\n\nq\n")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"(1/{total}) Enter = next, q = quit" in text and f"(3/{total})" in text
    assert f"(4/{total})" not in text
    assert text.count("conversation after seq") == 3
    assert f"stopped at seq 2 (3 of {total} events)" in text and "status:" not in text
    assert f"[1/{total}] seq 0 " in text and "sample.planned" in text  # each step names its event


def test_step_to_the_end_and_end_of_input(db_path):
    with StubServer(GoodModel()) as stub:
        run_generation(db_path, stub.url, n=1)
    sample_id = query(db_path, "SELECT sample_id FROM samples")[0][0]
    total = query(db_path, "SELECT count(*) FROM events WHERE sample_id = ?", sample_id)[0][0]

    full = replay(db_path, sample_id, "--step", input="\n" * total)
    assert full.stdout.count("conversation after seq") == total
    assert "status: accepted" in full.stdout and "stopped at" not in full.stdout

    eof = replay(db_path, sample_id, "--step", input="")  # no terminal: stop after the first event
    assert eof.exit_code == 0 and f"stopped at seq 0 (1 of {total} events)" in eof.stdout

    both = replay(db_path, sample_id, "--step", "--format", "json")
    assert both.exit_code == 2 and "--step" in both.stderr
