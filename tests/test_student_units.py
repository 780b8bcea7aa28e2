"""Student-side pure functions: the document split, thought handling, metrics, settings, feedback seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from teacherforge.agents import judge
from teacherforge.graph.feedback import FeedbackError, seeds_from_eval
from teacherforge.store.database import connect
from teacherforge.store.eval_views import create_eval_views
from teacherforge.store.events import EventLog
from teacherforge.student import metrics
from teacherforge.student.data import Record, load_records, training_messages
from teacherforge.student.items import build_items
from teacherforge.student.settings import SettingsError, TrainSettings, build
from teacherforge.student.split import record_documents, split_by_document


def rec(sid: str, chunks: list[str], technique: str = "standard", turns: int = 1) -> Record:
    messages = [{"role": "system", "content": "S"}]
    for t in range(turns):
        messages += [{"role": "user", "content": f"q{t}"}, {"role": "assistant", "content": f"a{t}"}]
    meta = {"sample_id": sid, "source_chunk_ids": chunks, "tier": "direct", "technique": technique}
    return Record(messages=messages, metadata=meta)


def test_split_never_puts_a_document_on_both_sides():
    records = [rec(f"s{i}", [f"doc{i % 5:05d}-000", f"doc{(i + 1) % 7:05d}-001"]) for i in range(30)]
    split = split_by_document(records, 0.3, seed=1)
    assert split.heldout and split.train
    train_docs = set().union(*(record_documents(r) for r in split.train))
    held_docs = set().union(*(record_documents(r) for r in split.heldout))
    assert not train_docs & held_docs
    assert len(split.train) + len(split.heldout) + len(split.straddling) == 30
    assert split_by_document(records, 0.3, seed=1).summary() == split.summary()  # deterministic


def test_split_prefers_source_documents_and_honours_an_exported_split():
    a = rec("a", ["x-1"])
    a.metadata["source_documents"] = ["fees/tuition.md"]
    assert record_documents(a) == {"fees/tuition.md"}
    b, c = rec("b", ["y-1"]), rec("c", ["z-1"])
    b.metadata["split"], c.metadata["split"] = "train", "test"
    split = split_by_document([b, c], 0.5)
    assert [r.sample_id for r in split.train] == ["b"] and [r.sample_id for r in split.heldout] == ["c"]


def test_thought_drop_and_inline(tmp_path: Path):
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "<think>from [c1]</think>\nthe answer"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "second", "thought": "from [c2]"},
        ],
        "metadata": {"sample_id": "s"},
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (record,) = load_records(path)
    dropped = training_messages(record, "drop")
    assert [m["content"] for m in dropped if m["role"] == "assistant"] == ["the answer", "second"]
    inline = training_messages(record, "inline")
    assert inline[1]["content"] == "<think>from [c1]</think>\nthe answer"
    assert inline[3]["content"] == "<think>from [c2]</think>\nsecond"
    assert all(set(m) == {"role", "content"} for m in inline)


def test_items_go_breadth_first_and_keep_the_accepted_reply():
    records = [rec("a", ["d-1"], turns=2), rec("b", ["e-1"], turns=1)]
    items = build_items(records, "ev", max_items=2)
    assert [(i.record.sample_id, i.turn_index) for i in items] == [("a", 0), ("b", 0)]
    deeper = build_items(records, "ev", max_items=5)
    assert [(i.record.sample_id, i.turn_index, i.reference) for i in deeper][-1] == ("a", 2, "a1")
    assert deeper[-1].messages[-1] == {"role": "user", "content": "q1"}


def test_rouge_l_and_scores():
    assert metrics.rouge_l("the fee is 50 dollars", "the fee is 50 dollars") == 1.0
    assert metrics.rouge_l("", "x") == 0.0
    assert 0 < metrics.rouge_l("the late fee is 50", "a fee of 50 applies late") < 1
    assert judge.answer_score("partially", False) == 0.5
    assert judge.answer_score("refused", True) == 1.0 and judge.answer_score("correct", True) == 0.0
    assert metrics.looks_like_refusal("Sorry, the documents do not cover parking.")
    assert not metrics.looks_like_refusal("The fee is 50 dollars.")


def test_summary_reports_ratio_to_teacher_per_tier():
    def row(system, tier, verdict, cosine):
        score = judge.answer_score(verdict, False)
        return {
            "system": system,
            "tier": tier,
            "should_refuse": False,
            "verdict": verdict,
            "score": score,
            "handled": True,
            "cosine": cosine,
            "rouge_l": cosine,
        }

    rows = [
        row("teacher", "direct", "correct", 0.8),
        row("student", "direct", "partially", 0.4),
        row("teacher", "edge", "correct", 1.0),
        row("student", "edge", "correct", 1.0),
    ]
    out = metrics.summarise(rows, ("teacher", "student"))
    assert out["all"]["ratio_to_teacher"]["student"]["judge_score"] == 0.75
    assert out["tier:direct"]["ratio_to_teacher"]["student"]["cosine"] == 0.5
    assert out["tier:edge"]["means"]["student"]["judge_correct"] == 1.0


def test_settings_name_the_bad_key(tmp_path: Path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("train: {r: 4, lrr: 0.1}\nn: 3\n")
    with pytest.raises(SettingsError, match="unknown key 'train.lrr'"):
        build(TrainSettings, cfg, "train", {})
    cfg.write_text("train: {r: 4}\n")
    settings = build(TrainSettings, cfg, "train", {"lr": 0.01, "alpha": None})
    assert (settings.r, settings.lr, settings.alpha) == (4, 0.01, 16)


def _eval_item(item_id: str, tier: str, verdict: str, should_refuse: bool = False, refused: bool = False):
    return {
        "eval_id": "eval-x",
        "item_id": item_id,
        "source_sample_id": f"s-{item_id}",
        "turn_index": 0,
        "tier": tier,
        "technique": "hard_negative" if should_refuse else "standard",
        "category": "fees",
        "user_turns": 2,
        "should_refuse": should_refuse,
        "question": "q?",
        "reference": "r",
        "retrieved_chunk_ids": ["d-1", "d-2"],
        "source_chunk_ids": ["d-1"],
        "systems": [
            {"system": "teacher", "verdict": "correct", "score": 1.0, "handled": True, "refused": False},
            {
                "system": "student_tuned",
                "verdict": verdict,
                "score": 0.0,
                "refused": refused,
                "handled": refused == should_refuse,
                "cosine": 0.5,
                "rouge_l": 0.2,
                "answer": "a",
            },
        ],
    }


def test_feedback_turns_failures_into_harder_seeds_with_lineage(tmp_path: Path):
    con = connect(tmp_path / "e.duckdb")
    create_eval_views(con)
    log = EventLog(con)
    log.append("eval-x", "eval.started", {"eval_id": "eval-x", "items": 4})
    log.append("eval-x", "eval.item", _eval_item("i1", "direct", "wrong"))
    log.append("eval-x", "eval.item", _eval_item("i2", "reasoning", "correct"))
    log.append("eval-x", "eval.item", _eval_item("i3", "edge", "partially"))
    log.append("eval-x", "eval.item", _eval_item("i4", "direct", "wrong", should_refuse=True, refused=False))
    log.append("eval-x", "eval.finished", {"status": "finished", "summary": {"perplexity": {"base": 9.0}}})
    log.close()
    seeds = seeds_from_eval(con, "eval-x")
    assert [s["lineage"]["eval_item_id"] for s in seeds] == ["i1", "i3", "i4"]
    assert [(s["tier"], s["user_turns"]) for s in seeds] == [("reasoning", 2), ("edge", 3), ("reasoning", 2)]
    assert seeds[0]["chunk_ids"] == ["d-1", "d-2"] and seeds[0]["lineage"]["source_sample_id"] == "s-i1"
    rows = con.execute("SELECT system, count(*) FROM eval_items GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("student_tuned", 4), ("teacher", 4)]
    assert con.execute("SELECT status, items, ppl_base FROM evals").fetchall() == [("finished", 4, 9.0)]
    with pytest.raises(FeedbackError, match="no eval items"):
        seeds_from_eval(con, "eval-missing")


def test_judge_agent_renders_its_template_and_returns_a_validated_verdict():
    import asyncio

    from scripted import user_text
    from stub_server import StubServer

    from teacherforge.agents.context import AgentContext
    from teacherforge.agents.llm import Endpoint, SamplingParams, StructuredLLM
    from teacherforge.prompts import PromptLibrary

    seen = []

    def responder(body):
        seen.append(body)
        graded = user_text(body).rsplit("<answer>", 1)[1]
        return {"verdict": "correct" if "50 dollars" in graded else "wrong", "reason": "checked the source"}

    fact = "The late fee is 50 dollars."
    chunks = [{"chunk_id": "fees-1", "document": "fees.md", "section": "", "text": fact}]
    history = [{"role": "user", "content": "What is the late fee?"}]
    with StubServer(responder) as stub:
        llm = StructuredLLM(Endpoint(stub.url, "stub-model"), SamplingParams(temperature=0.0))
        ctx = AgentContext(generator=llm, critic=llm, prompts=PromptLibrary("en"))

        async def both():  # one event loop: the client keeps connections bound to it
            try:
                right = await judge.grade(ctx, history, "It is 50 dollars.", chunks, 1)
                return right, await judge.grade(ctx, history, "", chunks, 2)
            finally:
                await ctx.aclose()

        right, wrong = asyncio.run(both())
    assert (right.output.verdict, wrong.output.verdict) == ("correct", "wrong")
    assert right.calls[0].agent == "judge" and right.calls[0].template.endswith("judge.j2")
    assert "The late fee is 50 dollars." in user_text(seen[0]) and "(empty answer)" in user_text(seen[1])
    assert seen[0]["response_format"]["json_schema"]["name"] == "JudgeVerdict"
