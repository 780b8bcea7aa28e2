"""LLM faults through the real pipeline on the stub: every fault kind is retried and recorded, exhausted
retries fail only that sample (kept, resumable), a call has a wall deadline, and a run whose every call
fails stops early with one message naming the URL, the model and the server's own words."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import query, run_generation
from scripted import GoodModel
from stub_server import FAULT_KINDS, FaultPlan, StubServer
from typer.testing import CliRunner

from teacherforge.agents.llm import Endpoint, LLMCallFailed, RetryPolicy, SamplingParams, StructuredLLM
from teacherforge.agents.schemas import UserMessage
from teacherforge.cli.app import app
from teacherforge.graph.config import RunConfig
from teacherforge.graph.lineage import resume_jobs
from teacherforge.graph.runner import generate
from teacherforge.prompts import RenderedPrompt
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.replies import recorded_replies
from teacherforge.store.views import create_views

ONE_TURN = {
    "plan": {"min_user_turns": 1, "max_user_turns": 1, "hard_negative_rate": 0, "multi_source_rate": 0}
}
EXPECTED_ERROR = {
    "429": "RateLimitError",
    "500": "InternalServerError",
    "503": "InternalServerError",
    "timeout": "APITimeoutError",
    "drop": "APIConnectionError",
    "truncated": "parse: reply cut off at max_tokens",
    "empty": "parse:",
    "invalid": "parse:",
}


def test_the_matrix_covers_every_fault_kind():
    assert set(EXPECTED_ERROR) == set(FAULT_KINDS)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_is_retried_recorded_and_survived(db_path, kind):
    plan = FaultPlan(script={1: kind, 3: kind}, delay_s=3.0)  # the first user and first teacher call
    with StubServer(GoodModel(), faults=plan) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, timeout_s=1.0, **ONE_TURN)
    assert (summary.accepted, summary.failed) == (1, 0)
    failed = query(db_path, "SELECT agent, attempt, error, request_hash FROM llm_calls WHERE error NOTNULL")
    assert len(failed) == 2, failed
    for agent, attempt, error, rhash in failed:
        assert attempt == 1 and EXPECTED_ERROR[kind] in error
        retried = query(
            db_path, "SELECT attempt, error FROM llm_calls WHERE request_hash = ? AND attempt = 2", rhash
        )
        assert retried == [(2, None)], f"{agent} was not retried successfully"
    if kind in ("500", "503", "429"):  # the server's own words are kept
        assert any(f"injected {kind}" in e or "rate limited" in e for _, _, e, _ in failed)


def test_exhausted_retries_fail_the_sample_keep_it_and_resume_it(db_path):
    plan = FaultPlan(script={1: "500", 2: "503", 3: "500"})  # sample 0's first call, all 3 attempts
    with StubServer(GoodModel(), faults=plan) as stub:
        summary = run_generation(db_path, stub.url, n=3, concurrency=1, **ONE_TURN)
    assert (summary.accepted, summary.failed) == (2, 1)  # the run went on after the failure
    ((sample_id, reasons),) = query(db_path, "SELECT sample_id, reasons FROM samples WHERE status='failed'")
    assert "3 attempt(s) failed" in reasons and "injected 500" in reasons
    attempts = query(db_path, "SELECT attempt FROM llm_calls WHERE sample_id = ? ORDER BY ts", sample_id)
    assert [a for (a,) in attempts] == [1, 2, 3]
    # a new server (new URL): langchain caches one HTTP client per URL, bound to the closed event loop
    with StubServer(GoodModel()) as stub:
        con = connect(db_path)
        create_views(con)
        log = EventLog(con)
        try:
            jobs, kept = resume_jobs(con, summary.run_id, 3)
            assert kept == 2 and [j.sample_id for j in jobs] == [sample_id] and jobs[0].restart
            cfg = RunConfig.model_validate({"n": 3, "concurrency": 1, **ONE_TURN})
            endpoint = Endpoint(stub.url, "stub-model", "k")
            resumed = asyncio.run(
                generate(
                    con,
                    log,
                    cfg,
                    endpoint,
                    endpoint,
                    run_id=summary.run_id,
                    jobs=jobs,
                    replies=recorded_replies(con, run_id=summary.run_id),
                    resumed=True,
                )
            )
        finally:
            log.close()
            con.close()
    assert (resumed.accepted, resumed.failed) == (3, 0)
    assert query(db_path, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(3, 3)]


def _llm(url: str, timeout_s: float, retry: RetryPolicy) -> StructuredLLM:
    return StructuredLLM(Endpoint(url, "stub-model", "k"), SamplingParams(timeout_s=timeout_s), retry)


PROMPT = RenderedPrompt(messages=[{"role": "user", "content": "hi"}], template="t", template_hash="h")


async def _call_once(llm: StructuredLLM):
    """One call, then close the client's connections on the same loop."""
    try:
        return await llm.call("persona_user", UserMessage, PROMPT)
    finally:
        await llm.aclose()


def test_a_call_has_a_wall_deadline_that_cuts_a_slow_attempt():
    with StubServer(faults=FaultPlan(rate=1.0, kinds=("timeout",), delay_s=10.0)) as stub:
        llm = _llm(stub.url, timeout_s=30.0, retry=RetryPolicy(max_attempts=5, deadline_s=0.5))
        with pytest.raises(LLMCallFailed) as info:
            asyncio.run(_call_once(llm))
    calls = info.value.calls
    assert len(calls) == 1 and calls[0].error.startswith("deadline:")


def test_the_deadline_also_bounds_the_number_of_retries():
    with StubServer(faults=FaultPlan(rate=1.0, kinds=("timeout",), delay_s=10.0)) as stub:
        llm = _llm(stub.url, timeout_s=0.3, retry=RetryPolicy(max_attempts=20, deadline_s=1.0))
        with pytest.raises(LLMCallFailed) as info:
            asyncio.run(_call_once(llm))
    assert 1 <= len(info.value.calls) < 20


def test_a_run_where_every_call_fails_stops_early_with_one_clear_event(db_path):
    with StubServer(faults=FaultPlan(rate=1.0, kinds=("500",))) as stub:
        summary = run_generation(db_path, stub.url, n=12, concurrency=1, max_attempts=1, **ONE_TURN)
        url = stub.url
    assert summary.failed == 3 and summary.accepted == 0  # not 12: the run stopped
    (payload,) = query(db_path, "SELECT payload FROM events WHERE type = 'run.aborted'")[0]
    aborted = json.loads(payload)
    assert aborted["endpoint"] == url and aborted["model"] == "stub-model"
    assert url in aborted["message"] and "stub-model" in aborted["message"]
    assert "injected 500" in aborted["message"] and aborted["not_started"] == 9
    assert query(db_path, "SELECT status FROM runs") == [("aborted",)]


def test_cli_names_url_model_and_server_error_when_every_call_fails(db_path, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("structured_output: json_schema\nmax_attempts: 1\nconcurrency: 1\n")
    with StubServer(faults=FaultPlan(rate=1.0, kinds=("503",))) as stub:
        url = stub.url
        result = CliRunner().invoke(
            app, ["run", "--n", "10", "--db", str(db_path), "--config", str(config), "--llm-url", url]
        )
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: every LLM call failed") and url in line and "stub-model" in line
    assert "injected 503" in line and "--resume" in line


def test_a_fault_storm_is_recorded_one_for_one_and_loses_no_sample(db_path):
    """30% of all requests fail with a random kind: every injected fault is one recorded failed attempt."""
    plan = FaultPlan(rate=0.3, seed=5, delay_s=2.0)
    with StubServer(GoodModel(), faults=plan) as stub:
        summary = run_generation(db_path, stub.url, n=10, timeout_s=0.5, max_attempts=8, **ONE_TURN)
        injected = [plan.fault_for(i) for i in range(1, len(stub.requests) + 1)]
    injected = [kind for kind in injected if kind]
    recorded = query(db_path, "SELECT count(*) FROM llm_calls WHERE error NOTNULL")[0][0]
    print(f"faults injected {len(injected)} ({sorted(set(injected))}), recorded {recorded}")
    assert len(injected) >= 5 and recorded == len(injected)
    assert (summary.accepted, summary.failed) == (10, 0)
    assert query(db_path, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(10, 10)]
