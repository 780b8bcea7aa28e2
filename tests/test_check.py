"""``teacherforge check``: conversations from anywhere, judged by the gate a run uses.

Good and bad files, the JSON and table output, exit codes (0 all pass, 1 some fail, 2 unusable
input), each one-line input error, the critic with ``--llm-url``, and a run's own export.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import query, run_generation
from scripted import GoodModel, failing_critique
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

MIXED = {"min_user_turns": 1, "max_user_turns": 2, "hard_negative_rate": 0.3, "multi_source_rate": 0.3}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def chunk(db_path) -> tuple[str, str]:
    """A chunk of the corpus whose first sentence states a dollar amount."""
    rows = query(db_path, "SELECT chunk_id, text FROM chunks WHERE text LIKE '%$%' ORDER BY chunk_id")
    for chunk_id, text in rows:
        sentence = next((s.strip() for s in text.replace("\n", " ").split(". ") if "$" in s), "")
        if 40 < len(sentence) < 250 and "|" not in sentence and "*" not in sentence:
            return chunk_id, sentence
    raise AssertionError("no chunk with a plain sentence about money")


def conversation(chunk: tuple[str, str], content: str | None = None, evidence: bool = True, **extra) -> dict:
    chunk_id, sentence = chunk
    assistant = {
        "role": "assistant",
        "content": content or f"According to the documents: {sentence}.",
        "thought": f"[{chunk_id}] answers it.",
    }
    if evidence:
        assistant["evidence"] = [{"chunk_id": chunk_id, "quote": sentence}]
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Could you tell me about this: {sentence[:60]}?"},
        assistant,
    ]
    return {"messages": messages, **extra}


def results(stdout: str) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_a_grounded_conversation_passes(db_path, tmp_path, chunk):
    path = write_jsonl(tmp_path / "good.jsonl", [conversation(chunk, id="good-1")])
    result = invoke("check", path, "--db", db_path, "--format", "json")
    assert result.exit_code == 0, result.output
    lines, summary = results(result.stdout)
    assert lines == [
        {
            "id": "good-1",
            "line": 1,
            "verdict": "pass",
            "reasons": [],
            "checks": {"rules": [], "verifier": [], "critic": None},
        }
    ]
    assert summary == {"conversations": 1, "pass": 1, "fail": 0, "by_reason": {}}


def test_bad_conversations_fail_with_reasons_and_exit_1(db_path, tmp_path, chunk):
    chunk_id, sentence = chunk
    records = [
        conversation(chunk, id="ok"),
        conversation(chunk, content="It costs $123,457 per year.", id="figure"),
        conversation(chunk, content=f"See [{chunk_id}]: {sentence}.", id="markup"),
        conversation(chunk, evidence=False, id="unquoted"),
    ]
    records[3]["messages"][2]["content"] = "According to the documents it is handled by the office."
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    result = invoke("check", path, "--db", db_path, "--format", "json")
    assert result.exit_code == 1, result.output
    lines, summary = results(result.stdout)
    verdicts = {r["id"]: (r["verdict"], r["reasons"]) for r in lines}
    assert verdicts["ok"] == ("pass", [])
    assert verdicts["figure"][0] == "fail" and "verifier:unsupported_figure" in verdicts["figure"][1]
    assert verdicts["markup"] == ("fail", ["verifier:leaked_markup"])
    assert verdicts["unquoted"] == ("fail", ["verifier:no_evidence"])
    figure = next(r for r in lines if r["id"] == "figure")
    assert [(f["check"], f["span"]) for f in figure["checks"]["verifier"]] == [
        ("unsupported_figure", "$123,457")
    ]
    assert summary["conversations"] == 4 and (summary["pass"], summary["fail"]) == (1, 3)
    assert summary["by_reason"]["verifier:leaked_markup"] == 1


def test_table_format_and_ids(db_path, tmp_path, chunk):
    records = [
        conversation(chunk),
        conversation(chunk, content="It is $123,457.", metadata={"sample_id": "s-2"}),
    ]
    path = write_jsonl(tmp_path / "two.jsonl", records)
    result = invoke("check", path, "--db", db_path)
    assert result.exit_code == 1
    assert "line-1" in result.stdout and "s-2" in result.stdout
    assert "2 conversation(s): 1 pass, 1 fail; reasons: " in result.stdout


def test_thought_is_advisory_unless_required(db_path, tmp_path, chunk):
    record = conversation(chunk)
    del record["messages"][2]["thought"]
    path = write_jsonl(tmp_path / "no-thought.jsonl", [record])
    assert invoke("check", path, "--db", db_path, "--format", "json").exit_code == 0
    strict = invoke("check", path, "--db", db_path, "--format", "json", "--require-thought")
    assert strict.exit_code == 1 and results(strict.stdout)[0][0]["reasons"] == ["rule:thought_missing"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"messages": []}]\n', "line 1: a JSON array, not JSONL"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n', "line 2: not valid JSON"),
        ('{"conversation": []}\n', "line 1: no 'messages' field (keys: conversation)"),
        ('{"messages": "hello"}\n', "line 1: 'messages' must be a non-empty list"),
        ('{"messages": [{"role": "tool", "content": "x"}]}\n', "line 1: messages[0].role: 'tool' is not one"),
        (
            '{"messages": [{"role": "user", "content": 3}]}\n',
            "line 1: messages[0].content: expected a string",
        ),
        (
            '{"messages": [{"role": "user", "content": "q"}, '
            '{"role": "assistant", "content": "a", "evidence": [{"chunk_id": "x"}]}]}\n',
            "line 1: messages[1].evidence[0]: expected",
        ),
        ("\n\n", "no conversations (the file is empty)"),
    ],
)
def test_unusable_input_is_one_line_naming_file_line_and_field(db_path, tmp_path, text, message):
    path = tmp_path / "in.jsonl"
    path.write_text(text, encoding="utf-8")
    result = invoke("check", path, "--db", db_path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and str(path) in result.stderr


def test_missing_file_missing_chunks_and_bad_format(db_path, tmp_path, chunk):
    result = invoke("check", tmp_path / "nope.jsonl", "--db", db_path)
    assert result.exit_code == 2 and "nope.jsonl: no such file" in result.stderr
    good = write_jsonl(tmp_path / "good.jsonl", [conversation(chunk)])
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    result = invoke("check", good, "--db", empty)
    assert result.exit_code == 2 and "no chunks" in result.stderr and "teacherforge ingest" in result.stderr
    result = invoke("check", good, "--db", tmp_path / "absent.duckdb")
    assert result.exit_code == 2 and "no such database" in result.stderr
    result = invoke("check", good, "--db", db_path, "--format", "csv")
    assert result.exit_code == 2 and "--format must be one of table|json" in result.stderr


def test_the_critic_runs_with_llm_url(db_path, tmp_path, chunk):
    path = write_jsonl(tmp_path / "good.jsonl", [conversation(chunk, id="a"), conversation(chunk, id="b")])
    with StubServer(GoodModel()) as stub:
        result = invoke("check", path, "--db", db_path, "--format", "json", "--llm-url", stub.url)
    assert result.exit_code == 0, result.output
    lines, _ = results(result.stdout)
    assert all(r["checks"]["critic"]["passed"] for r in lines)

    with StubServer(GoodModel({"Critique": lambda body, n: failing_critique(1)})) as stub:
        result = invoke("check", path, "--db", db_path, "--format", "json", "--llm-url", stub.url)
    lines, summary = results(result.stdout)
    assert result.exit_code == 1 and summary["by_reason"] == {"critic:groundedness": 2}
    assert lines[0]["checks"]["critic"]["problems"] == [
        {"turn_index": 1, "problem": "states a fee not in the sources"}
    ]

    invalid = GoodModel({"Critique": lambda body, n: {**failing_critique(7)}})
    with StubServer(invalid) as stub:
        result = invoke(
            "check", path, "--db", db_path, "--format", "json", "--llm-url", stub.url, "--model", "stub-model"
        )
    lines, summary = results(result.stdout)
    assert summary["by_reason"] == {"critic:error": 2}
    assert "names turn 7" in lines[0]["checks"]["critic"]["error"]


def test_a_runs_accepted_export_passes_check(db_path, tmp_path):
    with StubServer(GoodModel()) as stub:
        summary = run_generation(db_path, stub.url, n=6, seed=3, plan=MIXED)
    assert summary.accepted == 6
    exported = tmp_path / "data.jsonl"
    result = invoke("export", "--db", db_path, "--out", exported, "--format", "openai", "--thought", "field")
    assert result.exit_code == 0, result.output
    result = invoke("check", exported, "--db", db_path, "--format", "json")
    lines, totals = results(result.stdout)
    assert lines and totals["conversations"] == len(exported.read_text().splitlines())
    assert {r["id"] for r in lines} <= {r[0] for r in query(db_path, "SELECT sample_id FROM samples")}
    messages = [m for line in exported.read_text().splitlines() for m in json.loads(line)["messages"]]
    assert any(m.get("evidence") for m in messages if m["role"] == "assistant")  # refusals have none
    assert result.exit_code == 0, result.stdout
    assert totals["fail"] == 0
