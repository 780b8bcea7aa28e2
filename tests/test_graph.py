"""The whole sample graph on the stub server: every path ends in a terminal event, every step logged."""

from __future__ import annotations

import json

import pytest
from conftest import query, run_generation
from scripted import REFUSAL, GoodModel, failing_critique, http_error
from stub_server import StubServer

from teacherforge.dataset.export import openai_record
from teacherforge.store.database import connect
from teacherforge.store.projection import fold, load_events

ONE_TURN_STANDARD = {
    "min_user_turns": 1,
    "max_user_turns": 1,
    "hard_negative_rate": 0,
    "multi_source_rate": 0,
}
MIXED = {
    "plan": {"hard_negative_rate": 0.3, "multi_source_rate": 0.3, "min_user_turns": 2, "max_user_turns": 2}
}


def test_good_model_accepts_every_sample_and_logs_every_step(db_path):
    with StubServer(GoodModel()) as stub:
        summary = run_generation(db_path, stub.url, n=10, seed=3, **MIXED)
    assert (summary.accepted, summary.rejected, summary.failed) == (10, 0, 0)
    rows = query(db_path, "SELECT tier, technique, status, revisions FROM samples")
    assert {r[0] for r in rows} == {"direct", "reasoning", "edge"}
    assert {r[1] for r in rows} == {"standard", "hard_negative", "multi_source"}
    assert all(r[2] == "accepted" for r in rows)
    for sample_id, types, seqs in query(
        db_path,
        "SELECT sample_id, list(type ORDER BY seq), list(seq ORDER BY seq) FROM events "
        "WHERE sample_id IS NOT NULL GROUP BY 1",
    ):
        assert seqs == list(range(len(seqs))), f"{sample_id} has seq gaps"
        assert types[0] == "sample.planned" and types[-1] == "sample.accepted"
        for needed in ("retrieval.done", "llm.call", "turn.added", "rules.checked", "critique.done"):
            assert needed in types, f"{sample_id} lacks {needed}"
    assert query(db_path, "SELECT count(*) FROM llm_calls")[0][0] == summary.llm_calls
    assert (
        query(db_path, "SELECT count(*) FROM events WHERE type IN ('run.started', 'run.finished')")[0][0] == 2
    )


def test_teacher_retrieves_for_every_user_turn_and_cites_only_what_it_saw(db_path):
    with StubServer(GoodModel()) as stub:
        run_generation(db_path, stub.url, n=3, **MIXED)
    users = query(db_path, "SELECT count(*) FROM turns WHERE role = 'user'")[0][0]
    per_turn = query(db_path, "SELECT count(*) FROM retrievals WHERE purpose = 'turn'")[0][0]
    assert users == per_turn > 0
    for cited, retrieved in query(
        db_path, "SELECT cited_chunk_ids, retrieved_chunk_ids FROM turns WHERE role='assistant'"
    ):
        assert set(cited) <= set(retrieved)


def test_hard_negative_refuses_and_multi_source_spans_two_documents(db_path):
    with StubServer(GoodModel()) as stub:
        run_generation(db_path, stub.url, n=10, seed=3, **MIXED)
    refusals = query(
        db_path,
        "SELECT t.content FROM turns t JOIN samples s USING (sample_id) "
        "WHERE s.technique = 'hard_negative' AND t.role = 'assistant'",
    )
    assert refusals and all(r[0].startswith(REFUSAL.split("{")[0]) for r in refusals)
    spans = query(
        db_path,
        "SELECT r.sample_id, count(DISTINCT c.document) FROM retrievals r JOIN samples s USING (sample_id), "
        "unnest(r.chunk_ids) AS u(cid) JOIN chunks c ON c.chunk_id = u.cid "
        "WHERE s.technique = 'multi_source' AND r.purpose = 'seed' GROUP BY 1",
    )
    assert spans and all(n >= 2 for _, n in spans)


def test_critic_failure_is_refined_then_accepted(db_path):
    model = GoodModel({"Critique": lambda body, n: failing_critique(1) if n == 0 else None})
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1)
    assert summary.accepted == 1
    assert query(db_path, "SELECT revisions FROM samples")[0][0] == 1
    assert query(db_path, "SELECT revision, failing_turns FROM revisions") == [(1, [1])]
    content = query(db_path, "SELECT content, revision FROM turns WHERE turn_index = 1")[0]
    assert content[0].startswith("Revised answer:") and content[1] == 1
    assert [r[0] for r in query(db_path, "SELECT passed FROM critiques ORDER BY revision")] == [False, True]


def test_exhausted_revisions_reject_with_reasons(db_path):
    model = GoodModel({"Critique": lambda body, n: failing_critique(1)})
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, max_revisions=2)
    assert (summary.accepted, summary.rejected) == (0, 1)
    status, revisions, reasons = query(db_path, "SELECT status, revisions, reasons FROM samples")[0]
    assert (status, revisions) == ("rejected", 2)
    assert "groundedness below threshold" in reasons
    assert query(db_path, "SELECT count(*) FROM critiques")[0][0] == 3


def test_rule_failure_goes_to_refiner_without_calling_the_critic(db_path):
    def cite_unknown(body, n):
        if n == 0:
            return {
                "thought": "see [zzz-999]",
                "cited_chunk_ids": ["zzz-999"],
                "content": "Tuition is 1 dollar.",
            }
        return None

    with StubServer(GoodModel({"TeacherReply": cite_unknown})) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN_STANDARD)
    assert summary.accepted == 1
    failures = query(db_path, "SELECT rule, turn_index FROM rule_failures ORDER BY rule")
    assert ("citation_not_retrieved", 1) in failures and ("ungrounded_numbers", 1) in failures
    agents = [r[0] for r in query(db_path, "SELECT agent FROM llm_calls ORDER BY ts")]
    assert agents.index("refiner") < agents.index("critic")


def test_exhausted_retries_mark_sample_failed_and_run_goes_on(db_path):
    def broken_critic(body, n):
        return http_error(500)

    with StubServer(GoodModel({"Critique": broken_critic})) as stub:
        summary = run_generation(db_path, stub.url, n=2, max_attempts=2)
    assert (summary.accepted, summary.failed) == (0, 2)
    errors = query(
        db_path, "SELECT attempt, error FROM llm_calls WHERE agent = 'critic' ORDER BY sample_id, attempt"
    )
    assert [a for a, _ in errors] == [1, 2, 1, 2]
    assert all("InternalServerError" in e for _, e in errors)
    assert query(db_path, "SELECT count(*) FROM samples WHERE status = 'failed'")[0][0] == 2


def test_schema_violating_reply_is_retried_and_recorded(db_path):
    model = GoodModel({"UserMessage": lambda body, n: '{"message": ' if n == 0 else None})
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1)
    assert summary.accepted == 1
    rows = query(
        db_path, "SELECT attempt, error FROM llm_calls WHERE agent = 'persona_user' ORDER BY ts LIMIT 2"
    )
    assert rows[0][0] == 1 and rows[0][1].startswith("parse:") and rows[1] == (2, None)


def test_a_reply_of_blanks_is_refused_and_asked_again_not_recorded_as_an_empty_turn(db_path):
    """A teacher reply whose content is only whitespace passes min_length=1 as written; it must fail
    validation (and be retried) instead of becoming an empty assistant turn once stripped."""
    model = GoodModel()
    model.overrides["TeacherReply"] = lambda body, n: (
        {**model._TeacherReply(body), "content": "   \n ", "thought": "  "} if n == 0 else None
    )
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1)
    assert summary.accepted == 1
    rows = query(db_path, "SELECT attempt, error FROM llm_calls WHERE agent = 'teacher' ORDER BY ts LIMIT 2")
    assert rows[0][0] == 1 and "string_too_short" in rows[0][1] and rows[1] == (2, None)
    assert all(c.strip() and t.strip() for c, t in query(
        db_path, "SELECT content, thought FROM turns WHERE role = 'assistant'"))  # fmt: skip


def test_replayed_projection_equals_exported_record(db_path):
    with StubServer(GoodModel({"Critique": lambda body, n: failing_critique(1) if n == 0 else None})) as stub:
        summary = run_generation(db_path, stub.url, n=2, concurrency=1)
    con = connect(db_path, read_only=True)
    for sample_id in [r[0] for r in con.execute("SELECT sample_id FROM samples").fetchall()]:
        view = fold(sample_id, load_events(con, sample_id=sample_id))
        record = openai_record(view, thought="field")
        turns = con.execute(
            "SELECT role, content, thought FROM turns WHERE sample_id = ? ORDER BY turn_index", [sample_id]
        ).fetchall()
        assert [(m["role"], m["content"]) for m in record["messages"][1:]] == [(r, c) for r, c, _ in turns]
        assert record["metadata"]["run_id"] == summary.run_id
        assert record["metadata"]["source_chunk_ids"]
        json.dumps(record)
    con.close()


def test_api_key_never_reaches_the_event_log(db_path):
    with StubServer(GoodModel()) as stub:
        run_generation(db_path, stub.url, n=1)
    assert query(db_path, "SELECT count(*) FROM events WHERE payload::VARCHAR LIKE '%test-key%'")[0][0] == 0


def test_server_without_json_schema_gets_json_mode_with_the_schema_in_the_prompt(db_path):
    from scripted import schema_name
    from stub_server import StubReply

    from teacherforge.graph.config import RunConfig
    from teacherforge.graph.endpoints import EndpointError, probe_structured_output
    from teacherforge.graph.session import run_endpoints

    good = GoodModel()

    def no_json_schema(body):
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return StubReply(content="response_format json_schema is not supported", status=400)
        return good(body) if "for schema" in body["messages"][0]["content"] else {"ok": True}

    with StubServer(no_json_schema) as stub:
        config = RunConfig(llm_url=stub.url, model="stub-model")
        with run_endpoints(config) as (generator, critic):
            assert generator.structured == critic.structured == "json_mode"
        summary = run_generation(db_path, stub.url, n=2, structured_output="json_mode")
        agent_calls = [b for b in stub.requests if b["messages"][0]["role"] == "system"]
    assert summary.accepted == 2
    assert agent_calls and all(b["response_format"]["type"] == "json_object" for b in agent_calls)
    assert {schema_name(b) for b in agent_calls} == {"UserMessage", "TeacherReply", "Critique"}

    refuse = StubServer(lambda body: StubReply(content="no structured output here", status=400))
    with refuse as stub, pytest.raises(EndpointError, match="neither json_schema nor json_object"):
        probe_structured_output(stub.url, "stub-model")
