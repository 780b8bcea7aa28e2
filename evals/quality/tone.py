"""Tone match on labelled user turns: how often the nearest-persona classifier (dataset/tone.py)
names the persona a turn was written as.

evals/quality/tone.jsonl holds 40 user turns, ten per built-in persona, and every persona asks about
the same ten topics (tuition, a late payment, housing, ...). A turn's topic therefore says nothing
about its persona: what is left to tell them apart is the register, which is what "sounds like the
persona" means. The turns were written before the classifier was first run on them and are not edited
to suit it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from teacherforge.agents.planner import DEFAULT_PERSONAS
from teacherforge.dataset.tone import Embed, by_persona, classify
from teacherforge.evals.quality.score import QualitySetError

TONE_SET = Path(__file__).resolve().parent / "tone.jsonl"
FIELDS = ("id", "persona", "topic", "text")


def read_tone_set(path: Path = TONE_SET) -> list[dict[str, str]]:
    """The labelled turns; a line that is not JSON, lacks a field or names an unknown persona is an error."""
    known = {p.name for p in DEFAULT_PERSONAS}
    rows: list[dict[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QualitySetError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        missing = [f for f in FIELDS if not isinstance(row.get(f), str) or not row[f].strip()]
        if missing:
            raise QualitySetError(f"{path}:{n}: missing or empty field(s) {', '.join(missing)}")
        if row["persona"] not in known:
            raise QualitySetError(
                f"{path}:{n}: unknown persona '{row['persona']}'; built-in: {sorted(known)}"
            )
        if any(r["id"] == row["id"] for r in rows):
            raise QualitySetError(f"{path}:{n}: duplicate id {row['id']}")
        rows.append(row)
    return rows


def evaluate_tone(rows: list[dict[str, str]], embed: Embed) -> dict[str, Any]:
    """Per persona and overall: turns, matched, match rate, mean margin; plus the chance level."""
    personas = {p.name: p.description for p in DEFAULT_PERSONAS}
    verdicts = classify([(r["persona"], r["text"]) for r in rows], personas, embed)
    report = by_persona(verdicts, list(personas))
    report["confusion"] = {
        name: {
            other: sum(1 for v in verdicts if v.planned == name and v.predicted == other)
            for other in personas
        }
        for name in personas
    }
    return report


def render_tone(report: dict[str, Any], embedder: str) -> list[str]:
    rate = report["match_rate"]
    out = [
        "",
        f"tone match ({report['turns']} labelled user turns, nearest persona by {embedder}): "
        f"{rate:.3f} (chance {report['chance']:.3f})",
        "  persona                     turns  match  mean margin  most often mistaken for",
    ]
    for r in report["personas"]:
        match = "n/a" if r["match_rate"] is None else f"{r['match_rate']:.2f}"
        margin = "n/a" if r["mean_margin"] is None else f"{r['mean_margin']:+.3f}"
        out.append(
            f"  {r['persona']:<26}{r['turns']:>6}  {match:>5}  {margin:>11}  {r['mistaken_for'] or '-'}"
        )
    return out
