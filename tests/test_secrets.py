"""API keys and Authorization headers never reach the event log, the database file, stdout/stderr or logs."""

from __future__ import annotations

import gc
import json
import logging
import uuid

import pytest
import stub_server
from click.testing import Result as CliResult
from conftest import query
from scripted import GoodModel
from stub_server import FaultPlan, StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()
MODEL = f"stub-model-canary-{uuid.uuid4().hex[:8]}"  # stored in every llm.call: proves the byte scan can see


@pytest.fixture
def seen_auth(monkeypatch) -> list[str]:
    """Authorization headers the stub received, so the test knows the key really travelled."""
    seen: list[str] = []
    for name in ("do_GET", "do_POST"):
        original = getattr(stub_server._Handler, name)

        def wrapped(self, _original=original):
            seen.append(self.headers.get("Authorization") or "")
            _original(self)

        monkeypatch.setattr(stub_server._Handler, name, wrapped)
    return seen


def invoke(args: list[str], env: dict, outputs: list[str], caplog) -> CliResult:
    """Run the CLI; keep its stdout, stderr and log text, then drop the log records: records of
    retried errors hold tracebacks whose frames would keep this process's writer connection open."""
    result = runner.invoke(app, args, env=env)
    outputs += [result.stdout, result.stderr, caplog.text]
    caplog.clear()
    gc.collect()
    return result


def file_bytes(db) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))  # the file and any .wal


def test_api_key_never_stored_printed_or_logged(db_path, tmp_path, seen_auth, caplog):
    key = f"sk-tf-{uuid.uuid4().hex}"
    env = {"OPENAI_API_KEY": key}
    outputs = []
    caplog.set_level(logging.DEBUG)  # openai, httpx and langchain log requests at DEBUG
    faults = FaultPlan(rate=0.3, seed=5, kinds=("500", "429", "invalid", "truncated"))
    db, export = str(db_path), tmp_path / "data.jsonl"
    with StubServer(GoodModel(), model=MODEL, faults=faults) as stub:
        run = ["run", "--n", "3", "--llm-url", stub.url, "--model", MODEL, "--json", "--db", db]
        result = invoke(run, env, outputs, caplog)
        assert json.loads(result.stdout.strip().splitlines()[-1])["accepted"] >= 1
        sample = query(db_path, "SELECT sample_id FROM samples LIMIT 1")[0][0]
        invoke(["replay", sample, "--show", "prompts", "--db", db], env, outputs, caplog)
        invoke(["sql", "select * from events", "--format", "json", "--db", db], env, outputs, caplog)
        invoke(["export", "--db", db, "--out", str(export), "--status", "all"], env, outputs, caplog)
        dumped = query(db_path, "SELECT string_agg(CAST(payload AS VARCHAR), ' ') FROM events")[0][0]
        # the endpoint-error path last: a failed run leaves its writer open in this process
        run = ["run", "--n", "1", "--llm-url", stub.url, "--model", "not-served", "--db", db]
        result = invoke(run, env, outputs, caplog)
        assert result.exit_code == 2 and "not-served" in result.stderr

    assert f"Bearer {key}" in seen_auth  # the key was really sent, on every request
    assert all(h == f"Bearer {key}" for h in seen_auth)
    raw = file_bytes(db_path)
    assert MODEL.encode() in raw  # the scan sees stored strings, so the next line means something
    assert key.encode() not in raw and key[-16:].encode() not in raw
    assert b"Bearer " not in raw
    assert key not in dumped and "authorization" not in dumped.lower()
    assert any("HTTP Request: POST" in text for text in outputs)  # the DEBUG/INFO logs were captured
    for text in [*outputs, export.read_text()]:
        assert key not in text and key[-16:] not in text
