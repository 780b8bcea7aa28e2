"""The small-model profile end to end on the stub: questions grown from sentences, evidence quoted by
the code, a code-built thought, no critic (recorded), regeneration on a failing gate, per-step bounds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import EXAMPLES, query, run_generation
from scripted import http_error, schema_name
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.agents.sentences import Fact as SmallFact
from teacherforge.agents.sentences import gaps, ranked, split_chunk
from teacherforge.agents.small_checks import roundtrip_problem
from teacherforge.agents.small_teacher import SMALL_CRITIC, SmallSettings, misspell
from teacherforge.agents.verifier import quote_in_chunk
from teacherforge.cli.app import app
from teacherforge.graph.config import RunConfig, load_config
from teacherforge.graph.estimate import dry_run_report
from teacherforge.store.chunk_tables import chunk_categories
from teacherforge.store.database import connect

GAP = re.compile(r"\[(how much|how many|when|what percentage|what time)\?\]")
TWO_TURNS = {"min_user_turns": 2, "max_user_turns": 2, "hard_negative_rate": 0, "multi_source_rate": 0}
SMALL = {"profile": "small", "concurrency": 2}
TOPIC_QUESTIONS = [
    "Can you tell me about {topic}?",
    "What are the rules on {topic}?",
    "Is there anything on {topic}?",
]


class SmallModel:
    """A careful small model: asks for the gap, answers from the one fact it is given, refuses when told.

    ``short_after``: question requests after this many are answered with short questions (the gate
    test makes the first, long ones fail ``max_user_chars``).
    """

    def __init__(self, short_after: int | None = None):
        self.short_after = short_after
        self.questions = 0

    def __call__(self, body: dict) -> dict:
        name = schema_name(body)
        system, last = body["messages"][0]["content"], body["messages"][-1]["content"].strip()
        if name == "SmallQuestion":
            if "Add your own situation" in system or "Add a limit" in system:
                return {"question": f"I have a plan. {last}"}
            if "vaguely" in system:
                return {"question": last[:1].lower() + last[1:]}
            if "about each topic" in system:
                self.questions += 1
                asked = TOPIC_QUESTIONS[self.questions % len(TOPIC_QUESTIONS)]
                return {"question": asked.format(topic=last.rstrip("."))}
            self.questions += 1
            short = self.short_after is not None and self.questions > self.short_after
            return {"question": short_question(last) if short else long_question(last)}
        if name == "SmallPick":
            return {"sentences": [1]}
        if name == "SmallAnswer":
            if "do not cover the question" in system:
                asked = last.removeprefix("Question: ").rstrip("?")
                return {"answer": f"I'm sorry, the documents do not cover {asked}, so I can't answer it."}
            fact = last.split("Facts:\n- ", 1)[1].split("\n", 1)[0]
            return {"answer": "From the documents: " + fact.replace(":", " -")}
        return {"ok": True}


def long_question(fact: str) -> str:
    return "Sorry to bother you, could you please tell me this: " + short_question(fact)


def short_question(fact: str) -> str:
    found = GAP.search(fact)
    assert found, fact
    after = re.findall(r"[A-Za-z][\w'-]*", fact[found.end() :])[:4]
    words = after if len(after) >= 2 else re.findall(r"[A-Za-z][\w'-]*", fact[: found.start()])[-4:]
    return f"{found.group(1)} {' '.join(words)}?"


def _events(db: Path, kind: str) -> list[dict]:
    return [
        json.loads(p) for (p,) in query(db, "SELECT payload FROM events WHERE type = ? ORDER BY seq", kind)
    ]


def test_small_profile_end_to_end_quotes_verbatim_and_builds_the_thought(db_path):
    model = SmallModel()
    with StubServer(model) as stub:
        summary = run_generation(db_path, stub.url, n=4, seed=2, plan=TWO_TURNS, **SMALL)
    assert summary.accepted >= 2, query(db_path, "SELECT sample_id, status, reasons FROM samples")
    chunks = dict(query(db_path, "SELECT chunk_id, text FROM chunks"))
    answers = query(
        db_path,
        "SELECT t.content, t.thought, t.evidence, t.cited_chunk_ids, t.retrieved_chunk_ids FROM turns t "
        "JOIN samples s USING (sample_id) WHERE s.status = 'accepted' AND t.role = 'assistant'",
    )
    assert answers
    raws = " ".join(r for (r,) in query(db_path, "SELECT payload->>'raw' FROM events WHERE type='llm.call'"))
    for content, thought, evidence, cited, retrieved in answers:
        evidence = json.loads(evidence) if isinstance(evidence, str) else evidence
        assert evidence, content
        for item in evidence:  # verbatim, from a chunk retrieved for this very turn
            assert item["chunk_id"] in retrieved
            assert quote_in_chunk(item["quote"], chunks[item["chunk_id"]])
        assert set(cited) <= set(retrieved)
        # the thought is the code's: it names the evidence, and no model reply contains it
        assert thought.startswith('The question: "') and evidence[0]["chunk_id"] in thought
        assert thought not in raws
    user_turns = [p for p in _events(db_path, "turn.added") if p["role"] == "user"]
    for turn in user_turns:  # every question grew from a sentence of a chunk, asking for one figure
        grown = turn["grown_from"]
        assert quote_in_chunk(grown["sentence"], chunks[grown["chunk_id"]])
        assert grown["asks_for"] and grown["asks_for"] not in turn["content"]


def test_critic_is_skipped_and_recorded_as_such(db_path):
    with StubServer(SmallModel()) as stub:
        summary = run_generation(db_path, stub.url, n=3, seed=2, plan=TWO_TURNS, **SMALL)
        schemas = {schema_name(b) for b in stub.requests}
    assert "Critique" not in schemas and "Refinement" not in schemas and "TeacherReply" not in schemas
    assert query(db_path, "SELECT count(*) FROM llm_calls WHERE agent IN ('critic', 'refiner')")[0][0] == 0
    assert query(db_path, "SELECT count(*) FROM events WHERE type = 'critique.done'")[0][0] == 0
    started = _events(db_path, "run.started")[0]
    assert started["config"]["profile"] == "small"
    assert started["critic"] == {"judge": SMALL_CRITIC}
    accepted = _events(db_path, "sample.accepted")
    assert len(accepted) == summary.accepted > 0
    assert all(a["critic"] == SMALL_CRITIC and a["scores"] is None for a in accepted)


def test_per_step_max_tokens_and_temperature_are_sent(db_path):
    settings = SmallSettings(pick="model")
    plan = {**TWO_TURNS, "hard_negative_rate": 0.5, "tier_mix": {"direct": 0, "reasoning": 100, "edge": 0}}
    with StubServer(SmallModel()) as stub:
        run_generation(db_path, stub.url, n=4, seed=5, plan=plan, small=settings.model_dump(), **SMALL)
        bodies = list(stub.requests)
    sent: dict[str, set[int]] = {}
    for body in bodies:
        system = body["messages"][0]["content"]
        step = {
            "SmallPick": "pick",
            "SmallQuestion": "evolve" if "to the question" in system else "question",
            "SmallAnswer": "refusal" if "do not cover the question" in system else "answer",
        }.get(schema_name(body))
        if step is None:
            continue
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        sent.setdefault(step, set()).add(limit)
        assert body["temperature"] == settings.temperature
    assert sent == {step: {settings.max_tokens[step]} for step in sent}
    assert {"question", "evolve", "pick", "answer", "refusal"} <= set(sent)
    recorded = query(
        db_path, "SELECT DISTINCT (payload->'params'->>'max_tokens')::INT FROM events WHERE type='llm.call'"
    )
    assert {r[0] for r in recorded} == set(settings.max_tokens.values())


def test_a_failing_gate_regenerates_the_exchange_with_new_seeds(db_path):
    one_turn = {**TWO_TURNS, "min_user_turns": 1, "max_user_turns": 1}
    with StubServer(SmallModel(short_after=1)) as stub:
        summary = run_generation(
            db_path,
            stub.url,
            n=1,
            seed=2,
            plan=one_turn,
            rules={"max_user_chars": 60},
            max_revisions=2,
            **SMALL,
        )
        schemas = [schema_name(b) for b in stub.requests]
    assert summary.accepted == 1, query(db_path, "SELECT reasons FROM samples")
    checked = _events(db_path, "rules.checked")
    assert [c["passed"] for c in checked] == [False, True]
    assert checked[0]["failures"][0]["rule"] == "length"
    refined = _events(db_path, "refine.done")
    assert len(refined) == 1 and refined[0]["method"].startswith("regenerate")
    assert refined[0]["failing_turns"] == [0] and refined[0]["changed_turns"] == [0, 1]
    revised = _events(db_path, "turn.revised")
    assert [(r["turn_index"], r["role"]) for r in revised] == [(0, "user"), (1, "assistant")]
    assert len(revised[0]["content"]) <= 60
    assert "Refinement" not in schemas
    seeds = query(
        db_path,
        "SELECT payload->'params'->>'seed' FROM events "
        "WHERE type='llm.call' AND payload->>'schema_name'='SmallQuestion'",
    )
    # every question attempt, the regenerated exchange's included, went out with a seed of its own
    # (how many attempts it took depends on which facts the seed chunks offer the stub)
    assert len({s for (s,) in seeds}) == len(seeds) >= 2
    assert query(db_path, "SELECT revisions FROM samples")[0][0] == 1


def test_a_rejected_reply_is_asked_again_with_a_new_seed(db_path):
    def first_question_without_mark(body: dict, n: int = 0) -> dict:
        if schema_name(body) == "SmallQuestion" and not calls:
            calls.append(body["seed"])
            return {"question": "Tell me about the deposit."}  # no '?': refused by the check
        if schema_name(body) == "SmallQuestion" and len(calls) == 1:
            calls.append(body["seed"])
        return model(body)

    calls: list[int] = []
    model = SmallModel()
    one_turn = {**TWO_TURNS, "min_user_turns": 1, "max_user_turns": 1}
    with StubServer(first_question_without_mark) as stub:
        run_generation(db_path, stub.url, n=1, seed=2, plan=one_turn, **SMALL)
    assert calls[1] == calls[0] + 1
    errors = [e for (e,) in query(db_path, "SELECT error FROM llm_calls WHERE error IS NOT NULL")]
    assert errors == ["invalid: not a question: it does not end with '?'"]


def test_hard_negatives_get_a_refusal_the_gate_checks(db_path):
    plan = {**TWO_TURNS, "hard_negative_rate": 1.0}
    with StubServer(SmallModel()) as stub:
        summary = run_generation(db_path, stub.url, n=2, seed=2, plan=plan, **SMALL)
    assert summary.accepted == 2
    for content, evidence in query(db_path, "SELECT content, evidence FROM turns WHERE role = 'assistant'"):
        assert "do not cover" in content and json.loads(evidence or "[]") == []
    assert _events(db_path, "rules.checked")[0]["failures"] == []


def test_profile_defaults_to_small_for_the_embedded_model_only(tmp_path):
    assert load_config(None, {}).profile == "small"
    assert load_config(None, {"llm_url": "http://gpu-box:8000/v1"}).profile == "standard"
    config = tmp_path / "run.yaml"
    config.write_text("profile: standard\n")
    assert load_config(config, {}).profile == "standard"
    config.write_text("profile: small\nsmall: {hard_negatives: 'off'}\n")
    loaded = load_config(config, {"llm_url": "http://gpu-box:8000/v1"})
    assert loaded.profile == "small" and loaded.plan.hard_negative_rate == 0


def test_the_dataset_card_names_the_profile_and_the_missing_critic(db_path, tmp_path):
    with StubServer(SmallModel()) as stub:
        summary = run_generation(db_path, stub.url, n=2, seed=2, plan=TWO_TURNS, **SMALL)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", summary.run_id, "--db", str(db_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert f"- critic: {SMALL_CRITIC}" in card
    assert "- profile: small (" in card


def test_sentences_quote_verbatim_and_gaps_ask_for_one_figure():
    for path in sorted(EXAMPLES.rglob("*.md")):
        text = path.read_text()
        for sentence in split_chunk("c", text):
            assert quote_in_chunk(sentence.quote, text), sentence.quote
            for gap in gaps(sentence):
                assert "?]" in gap.text and gap.text != sentence.text
    row = "| Hall | Room type | Price per semester |\n|---|---|---|\n| Alder Hall | Triple | $2,700 |\n"
    (sentence,) = split_chunk("c", row)
    assert sentence.text == "Alder Hall, Room type: Triple, Price per semester: $2,700."
    assert sentence.quote == "| Alder Hall | Triple | $2,700 |"
    (gap,) = gaps(sentence)
    assert gap.text == "Alder Hall, Room type: Triple, Price per semester: [how much?]."
    listed = split_chunk("c", "Beds.\n\n- Alder Hall has 620 beds for first-years.\n- Pets are not allowed.")
    assert ranked("how many beds in Alder Hall", listed)[0].text.startswith("Alder Hall has 620 beds")


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        ("The housing deposit is $250.", True),
        ("The housing deposit is due when you apply.", False),
        ("You pay $25 when applying.", False),
    ],
)
def test_round_trip_needs_the_figure_the_question_asked_for(answer, ok):
    (sentence,) = split_chunk("c", "Pay the $250 housing deposit when applying.")
    fact = SmallFact(sentence, gaps(sentence)[0])
    assert (roundtrip_problem(fact, answer, []) is None) is ok


def test_edge_noise_is_applied_by_the_code_and_keeps_figures():
    import random

    noisy = misspell("How much is the Housing deposit of $2,700.50 for students?", random.Random(1))
    assert "$2,700.50" in noisy and "?" not in noisy and noisy[0].islower()


def test_a_server_that_stops_answering_fails_the_sample_not_rejects_it(db_path):
    with StubServer(lambda body: http_error(500)) as stub:
        summary = run_generation(db_path, stub.url, n=1, seed=2, plan=TWO_TURNS, max_attempts=1, **SMALL)
    assert (summary.accepted, summary.rejected, summary.failed) == (0, 0, 1)


def test_dry_run_estimates_the_small_profiles_own_calls(db_path):
    """The estimate counts the small profile's steps (no critic); on a run where every sample is
    accepted without a revision it is exact, agent by agent."""
    settings = {"n": 4, "seed": 2, "plan": {**TWO_TURNS, "hard_negative_rate": 0.5}, **SMALL}
    cfg = RunConfig.model_validate({**settings, "concurrency": 4})
    report = dry_run_of(db_path, cfg)
    est = report["estimate"]
    assert report["profile"] == "small" and set(est["by_agent"]) == {"persona_user", "teacher"}
    with StubServer(SmallModel(short_after=0)) as stub:
        summary = run_generation(db_path, stub.url, **settings)
    assert (
        summary.accepted == 4
        and query(db_path, "SELECT count(*) FROM events WHERE type='refine.done'")[0][0] == 0
    )
    # a step asked again after a rejected reply adds attempts 2, 3: the first attempts are the steps
    made = dict(query(db_path, "SELECT agent, count(*) FROM llm_calls WHERE attempt = 1 GROUP BY agent"))
    assert made == {agent: a["calls"] for agent, a in est["by_agent"].items()}
    assert est["max_calls"] > est["calls"]
    # the standard profile's estimate of the same plans is another thing: a critic call per sample
    standard = dry_run_of(db_path, cfg.model_copy(update={"profile": "standard"}))["estimate"]
    assert standard["by_agent"]["critic"]["calls"] == 4 and standard["tokens_in"] > est["tokens_in"]


def dry_run_of(db: Path, cfg: RunConfig) -> dict:
    con = connect(db, read_only=True)
    try:
        return dry_run_report(con, cfg, chunk_categories(con))
    finally:
        con.close()
