"""The deterministic verifier: every check fails on a crafted span, passes on a clean one, costs no model.

Unit tests on hand-made turns, then the verifier in the sample graph: a failure goes to the refiner
with the exact span, before any critic call, and an advisory check only records.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from conftest import query, run_generation
from scripted import GoodModel, sources
from stub_server import StubServer

from teacherforge.agents.schemas import TurnProblem
from teacherforge.agents.verifier import (
    CHECKS,
    VerifierSettings,
    blocking,
    figures,
    verify_conversation,
    verify_turn,
)

CHUNKS = {
    "c1": "Tuition is $9,800 per semester for undergraduates.\nA late fee of 1.5 percent applies per month.",
    "c2": "Applications close on 15 January 2026. The housing deposit is $250.",
}
ONE_TURN = {"min_user_turns": 1, "max_user_turns": 1, "hard_negative_rate": 0, "multi_source_rate": 0}


def answer(content: str, evidence: list[tuple[str, str]] | None = None) -> dict:
    quotes = [("c1", "Tuition is $9,800 per semester")] if evidence is None else evidence
    return {
        "role": "assistant",
        "content": content,
        "thought": "From [c1].",
        "evidence": [{"chunk_id": c, "quote": q} for c, q in quotes],
        "cited_chunk_ids": sorted({c for c, _ in quotes}),
        "retrieved_chunk_ids": list(CHUNKS),
    }


def check(content: str, evidence=None, user: str = "How much is tuition?", settings=None) -> list:
    return verify_turn(1, answer(content, evidence), CHUNKS, user, settings)


def checks_of(failures) -> list[tuple[str, str]]:
    return [(f.check, f.span) for f in failures]


def test_a_grounded_answer_passes():
    assert check("Tuition is $9,800 per semester, and late payments cost 1.5% a month.") == []


# (a) quote_not_in_chunk


def test_a_quote_is_matched_verbatim_up_to_whitespace_and_case():
    assert check("Tuition is $9,800.", [("c1", "TUITION is   $9,800\nper  semester")]) == []
    assert check("Tuition is $9,800.", [("c1", "“Tuition is $9,800 per semester…”")]) == []


def test_a_quote_that_is_not_in_its_chunk_fails_with_the_quote_as_span():
    failures = check("Tuition is $9,800.", [("c1", "Tuition is $9,000 per semester")])
    assert checks_of(failures) == [("quote_not_in_chunk", "Tuition is $9,000 per semester")]
    assert "c1" in failures[0].detail


def test_a_quote_of_a_chunk_not_retrieved_for_the_turn_fails():
    failures = check("Tuition is $9,800.", [("c9", "Tuition is $9,800 per semester")])
    assert [f.check for f in failures] == ["quote_not_in_chunk"]
    assert "not retrieved" in failures[0].detail


def test_a_quote_from_the_wrong_chunk_fails():
    assert checks_of(check("Tuition is $9,800.", [("c2", "Tuition is $9,800 per semester")])) == [
        ("quote_not_in_chunk", "Tuition is $9,800 per semester")
    ]


# (b) unsupported_figure


@pytest.mark.parametrize(
    ("content", "span"),
    [
        ("Tuition is $12,000 per semester.", "$12,000"),
        ("The late fee is 15% per month.", "15%"),
        ("Applications close on 16 January.", "16 January"),
        ("Applications close on January 16.", "January 16"),
        ("The deposit is 2.5 percent.", "2.5 percent"),
    ],
)
def test_an_invented_figure_fails_with_the_figure_as_span(content, span):
    assert checks_of(check(content)) == [("unsupported_figure", span)]


@pytest.mark.parametrize(
    "content",
    [
        "Tuition is 9800 dollars.",  # "$9,800" in the source
        "Tuition is $9,800.00.",
        "The late fee is 1.5% a month.",  # "1.5 percent" in the source
        "Applications close on January 15, 2026.",  # "15 January 2026"
        "Applications close on 2026-01-15.",
        "The housing deposit is $250.",  # in a retrieved chunk that no quote names
    ],
)
def test_figures_are_normalised_before_they_are_compared(content):
    assert check(content) == []


def test_a_date_needs_a_date_and_a_percentage_a_percentage():
    assert [f.check for f in check("Applications close on 15 March.")] == ["unsupported_figure"]
    assert [f.check for f in check("The fee is 250%.")] == ["unsupported_figure"]  # "$250" is not 250%


def test_figures_the_user_wrote_do_not_count():
    user = "Is tuition $12,000, or is there a discount of 10%?"
    assert check("No, tuition is not $12,000 and there is no 10% discount; it is $9,800.", user=user) == []


def test_arithmetic_on_grounded_figures_is_accepted_but_a_wrong_result_is_not():
    quotes = [("c1", "Tuition is $9,800 per semester"), ("c2", "The housing deposit is $250.")]
    assert check("Tuition plus the deposit comes to $10,050.", quotes) == []
    assert check("Two semesters of tuition cost $19,600.", quotes, user="What about 2 semesters?") == []
    assert check("Half of tuition is $4,900.", quotes, user="What is 50% of tuition?") == []
    assert checks_of(check("Tuition plus the deposit comes to $10,150.", quotes)) == [
        ("unsupported_figure", "$10,150")
    ]
    off = VerifierSettings(derived_figures=False)
    assert checks_of(check("Tuition plus the deposit comes to $10,050.", quotes, settings=off)) == [
        ("unsupported_figure", "$10,050")
    ]


def test_figures_in_evidence_only_mode_must_be_quoted():
    strict = VerifierSettings(figures_in="evidence")
    assert checks_of(check("The housing deposit is $250.", settings=strict)) == [
        ("unsupported_figure", "$250")
    ]


def test_a_figure_quoted_in_an_earlier_answer_grounds_a_later_one():
    turns = [
        {"role": "user", "content": "How much is tuition?"},
        answer("Tuition is $9,800 per semester."),
        {"role": "user", "content": "And again?"},
        answer("As I said, $9,800.", [("c2", "The housing deposit is $250.")]),
    ]
    by_turn = {1: CHUNKS, 3: {"c2": CHUNKS["c2"]}}
    assert verify_conversation(turns, by_turn) == []


def test_numbering_and_the_month_may_are_not_figures():
    assert [f.span for f in figures("1. Pay the fee\n2. Wait\nStudents under 21 may apply.")] == ["21"]


# (c) no_evidence and refusal_with_figures


def test_an_answer_without_evidence_fails():
    failures = check("Tuition is $9,800 per semester.", evidence=[])
    assert [f.check for f in failures] == ["no_evidence"]
    assert failures[0].span.startswith("Tuition is $9,800")


def test_a_refusal_needs_no_evidence_but_must_not_state_new_figures():
    assert check("The documents do not cover parking, so I can't say.", evidence=[]) == []
    failures = check("The documents do not cover parking; it probably costs $40.", evidence=[])
    assert checks_of(failures) == [("refusal_with_figures", "$40")]
    user = "Is the parking permit $40?"
    assert check("The documents do not cover a $40 permit.", evidence=[], user=user) == []


def test_refusal_wording_with_evidence_is_judged_as_an_answer():
    content = "Tuition does not include housing; tuition is $9,800 per semester."
    assert check(content) == []
    assert [f.check for f in check(content.replace("9,800", "9,900"))] == ["unsupported_figure"]


# (d) leaked_markup


@pytest.mark.parametrize(
    "leak",
    [
        "[c1]",
        "[3]",
        '<source id="c1">',
        "</source>",
        "chunk_id",
        "Sources:",
        "USER:",
        "ASSISTANT:",
        "a1b2c3d4e5-3",
    ],
)
def test_prompt_markup_in_the_content_fails(leak):
    failures = check(f"Tuition is $9,800 per semester {leak} for everyone.")
    assert ("leaked_markup", leak) in checks_of(failures)
    assert not any(f.check == "unsupported_figure" for f in failures)  # an id's digits are not figures


def test_a_retrieved_chunk_id_pasted_bare_fails():
    chunks = {"49ad6b5f22-002": CHUNKS["c1"]}
    turn = answer("See 49ad6b5f22-002: tuition is $9,800.", [("49ad6b5f22-002", "Tuition is $9,800")])
    assert checks_of(verify_turn(1, turn, chunks, "How much?")) == [("leaked_markup", "49ad6b5f22-002")]


def test_plain_prose_with_brackets_and_capitals_passes():
    assert check("Tuition is $9,800 per semester [EMAIL the bursar]. NOTE: pay online.") == []


# settings, failure shape, cost


def test_every_check_can_be_advisory_and_unknown_names_are_refused():
    settings = VerifierSettings(advisory=["no_evidence"])
    failures = check("Tuition is $9,800.", evidence=[], settings=settings)
    assert [(f.check, f.advisory) for f in failures] == [("no_evidence", True)]
    assert blocking(failures) == []
    with pytest.raises(ValueError, match="no_evidences"):
        VerifierSettings(advisory=["no_evidences"])
    assert set(CHECKS) == {
        "quote_not_in_chunk",
        "unsupported_figure",
        "no_evidence",
        "refusal_with_figures",
        "leaked_markup",
    }


def test_a_failure_fits_the_refiners_problem_schema():
    long_quote = "x " * 400
    failures = check("It is " + "9" * 500 + " dollars. [c1]", [("c1", long_quote)])
    assert {f.check for f in failures} == {"quote_not_in_chunk", "unsupported_figure", "leaked_markup"}
    for f in failures:
        TurnProblem(turn_index=f.turn_index, problem=f.problem())


def test_the_verifier_is_cheap_and_calls_nothing(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the verifier opened a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    turns = []
    for i in range(12):
        turns += [
            {"role": "user", "content": f"Question {i}: how much is tuition?"},
            answer("Tuition is $9,800 per semester, 1.5% late fee, closing on 15 January 2026."),
        ]
    by_turn = {i: CHUNKS for i in range(1, 24, 2)}
    started = time.perf_counter()
    for _ in range(20):
        assert verify_conversation(turns, by_turn) == []
    per_conversation_ms = (time.perf_counter() - started) * 1000 / 20
    assert per_conversation_ms < 50, f"{per_conversation_ms:.1f} ms for a 24-turn conversation"
    clients = "('openai', 'langchain_openai', 'duckdb', 'httpx')"
    code = (
        f"import sys, teacherforge.agents.verifier; print(sorted(m for m in {clients} if m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


# in the sample graph


def test_a_verifier_failure_goes_to_the_refiner_with_its_span_before_any_critic_call(db_path):
    def misquoting(body, n):
        if n == 0:
            chunk_id, _ = sources(body)[0]
            return {
                "thought": f"From [{chunk_id}].",
                "evidence": [{"chunk_id": chunk_id, "quote": "This sentence is in no source at all."}],
                "cited_chunk_ids": [chunk_id],
                "content": "According to the documents the fee is $123,457 per year.",
            }
        return None

    with StubServer(GoodModel({"TeacherReply": misquoting})) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN)
    assert summary.accepted == 1
    rows = query(db_path, "SELECT revision, check_name, turn_index, span FROM verifier_failures ORDER BY 2")
    assert rows == [
        (0, "quote_not_in_chunk", 1, "This sentence is in no source at all."),
        (0, "unsupported_figure", 1, "$123,457"),
    ]
    passed = query(
        db_path, "SELECT payload->>'passed' FROM events WHERE type = 'verify.checked' ORDER BY seq"
    )
    assert [p[0] for p in passed] == ["false", "true"]
    problems = json.loads(query(db_path, "SELECT problems FROM revisions")[0][0])
    assert any("'$123,457'" in p["problem"] for p in problems)
    assert any("'This sentence is in no source at all.'" in p["problem"] for p in problems)
    agents = [r[0] for r in query(db_path, "SELECT agent FROM llm_calls ORDER BY ts")]
    assert agents.index("refiner") < agents.index("critic")
    evidence = query(db_path, "SELECT evidence, cited_chunk_ids FROM turns WHERE role = 'assistant'")[0]
    assert json.loads(evidence[0])[0]["chunk_id"] in evidence[1]


def test_an_advisory_check_is_recorded_but_does_not_send_the_sample_back(db_path):
    def unquoted(body, n):
        return {"thought": "From the sources.", "evidence": [], "cited_chunk_ids": [],
                "content": "According to the documents this is handled by the office."}  # fmt: skip

    with StubServer(GoodModel({"TeacherReply": unquoted})) as stub:
        summary = run_generation(
            db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN, verifier={"advisory": ["no_evidence"]}
        )
    assert (summary.accepted, query(db_path, "SELECT revisions FROM samples")[0][0]) == (1, 0)
    assert query(db_path, "SELECT check_name, advisory FROM verifier_failures") == [("no_evidence", True)]


def test_a_blocking_check_rejects_when_the_refiner_cannot_fix_it(db_path):
    def unquoted(body, n):
        return {"thought": "From the sources.", "evidence": [], "cited_chunk_ids": [],
                "content": "According to the documents this is handled by the office."}  # fmt: skip

    def unquoted_rewrite(body, n):
        return {"revised_turns": [{"turn_index": 1, **unquoted(body, n)}]}

    model = GoodModel({"TeacherReply": unquoted, "Refinement": unquoted_rewrite})
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=1, concurrency=1, plan=ONE_TURN, max_revisions=1)
    assert summary.rejected == 1
    reasons = query(db_path, "SELECT reasons FROM samples")[0][0]
    assert "verifier no_evidence (turn 1)" in reasons
