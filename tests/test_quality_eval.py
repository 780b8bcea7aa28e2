"""The quality eval's scoring (evals/quality/score.py), the set's validator, and the labelled set's shape.

Hand-made verdict lists only: nothing here runs ``teacherforge check`` or ingests a corpus.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from teacherforge.evals.quality import runner
from teacherforge.evals.quality.__main__ import main as quality_main
from teacherforge.evals.quality.score import (
    DEFECTS,
    QualitySetError,
    confusion,
    evaluate,
    group_of,
    join,
    load_labels,
    parse_check_output,
    read_conversations,
)
from teacherforge.evals.quality.validate import evidence_problems, structure_problems, validate


def _conv(cid, label="good", defect=None, answer="The late fee is $75.", evidence=None):
    evidence = [{"chunk_id": "c-001", "quote": "a flat $75 late fee"}] if evidence is None else evidence
    return {
        "id": cid,
        "label": label,
        "defect": defect,
        "note": "n",
        "messages": [
            {"role": "user", "content": "How much is the late fee?"},
            {"role": "assistant", "content": answer, "thought": "t", "evidence": evidence},
        ],
    }


def _line(cid, verdict, reasons=(), checks=None):
    return json.dumps({"id": cid, "verdict": verdict, "reasons": list(reasons), "checks": checks or {}})


SET = [
    _conv("g1"),
    _conv("g2"),
    _conv("g3", answer="I don't know; the documents don't cover parking.", evidence=[]),
    _conv("b1", "bad", "wrong_amount", answer="The late fee is $50."),
    _conv("b2", "bad", "no_evidence", evidence=[]),
    _conv("b3", "bad", "persona_break"),
    _conv("b4", "bad", "invented_fact", answer="Appeals go to the Student Ombudsman."),
    _conv("b5", "bad", "invented_fact", answer="There is also a $65 processing fee."),
]


def test_parse_check_output_reads_verdicts_and_summary_and_keeps_stray_lines():
    lines = [
        "notice: reading the snapshot",
        "",
        _line("g1", "pass"),
        _line(
            "b1",
            "fail",
            ["rule:ungrounded_numbers", {"check": "unsupported_figure", "detail": "$50"}],
            {
                "rules": [{"rule": "ungrounded_numbers", "detail": "numbers not in chunks: ['50']"}],
                "verifier": [{"check": "unsupported_figure", "span": "$50", "detail": "in no chunk"}],
                "critic": None,
            },
        ),
        json.dumps({"summary": {"pass": 1, "fail": 1}}),
    ]
    out = parse_check_output(lines)
    assert set(out.verdicts) == {"g1", "b1"}
    assert out.verdicts["b1"].reasons == ("rule:ungrounded_numbers", "unsupported_figure: $50")
    assert out.verdicts["b1"].details == (
        "ungrounded_numbers: numbers not in chunks: ['50']",
        "unsupported_figure [$50]: in no chunk",
    )
    assert out.verdicts["g1"].details == ()
    assert out.summary == {"pass": 1, "fail": 1}
    assert out.ignored_lines == ["notice: reading the snapshot"]


@pytest.mark.parametrize("lines", [[_line("g1", "maybe")], [_line("g1", "pass"), _line("g1", "fail")]])
def test_parse_check_output_rejects_unknown_and_duplicate_verdicts(lines):
    with pytest.raises(QualitySetError):
        parse_check_output(lines)


@pytest.mark.parametrize(
    "bad",
    [
        _conv("x", "good", "wrong_amount"),
        _conv("x", "bad", None),
        _conv("x", "bad", "typo"),
        _conv("x", "fine"),
    ],
)
def test_labels_are_validated(bad):
    with pytest.raises(QualitySetError):
        load_labels([bad])


def test_duplicate_ids_are_rejected():
    with pytest.raises(QualitySetError):
        load_labels([_conv("g1"), _conv("g1")])


def test_groups_depend_on_the_defect_and_on_figures_for_invented_facts():
    groups = {item.id: item.group for item in load_labels(SET)}
    assert groups == {
        "g1": "good",
        "g2": "good",
        "g3": "good",
        "b1": "visible",
        "b2": "visible",
        "b3": "judge",
        "b4": "judge",
        "b5": "visible",
    }
    assert group_of("bad", "answered_out_of_scope", [{"role": "user", "content": "fine in 2026?"}]) == "judge"


def test_confusion_counts_fail_as_positive():
    verdicts = parse_check_output(
        [
            _line("g1", "pass"),
            _line("g2", "fail", ["rule:length"]),
            _line("g3", "pass"),
            _line("b1", "fail"),
            _line("b2", "fail"),
            _line("b3", "pass"),
            _line("b4", "pass"),
            _line("b5", "fail"),
        ]
    ).verdicts
    c = confusion(join(load_labels(SET), verdicts))
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (3, 1, 2, 2)
    assert c["precision"] == 0.75 and c["recall"] == 0.6


def test_confusion_without_positives_gives_none_not_a_crash():
    c = confusion(join(load_labels(SET[:3]), parse_check_output([_line("g1", "pass")]).verdicts))
    assert c["precision"] is None and c["recall"] is None and c["tn"] == 3


def test_evaluate_reports_groups_defects_false_positives_and_missing():
    lines = [
        _line("g1", "pass"),
        _line("g2", "fail", ["rule:ungrounded_numbers"]),
        _line("b1", "fail"),
        _line("b2", "fail"),
        _line("b3", "pass"),
        _line("b5", "fail"),
        _line("zz", "fail"),  # not in the set
    ]
    report = evaluate(SET, lines)
    assert report["missing_verdicts"] == ["g3", "b4"]  # counted as not failed
    assert report["unlabelled_verdicts"] == ["zz"]
    assert report["false_positives"] == [{"id": "g2", "reasons": ["rule:ungrounded_numbers"], "details": []}]
    assert report["overall"] == {"tp": 3, "fp": 1, "fn": 2, "tn": 2, "n": 8, "precision": 0.75, "recall": 0.6}
    # the visible group: every good conversation plus b1, b2, b5
    assert report["visible"] == {"tp": 3, "fp": 1, "fn": 0, "tn": 2, "n": 6, "precision": 0.75, "recall": 1.0}
    assert report["judge"]["tp"] == 0 and report["judge"]["fn"] == 2
    inv = report["per_defect"]["invented_fact"]
    assert inv == {"n": 2, "failed": 1, "recall": 0.5, "group": "judge+visible", "missed": ["b4"]}
    assert "chunk_copy" not in report["per_defect"]


def test_validator_checks_quotes_verbatim_up_to_whitespace():
    chunks = {"c-001": "Late fees:\n a flat   $75 late\nfee is charged."}
    assert evidence_problems(_conv("g1"), chunks) == []
    moved = evidence_problems(_conv("g1", evidence=[{"chunk_id": "c-002", "quote": "x"}]), chunks)
    assert moved == ["g1: cites unknown chunk c-002"]
    para = _conv("g1", evidence=[{"chunk_id": "c-001", "quote": "late fee of 75 dollars"}])
    assert len(evidence_problems(para, chunks)) == 1
    # a quote_not_in_chunk conversation must really hold a quote that is not in its chunk
    assert evidence_problems({**para, "label": "bad", "defect": "quote_not_in_chunk"}, chunks) == []
    honest = {**_conv("b"), "label": "bad", "defect": "quote_not_in_chunk"}
    expected = "b: labelled quote_not_in_chunk, but every quote is in its chunk"
    assert evidence_problems(honest, chunks) == [expected]


def test_validator_checks_structure():
    conv = _conv("g1")
    assert structure_problems(conv) == []
    assert structure_problems({**conv, "messages": conv["messages"][:1]})
    assert structure_problems({**conv, "messages": conv["messages"] * 4})  # 4 user turns
    reply = {"role": "assistant", "content": "x", "evidence": []}
    no_thought = {**conv, "messages": [conv["messages"][0], reply]}
    assert structure_problems(no_thought) == ["g1: assistant message 1 has no thought"]
    assert validate([conv, conv], {"c-001": "a flat $75 late fee"}) == ["g1: duplicate id"]


def test_the_shipped_set_is_well_formed_and_covers_every_defect():
    conversations = read_conversations(runner.SET_PATH)
    labels = load_labels(conversations)
    assert len(labels) >= 90
    counts = Counter(item.defect for item in labels)
    assert counts[None] >= 24
    assert all(counts[d] >= 6 for d in DEFECTS), counts
    assert all(structure_problems(c) == [] for c in conversations)
    multi = [c for c in conversations if sum(m["role"] == "user" for m in c["messages"]) > 1]
    assert sum(c["label"] == "good" for c in multi) >= 6


def test_runner_scores_a_saved_checker_output(tmp_path, capsys):
    conversations = read_conversations(runner.SET_PATH)
    fake = tmp_path / "check.jsonl"
    lines = [_line(c["id"], "fail" if c["label"] == "bad" else "pass") for c in conversations]
    # the first conversation's verdict is missing
    fake.write_text("\n".join([*lines[1:], json.dumps({"summary": {}})]) + "\n")
    assert quality_main(["--check-output", str(fake), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    first = conversations[0]
    assert report["missing_verdicts"] == [first["id"]]
    assert report["overall"]["fp"] == 0
    assert report["overall"]["fn"] == (1 if first["label"] == "bad" else 0)
    assert quality_main(["--check-output", str(fake)]) == 0
    text = capsys.readouterr().out
    assert "visible to the deterministic gate" in text and "confusion matrix" in text
