"""The CLI's machine-readable contract (docs/cli.md): run ids, JSON lines, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from scripted import GoodModel
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_run_prints_run_id_first_and_json_summary_last(db_path):
    with StubServer(GoodModel()) as stub:
        result = invoke(
            "run", "--n", "3", "--db", db_path, "--llm-url", stub.url, "--model", "stub-model", "--json"
        )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("run-")
    summary = json.loads(lines[-1])
    assert set(summary) == {"run_id", "accepted", "rejected", "failed", "llm_calls", "reused_calls", "wall_s"}
    assert (
        summary["run_id"] == lines[0] and summary["accepted"] + summary["rejected"] + summary["failed"] == 3
    )


def test_sql_json_replay_json_and_export_agree(db_path, tmp_path):
    with StubServer(GoodModel()) as stub:
        invoke("run", "--n", "2", "--db", db_path, "--llm-url", stub.url, "--seed", "7")
    result = invoke(
        "sql", "select sample_id, status, tier from samples order by 1", "--db", db_path, "--format", "json"
    )
    rows = json.loads(result.stdout)
    assert [r["status"] for r in rows] == ["accepted", "accepted"]
    replay = json.loads(invoke("replay", rows[0]["sample_id"], "--db", db_path, "--format", "json").stdout)
    assert replay["status"] == "accepted" and replay["events"][0]["type"] == "sample.planned"
    out = tmp_path / "data.jsonl"
    assert invoke("export", "--db", db_path, "--out", out, "--thought", "inline").exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    first = next(r for r in records if r["metadata"]["sample_id"] == rows[0]["sample_id"])
    assert [m["role"] for m in first["messages"]][:2] == ["system", "user"]
    assert [m["content"] for m in first["messages"][1:] if m["role"] == "user"] == [
        t["content"] for t in replay["conversation"] if t["role"] == "user"
    ]
    assert all(m["content"].startswith("<think>") for m in first["messages"] if m["role"] == "assistant")


def test_replay_text_shows_timeline_and_conversation(db_path):
    with StubServer(GoodModel()) as stub:
        invoke("run", "--n", "1", "--db", db_path, "--llm-url", stub.url)
    sample_id = json.loads(
        invoke("sql", "select sample_id from samples", "--db", db_path, "--format", "json").stdout
    )[0]["sample_id"]
    text = invoke("replay", sample_id, "--db", db_path).stdout
    assert "timeline of" in text and "llm.call" in text and "after seq" in text and "status: accepted" in text


def test_sql_cannot_modify_the_database(db_path):
    result = runner.invoke(app, ["sql", "delete from events", "--db", str(db_path)])
    assert result.exit_code != 0
    assert "read-only" in result.stderr


def test_bad_config_key_is_one_line_naming_the_key(db_path, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("n: 2\nplan:\n  tier_mixx: {direct: 100}\n")
    result = runner.invoke(
        app, ["run", "--db", str(db_path), "--config", str(config), "--llm-url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "plan.tier_mixx" in result.stderr and str(config) in result.stderr


def test_tier_mix_not_summing_to_100_and_n_zero_are_rejected(db_path, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("plan:\n  tier_mix: {direct: 50, reasoning: 20}\n")
    result = runner.invoke(app, ["run", "--db", str(db_path), "--config", str(config)])
    assert result.exit_code == 2 and "plan.tier_mix" in result.stderr and "100" in result.stderr
    result = runner.invoke(app, ["run", "--db", str(db_path), "--n", "0"])
    assert result.exit_code == 2 and "n:" in result.stderr


def test_unreachable_endpoint_fails_fast_with_url(db_path):
    result = runner.invoke(app, ["run", "--db", str(db_path), "--llm-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2 and "127.0.0.1:9" in result.stderr and "unreachable" in result.stderr


def test_missing_db_folder_is_named(tmp_path):
    result = runner.invoke(app, ["ingest", "examples", "--db", str(tmp_path / "nope" / "x.duckdb")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_search_json_contract(db_path):
    result = invoke("search", "refund after withdrawal", "--db", db_path, "--k", "3", "--format", "json")
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    assert set(hits[0]) == {"chunk_id", "document", "score", "text", "category"}
    assert any("refund" in h["document"] for h in hits)


def test_serve_vllm_prints_the_gpu_command():
    result = invoke("serve", "--backend", "vllm", "--print-command", "--port", "8001")
    assert result.stdout.strip() == (
        "vllm serve google/gemma-3-12b-it --host 127.0.0.1 --port 8001 --gpu-memory-utilization 0.9 "
        "--dtype bfloat16 --max-model-len 8192"
    )


def test_error_lines_print_markup_from_logs_literally(capsys):
    """A child's log tail can hold Rich markup such as a chat template's [/INST]: printed as text."""
    import typer

    from teacherforge.cli.common import fail

    with pytest.raises(typer.Exit) as exit_info:
        fail("server died; last lines: [INST] hi [/INST] [bold]x[/bold]")
    assert exit_info.value.exit_code == 2
    assert "[/INST] [bold]x[/bold]" in capsys.readouterr().err
