"""Tone match: does each user turn sound like the persona it was planned for?

A nearest-persona classifier over sentence embeddings: each persona of the run is embedded as
"name: description", each user turn is embedded, and the turn is assigned to the persona it is
most similar to. A turn "matches" when that is the persona the planner gave the sample. With k
personas, a classifier that knows nothing scores 1/k, so every figure is printed beside that chance
level; the margin (similarity to the planned persona minus the best other one) says how clear the
call was. An embedding of a help-desk question carries its topic more than its register, so this
sees a persona's subject matter (a parent asking about dorm safety) better than its voice (short
informal sentences); evals/quality/tone.jsonl measures how well it does on labelled turns.

Pure: the caller passes ``embed`` (L2-normalised vectors, as retrieval.embedder gives them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ToneVerdict:
    """One user turn, classified."""

    planned: str
    predicted: str
    margin: float  # similarity to the planned persona minus the best other persona's

    @property
    def matched(self) -> bool:
        return self.planned == self.predicted


def persona_text(name: str, description: str) -> str:
    """What a persona is embedded as: its name carries as much tone ("villager") as the description."""
    return f"{name}: {description}".strip()


def classify(
    turns: Sequence[tuple[str, str]], personas: Mapping[str, str], embed: Embed
) -> list[ToneVerdict]:
    """Each ``(planned persona, user text)`` against every persona in ``personas`` (name → description).

    Turns whose planned persona is not in ``personas`` are left out: there is nothing to match.
    Needs two personas at least; with one, every turn would "match".
    """
    names = sorted(personas)
    if len(names) < 2:
        raise ValueError(f"tone match needs at least two personas, got {len(names)}")
    kept = _classifiable(turns, personas)
    if not kept:
        return []
    prototypes = np.asarray(embed([persona_text(n, personas[n]) for n in names]), dtype=np.float32)
    vectors = np.asarray(embed([text for _, text in kept]), dtype=np.float32)
    similarity = vectors @ prototypes.T
    verdicts = []
    for row, (planned, _) in zip(similarity, kept, strict=True):
        own = names.index(planned)
        others = np.delete(row, own)
        verdicts.append(ToneVerdict(planned, names[int(np.argmax(row))], float(row[own] - others.max())))
    return verdicts


def _classifiable(turns: Sequence[tuple[str, str]], personas: Mapping[str, str]) -> list[tuple[str, str]]:
    """The turns ``classify`` judges: a non-empty text planned for one of ``personas``."""
    return [(planned, text) for planned, text in turns if planned in personas and text.strip()]


def by_persona(verdicts: Sequence[ToneVerdict], personas: Sequence[str]) -> dict:
    """Per planned persona: turns, matched, match rate and mean margin; overall; the chance level."""
    rows = []
    for name in sorted(personas):
        mine = [v for v in verdicts if v.planned == name]
        matched = sum(v.matched for v in mine)
        rows.append(
            {
                "persona": name,
                "turns": len(mine),
                "matched": matched,
                "match_rate": matched / len(mine) if mine else None,
                "mean_margin": float(np.mean([v.margin for v in mine])) if mine else None,
                "mistaken_for": _most_common([v.predicted for v in mine if not v.matched]),
            }
        )
    matched = sum(v.matched for v in verdicts)
    return {
        "personas": rows,
        "turns": len(verdicts),
        "match_rate": matched / len(verdicts) if verdicts else None,
        "chance": 1 / len(personas) if personas else None,
    }


def _most_common(names: list[str]) -> str | None:
    return max(sorted(set(names)), key=names.count) if names else None


Samples = Sequence[tuple[str | None, Sequence[str]]]  # (planned persona, user turns) per sample


def tone_report(samples: Samples, personas: Mapping[str, str], embed: Embed) -> dict:
    """The report section for ``(planned persona, user turns)`` per sample; a note instead of figures
    when the run has fewer than two personas or no user turns."""
    return tone_reports({"part": samples}, personas, embed)["part"]


def tone_reports(parts: Mapping[str, Samples], personas: Mapping[str, str], embed: Embed) -> dict[str, dict]:
    """``tone_report`` for each part, classifying every distinct turn once: the report's parts
    overlap (the dataset is a subset of the generated samples)."""
    empty = {"personas": [], "turns": 0, "match_rate": None, "chance": None}
    if len(personas) < 2:
        note = "Tone match needs at least two personas in the run."
        return {name: {**empty, "status": "n/a", "note": note} for name in parts}
    turns = {
        name: [(p, text) for p, texts in samples if p for text in texts] for name, samples in parts.items()
    }
    distinct = _classifiable(list(dict.fromkeys(t for part in turns.values() for t in part)), personas)
    by_turn = dict(zip(distinct, classify(distinct, personas, embed), strict=True))
    reports = {}
    for name, part in turns.items():
        verdicts = [by_turn[turn] for turn in part if turn in by_turn]
        if not verdicts:
            reports[name] = {**empty, "status": "n/a", "note": "No user turns to classify."}
        else:
            reports[name] = {"status": "ok", "note": "", **by_persona(verdicts, list(personas))}
    return reports
