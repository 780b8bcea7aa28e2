"""Tone match (dataset/tone.py): the nearest-persona classifier, its report section and its eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from teacherforge.dataset.tone import by_persona, classify, persona_text, tone_report
from teacherforge.evals.quality.__main__ import main as quality_main
from teacherforge.evals.quality.score import QualitySetError
from teacherforge.evals.quality.tone import TONE_SET, evaluate_tone, read_tone_set

PERSONAS = {"parent": "worried about costs", "villager": "short informal sentences"}


def fake_embed(table: dict[str, list[float]]):
    """Unit vectors looked up by text: the test decides every similarity."""

    def embed(texts: list[str]) -> np.ndarray:
        vectors = np.asarray([table[t] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return embed


EMBED = fake_embed(
    {
        persona_text("parent", "worried about costs"): [1, 0],
        persona_text("villager", "short informal sentences"): [0, 1],
        "what if the fees rise?": [0.9, 0.1],
        "how much it cost": [0.2, 0.8],
        "is the dorm safe": [0.6, 0.4],
    }
)

# the third villager turn sits nearer the parent: one miss
TURNS = [
    ("parent", "what if the fees rise?"),
    ("villager", "how much it cost"),
    ("villager", "is the dorm safe"),
]


def test_each_turn_goes_to_the_nearest_persona_with_its_margin():
    verdicts = classify(TURNS, PERSONAS, EMBED)
    assert [(v.planned, v.predicted, v.matched) for v in verdicts] == [
        ("parent", "parent", True),
        ("villager", "villager", True),
        ("villager", "parent", False),
    ]
    third = np.array([0.6, 0.4]) / np.linalg.norm([0.6, 0.4])
    assert verdicts[2].margin == pytest.approx(third[1] - third[0], abs=1e-6) and verdicts[2].margin < 0


def test_turns_of_unknown_personas_and_empty_turns_are_left_out_and_one_persona_is_refused():
    assert classify([("stranger", "what if the fees rise?"), ("parent", "  ")], PERSONAS, EMBED) == []
    with pytest.raises(ValueError, match="at least two personas"):
        classify([("parent", "what if the fees rise?")], {"parent": "x"}, EMBED)


def test_per_persona_rates_chance_and_the_usual_confusion():
    verdicts = classify(TURNS, PERSONAS, EMBED)
    report = by_persona(verdicts, list(PERSONAS))
    rows = {r["persona"]: r for r in report["personas"]}
    assert (rows["parent"]["turns"], rows["parent"]["match_rate"], rows["parent"]["mistaken_for"]) == (
        1,
        1.0,
        None,
    )
    assert (rows["villager"]["matched"], rows["villager"]["match_rate"]) == (1, 0.5)
    assert rows["villager"]["mistaken_for"] == "parent"
    assert report["match_rate"] == pytest.approx(2 / 3) and report["chance"] == 0.5


def test_report_section_says_why_when_it_cannot_classify():
    one = tone_report([("parent", ["what if the fees rise?"])], {"parent": "x"}, EMBED)
    assert one["status"] == "n/a" and "two personas" in one["note"] and one["chance"] is None
    none = tone_report([("parent", [])], PERSONAS, EMBED)
    assert none["status"] == "n/a" and "No user turns" in none["note"]
    ok = tone_report(
        [("parent", ["what if the fees rise?"]), ("villager", ["how much it cost"])], PERSONAS, EMBED
    )
    assert ok["status"] == "ok" and ok["turns"] == 2 and ok["match_rate"] == 1.0


def test_the_labelled_tone_set_is_balanced_and_topic_matched():
    rows = read_tone_set()
    personas = {r["persona"] for r in rows}
    topics = {p: sorted(r["topic"] for r in rows if r["persona"] == p) for p in personas}
    assert len(personas) == 4 and len(rows) == 40
    assert len({tuple(t) for t in topics.values()}) == 1, "every persona asks about the same topics"
    assert len({r["id"] for r in rows}) == len(rows)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"id": "a", "persona": "anxious parent", "topic": "x"}', "missing or empty field(s) text"),
        ('{"id": "a", "persona": "pirate", "topic": "x", "text": "arr"}', "unknown persona 'pirate'"),
    ],
)
def test_a_bad_tone_set_is_a_one_line_error_naming_the_line(tmp_path, line, message):
    bad = tmp_path / "tone.jsonl"
    bad.write_text(line + "\n")
    with pytest.raises(QualitySetError, match=rf"{bad}:1: .*{message.split('(')[0]}"):
        read_tone_set(bad)


def test_evals_quality_prints_tone_match_per_persona_on_the_real_embedder(tmp_path, capsys):
    from teacherforge.retrieval.embedder import load_embedder

    saved = tmp_path / "check.jsonl"
    saved.write_text(json.dumps({"summary": {}}) + "\n")
    assert quality_main(["--check-output", str(saved), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["tone"]
    expected = evaluate_tone(read_tone_set(TONE_SET), load_embedder().embed)
    assert report["match_rate"] == pytest.approx(expected["match_rate"])
    assert report["turns"] == 40 and report["chance"] == 0.25
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 40
    assert quality_main(["--check-output", str(saved)]) == 0
    text = capsys.readouterr().out
    assert "tone match (40 labelled user turns" in text
    for persona in ("anxious parent", "ambitious student", "confused transfer student", "local villager"):
        assert f"  {persona} " in text
