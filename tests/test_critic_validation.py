"""The critic's verdict is checked against the conversation: a bad one is retried, then fails the sample.

A critique whose problems name turns that do not exist is retried through StructuredLLM like a reply
that did not parse (an ``llm.call`` with error ``invalid: ...``); repeated problems are merged; when
every attempt is invalid the sample fails with that reason instead of carrying nonsense problems.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import query, run_generation
from scripted import GoodModel
from stub_server import StubServer

from teacherforge.agents import critic
from teacherforge.agents.llm import Endpoint
from teacherforge.agents.planner import PlanSettings, plan_sample
from teacherforge.agents.schemas import Critique
from teacherforge.graph.config import RunConfig
from teacherforge.graph.runner import build_agents

ONE_TURN = {"min_user_turns": 1, "max_user_turns": 1, "hard_negative_rate": 0, "multi_source_rate": 0}
FIVES = dict.fromkeys(
    ["groundedness", "persona_fidelity", "tier_match", "refusal_correctness", "naturalness"], 5
)


def critique(problems: list[tuple[int, str]], **scores: int) -> dict:
    return {
        "scores": {**FIVES, **scores},
        "problems": [{"turn_index": i, "problem": p} for i, p in problems],
    }


def test_checker_refuses_missing_turns_and_merges_repeats():
    check = critic.critique_checker(n_turns=2)
    with pytest.raises(ValueError, match="names turn 2, but the conversation has turns 0-1"):
        check(Critique.model_validate(critique([(2, "made up")])))
    merged = check(
        Critique.model_validate(critique([(1, "States a fee."), (1, "states  a fee"), (0, "states a fee")]))
    )
    assert [(p.turn_index, p.problem) for p in merged.problems] == [(1, "States a fee."), (0, "states a fee")]


def test_out_of_range_turn_is_retried_then_accepted(db_path):
    model = GoodModel(
        {"Critique": lambda body, n: critique([(7, "the answer is vague")]) if n == 0 else None}
    )
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN)
    assert (summary.accepted, summary.failed) == (1, 0)
    calls = query(db_path, "SELECT attempt, error FROM llm_calls WHERE agent = 'critic' ORDER BY ts")
    assert [a for a, _ in calls] == [1, 2]
    assert calls[0][1].startswith("invalid: ") and "names turn 7" in calls[0][1] and calls[1][1] is None
    assert query(db_path, "SELECT count(*), bool_and(passed) FROM critiques")[0] == (1, True)


def test_duplicated_problems_reach_the_refiner_once(db_path):
    repeated = [(1, "States a fee not in the sources."), (1, "states a fee not in the  sources")]

    def twice_then_pass(body, n):
        return critique(repeated, groundedness=2) if n == 0 else None

    with StubServer(GoodModel({"Critique": twice_then_pass})) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN)
    assert summary.accepted == 1
    first = json.loads(query(db_path, "SELECT problems FROM critiques WHERE revision = 0")[0][0])
    assert first == [{"turn_index": 1, "problem": "States a fee not in the sources."}]
    refined = json.loads(query(db_path, "SELECT problems FROM revisions")[0][0])
    assert refined == first


def test_always_invalid_critique_fails_the_sample_with_the_reason(db_path):
    model = GoodModel({"Critique": lambda body, n: critique([(9, "turn nine is wrong")], groundedness=1)})
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN, max_attempts=2)
    assert (summary.accepted, summary.rejected, summary.failed) == (0, 0, 1)
    errors = [r[0] for r in query(db_path, "SELECT error FROM llm_calls WHERE agent = 'critic' ORDER BY ts")]
    assert len(errors) == 2 and all(e.startswith("invalid: ") for e in errors)
    assert query(db_path, "SELECT count(*) FROM critiques")[0][0] == 0  # no critique.done: nothing to refine
    status, reasons = query(db_path, "SELECT status, reasons FROM samples")[0]
    assert status == "failed"
    reason = json.loads(reasons)[0]
    assert reason.startswith("critic: 2 attempt(s) failed") and "names turn 9" in reason
    failed = query(db_path, "SELECT payload->>'error' FROM events WHERE type = 'sample.failed'")[0][0]
    assert failed == reason


def test_a_recorded_critique_that_fails_todays_check_is_not_reused():
    plan = plan_sample("r", 0, 0, PlanSettings(**ONE_TURN), ["fees"])
    turns = [{"role": "user", "content": "How much?"}, {"role": "assistant", "content": "It is 5."}]
    chunks = [{"chunk_id": "c1", "document": "d", "section": "", "text": "It is 5."}]

    async def review_twice(url: str):
        endpoint = Endpoint(url, "stub-model", "k")
        ctx = build_agents(RunConfig(), endpoint, endpoint)
        try:
            first = await critic.review(ctx, plan, chunks, turns, seed=1)
            bad = critique([(5, "no such turn")])
            ctx.critic.replies = {first.calls[0].request_hash: {"raw": json.dumps(bad), "parsed": bad}}
            return first, await critic.review(ctx, plan, chunks, turns, seed=1)
        finally:
            await ctx.aclose()

    with StubServer(GoodModel()) as stub:
        first, second = asyncio.run(review_twice(stub.url))
    assert not first.calls[0].reused
    assert [c.reused for c in second.calls] == [False] and second.output.problems == []
