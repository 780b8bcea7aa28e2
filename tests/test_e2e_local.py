"""End to end on the real embedded model: ingest the examples, generate through all four agents.

Slow (a minute or two on 2 cores): it starts the bundled SmolLM2-135M-Instruct on llama.cpp via
``teacherforge run`` without ``--llm-url``, exactly as the README's first command does.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, query

pytestmark = pytest.mark.slow

TEACHERFORGE = [sys.executable, "-m", "teacherforge.cli.app"]


def _llama_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(autouse=True)
def require_llama():
    if not _llama_available():
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python is not installed; scripts/install.sh must install it in CI")
        pytest.skip("llama-cpp-python not installed (run scripts/install.sh)")


def tf(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TEACHERFORGE, *map(str, args)], capture_output=True, text=True, timeout=1200, **kwargs
    )


def test_real_model_run_through_all_agents_and_clean_shutdown(tmp_path: Path):
    db = tmp_path / "forge.duckdb"
    assert tf("ingest", EXAMPLES, "--db", db).returncode == 0
    config = tmp_path / "run.yaml"
    # All rules and verifier checks advisory and a strict critic, so both the critic and the refiner
    # are exercised.
    config.write_text(  # the standard profile (JSON teacher, critic, refiner) on the embedded model
        "profile: standard\nn: 2\nconcurrency: 2\nmax_revisions: 1\nseed: 1\n"
        "plan: {min_user_turns: 1, max_user_turns: 1, hard_negative_rate: 0, multi_source_rate: 0.5}\n"
        "rules: {advisory: [structure, empty_turn, length, repetition, thought_missing, "
        "citation_not_retrieved, refusal_missing, invented_facts, ungrounded_numbers, prompt_leak, "
        "injection_echo]}\n"
        "verifier: {advisory: [quote_not_in_chunk, unsupported_figure, no_evidence, refusal_with_figures, "
        "leaked_markup]}\n"
        "critic_thresholds: {groundedness: 5, persona_fidelity: 5, tier_match: 5, "
        "refusal_correctness: 5, naturalness: 5}\n"
    )
    result = tf("run", "--db", db, "--config", config, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert lines[0] == summary["run_id"]
    assert summary["accepted"] + summary["rejected"] + summary["failed"] == 2

    url = re.search(r"at (http://127\.0\.0\.1:(\d+)/v1)", result.stderr)
    assert url, result.stderr
    port = int(url.group(2))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the embedded server outlived the run"
    leftovers = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, f"--port\0{port}\0")
    ]
    assert leftovers == []

    agents = {r[0] for r in query(db, "SELECT DISTINCT agent FROM llm_calls WHERE error IS NULL")}
    assert {"persona_user", "teacher"} <= agents
    # The critic is called; the 135M critic's critiques often name turns that do not exist and are
    # refused (docs/quality.md), so only its call, not its success, is asserted.
    assert query(db, "SELECT count(*) FROM llm_calls WHERE agent = 'critic'")[0][0] > 0
    failed_critiques = query(db, "SELECT count(*) FROM critiques WHERE NOT passed AND revision = 0")[0][0]
    if failed_critiques:
        assert "refiner" in agents
    assert query(db, "SELECT DISTINCT model FROM llm_calls") == [("smollm2-135m-instruct",)]
    for (status,) in query(db, "SELECT status FROM samples"):
        assert status in ("accepted", "rejected", "failed")
    turns = query(db, "SELECT role, content, thought FROM turns ORDER BY sample_id, turn_index")
    assert turns and all(content.strip() for _, content, _ in turns)
    assert all(thought for role, _, thought in turns if role == "assistant")
    for seqs in query(
        db, "SELECT list(seq ORDER BY seq) FROM events WHERE sample_id IS NOT NULL GROUP BY sample_id"
    ):
        assert seqs[0] == list(range(len(seqs[0])))


def test_embedded_default_yields_samples_that_pass_check(tmp_path: Path):
    """The README's quickstart: without --llm-url the small profile runs, and what it accepts passes
    ``teacherforge check`` (the same rules and verifier, from outside the run)."""
    db, data = tmp_path / "forge.duckdb", tmp_path / "data.jsonl"
    assert tf("ingest", EXAMPLES, "--db", db).returncode == 0
    quickstart = EXAMPLES.parent / "quickstart.yaml"
    result = tf("run", "--config", quickstart, "--n", 4, "--db", db, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["accepted"] >= 1, summary
    started = query(db, "SELECT payload FROM events WHERE type = 'run.started'")[0][0]
    assert json.loads(started)["config"]["profile"] == "small"
    assert query(db, "SELECT count(*) FROM llm_calls WHERE agent = 'critic'")[0][0] == 0
    exported = tf(
        "export",
        "--db",
        db,
        "--run",
        summary["run_id"],
        "--out",
        data,
        "--thought",
        "field",
        "--split",
        "1,0,0",
    )
    assert exported.returncode == 0, exported.stderr
    checked = tf("check", data, "--db", db, "--format", "json")
    assert checked.returncode == 0, checked.stdout[-2000:]
    verdicts = [json.loads(line) for line in checked.stdout.strip().splitlines()]
    assert verdicts[-1]["summary"]["pass"] == verdicts[-1]["summary"]["conversations"] >= 1


def _cmdline_has(proc: Path, needle: str) -> bool:
    try:
        return needle in (proc / "cmdline").read_text()
    except OSError:
        return False


def test_serve_prints_url_serves_models_and_stops_on_ctrl_c():
    import signal
    import time

    import httpx

    proc = subprocess.Popen(
        [*TEACHERFORGE, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                models = httpx.get(f"{url}/models", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert models["data"][0]["id"] == "smollm2-135m-instruct"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        port = url.rsplit(":", 1)[1].split("/")[0]
        assert not [
            p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, f"--port\0{port}\0")
        ]
    finally:
        proc.kill()


def test_keep_server_is_reused_by_the_next_run(tmp_path: Path):
    import os as _os
    import signal

    db = tmp_path / "forge.duckdb"
    env = {**_os.environ, "TEACHERFORGE_CACHE": str(tmp_path / "cache")}
    assert tf("ingest", EXAMPLES, "--db", db, env=env).returncode == 0
    config = tmp_path / "run.yaml"
    config.write_text(
        "n: 1\nmax_revisions: 0\nplan: {min_user_turns: 1, max_user_turns: 1, hard_negative_rate: 0}\n"
    )
    first = tf("run", "--db", db, "--config", config, "--keep-server", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = json.loads((tmp_path / "cache" / "kept-server.json").read_text())
    try:
        second = tf("run", "--db", db, "--config", config, env=env)
        assert second.returncode == 0, second.stderr[-2000:]
        said = " ".join(second.stderr.split())
        assert f"reusing kept embedded model server: smollm2-135m-instruct at {kept['url']}" in said
        assert "embedded model server:" not in said.replace("reusing kept embedded model server:", "")
    finally:
        _os.kill(kept["pid"], signal.SIGTERM)
