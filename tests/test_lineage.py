"""Resume, fork and verify: the event log as a cache and a debugger."""

from __future__ import annotations

import json

from conftest import query, run_generation
from scripted import GoodModel, failing_critique
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.store.database import connect

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_resume_restarts_unfinished_samples_without_repeating_completed_calls(db_path):
    def critic_down(body, n):  # the critic endpoint fails: samples end 'failed' after their teacher turns
        from scripted import http_error

        return http_error(503)

    with StubServer(GoodModel({"Critique": critic_down})) as stub:
        first = run_generation(db_path, stub.url, n=3, max_attempts=1)
    assert first.failed == 3
    calls_before = query(db_path, "SELECT count(*) FROM llm_calls WHERE error IS NULL")[0][0]
    with StubServer(GoodModel()) as stub:
        result = cli("run", "--resume", first.run_id, "--db", db_path, "--llm-url", stub.url, "--json")
        assert result.exit_code == 0, result.output
        sent = [b for b in stub.requests if b["messages"][0]["role"] == "system"]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["run_id"] == first.run_id and summary["accepted"] == 3
    assert summary["reused_calls"] == calls_before  # every completed persona/teacher call came from the log
    assert {b["response_format"]["json_schema"]["name"] for b in sent} == {"Critique"}  # only what failed
    rows = query(db_path, "SELECT sample_id, status FROM samples WHERE run_id = ? ORDER BY 1", first.run_id)
    assert [s for _, s in rows] == ["accepted"] * 3 and len({sid for sid, _ in rows}) == 3
    assert cli("verify", "--db", db_path).exit_code == 0


def test_resume_keeps_finished_samples(db_path):
    with StubServer(GoodModel()) as stub:
        first = run_generation(db_path, stub.url, n=2)
        result = cli("run", "--resume", first.run_id, "--db", db_path, "--llm-url", stub.url, "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["accepted"], summary["llm_calls"], summary["reused_calls"]) == (2, 0, 0)


def test_fork_with_a_new_critic_prompt_reuses_teacher_replies(db_path, tmp_path):
    with StubServer(GoodModel({"Critique": lambda body, n: failing_critique(1)})) as stub:
        run_generation(db_path, stub.url, n=1, max_revisions=0)
    sample_id, critique_event = query(
        db_path, "SELECT sample_id, event_id FROM events WHERE type = 'critique.done'"
    )[0]
    assert query(db_path, "SELECT status FROM samples")[0][0] == "rejected"
    prompts = tmp_path / "prompts" / "en"
    prompts.mkdir(parents=True)
    from teacherforge.prompts import BUNDLED_DIR

    bundled = (BUNDLED_DIR / "en" / "critic.j2").read_text()
    assert "Be strict and concrete." in bundled
    (prompts / "critic.j2").write_text(
        bundled.replace("Be strict and concrete.", "Be very strict; quote sources.")
    )

    offline = cli("replay", sample_id, "--from", critique_event, "--db", db_path, "--offline",
                  "--prompt-dir", tmp_path / "prompts")  # fmt: skip
    assert offline.exit_code == 0, offline.output
    assert "changed request (not sent, --offline): critic via en/critic.j2" in offline.stderr

    with StubServer(GoodModel()) as stub:
        forked = cli("replay", sample_id, "--from", critique_event, "--db", db_path,
                     "--prompt-dir", tmp_path / "prompts", "--llm-url", stub.url,
                     "--format", "json")  # fmt: skip
        sent = [
            b["response_format"]["json_schema"]["name"]
            for b in stub.requests
            if b["messages"][0]["role"] == "system"
        ]
    assert forked.exit_code == 0, forked.output
    assert sent == ["Critique"]  # persona and teacher replies came from the parent's log
    replay = json.loads(forked.stdout)
    assert replay["status"] == "accepted" and replay["sample_id"] != sample_id
    assert replay["plan"]["parent_sample_id"] == sample_id
    assert replay["plan"]["forked_from_event"] == critique_event
    con = connect(db_path, read_only=True)
    lineage = con.execute(
        "SELECT parent_sample_id FROM samples WHERE sample_id = ?", [replay["sample_id"]]
    ).fetchall()
    con.close()
    assert lineage == [(sample_id,)]


def test_verify_reports_a_broken_log(db_path):
    with StubServer(GoodModel()) as stub:
        run_generation(db_path, stub.url, n=1)
    assert cli("verify", "--db", db_path).exit_code == 0
    con = connect(db_path)
    con.execute("DELETE FROM events WHERE seq = 2 AND sample_id IS NOT NULL")
    con.close()
    result = cli("verify", "--db", db_path)
    assert result.exit_code == 1
    assert "seq gap" in result.stdout and "orphan event" in result.stdout


def test_runs_lists_status_and_counts(db_path):
    with StubServer(GoodModel()) as stub:
        summary = run_generation(db_path, stub.url, n=2)
    rows = json.loads(cli("runs", "--db", db_path, "--format", "json").stdout)
    assert [(r["run_id"], r["status"], r["target"], r["accepted"]) for r in rows] == [
        (summary.run_id, "finished", 2, 2)
    ]
