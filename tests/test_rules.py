"""Rule checks name each failure and the turn it is in."""

from __future__ import annotations

from teacherforge.agents.planner import PlanSettings, plan_sample
from teacherforge.agents.rules import check_conversation

CHUNKS = {"c1": "Tuition is $9,800 per semester for undergraduates.", "c2": "Dorm rooms cost $3,150."}


def plan(technique="standard", turns=1):
    settings = PlanSettings(
        min_user_turns=turns,
        max_user_turns=turns,
        hard_negative_rate=1.0 if technique == "hard_negative" else 0.0,
        multi_source_rate=0.0,
    )
    return plan_sample("r", 0, 0, settings, ["fees"])


def assistant(content, cited=("c1",), thought="From [c1].", retrieved=("c1", "c2")):
    return {
        "role": "assistant",
        "content": content,
        "thought": thought,
        "cited_chunk_ids": list(cited),
        "retrieved_chunk_ids": list(retrieved),
    }


def rules_of(failures):
    return sorted({f.rule for f in failures})


def test_grounded_answer_passes():
    turns = [
        {"role": "user", "content": "How much is tuition?"},
        assistant("Tuition is $9,800 per semester."),
    ]
    assert check_conversation(plan(), turns, CHUNKS) == []


def test_each_rule_fires_on_its_defect():
    turns = [
        {"role": "user", "content": "How much is tuition?"},
        assistant("It is $12,000.", cited=["c9"], thought=""),
    ]
    failures = check_conversation(plan(), turns, CHUNKS)
    assert rules_of(failures) == ["citation_not_retrieved", "thought_missing", "ungrounded_numbers"]
    assert {f.turn_index for f in failures} == {1}


def test_structure_empty_length_and_repetition():
    p = plan(turns=2)
    looping = "the fee is due the fee is due the fee is due the fee is due the fee is due"
    turns = [{"role": "user", "content": ""}, assistant(looping), {"role": "user", "content": "ok?"}]
    failures = check_conversation(p, turns, CHUNKS)
    assert {"structure", "empty_turn", "repetition"} <= set(rules_of(failures))
    long_turns = [{"role": "user", "content": "x" * 700}, assistant("Tuition is $9,800 per semester.")]
    assert "length" in rules_of(check_conversation(plan(), long_turns, CHUNKS))


def test_hard_negative_must_refuse_and_not_invent():
    p = plan("hard_negative")
    answered = [
        {"role": "user", "content": "Can I bring a drone?"},
        assistant("Yes, drones up to 250 g are fine."),
    ]
    assert rules_of(check_conversation(p, answered, CHUNKS)) == ["invented_facts", "refusal_missing"]
    refused = [
        {"role": "user", "content": "Can I bring a drone?"},
        assistant("The documents do not cover drones, so I can't say.", cited=[]),
    ]
    assert check_conversation(p, refused, CHUNKS) == []


def test_advisory_rules_are_recorded_but_do_not_block():
    from teacherforge.agents.rules import RuleSettings, blocking

    turns = [{"role": "user", "content": "How much is tuition?"}, assistant("It is $12,000.")]
    settings = RuleSettings(advisory=["ungrounded_numbers"])
    failures = check_conversation(plan(), turns, CHUNKS, settings)
    assert [(f.rule, f.advisory) for f in failures] == [("ungrounded_numbers", True)]
    assert blocking(failures) == []


def test_unknown_advisory_rule_is_named():
    import pytest
    from pydantic import ValidationError

    from teacherforge.agents.rules import RuleSettings

    with pytest.raises(ValidationError, match="numbers_ungrounded"):
        RuleSettings(advisory=["numbers_ungrounded"])
