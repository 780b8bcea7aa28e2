"""Answer metrics and their aggregation: similarity to the accepted answer, refusals, ratios.

ROUGE-L is computed here (longest common subsequence over lower-cased word tokens) rather than
pulled in from a package: it is twenty lines and the generation install stays light.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)
REFUSAL = re.compile(
    r"(do(es)? not|don't|doesn't) (cover|mention|say|contain|include|have)|not (covered|mentioned|in the)|"
    r"(can't|cannot|unable to) (answer|find|help)|no information",
    re.IGNORECASE,
)
METRICS = ("judge_score", "judge_correct", "refusal_handling", "cosine", "rouge_l")


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 between two texts."""
    a, b = WORD.findall(candidate.lower()), WORD.findall(reference.lower())
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def cosine_pairs(embed, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine of each candidate with its reference; ``embed`` returns L2-normalised rows."""
    if not candidates:
        return []
    vectors = embed([c or " " for c in candidates] + [r or " " for r in references])
    left, right = vectors[: len(candidates)], vectors[len(candidates) :]
    return [float(x) for x in np.sum(left * right, axis=1)]


def looks_like_refusal(text: str) -> bool:
    """A cheap cross-check of the judge's 'refused' verdict (phrases of 'the documents do not cover')."""
    return bool(REFUSAL.search(text))


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return round(sum(kept) / len(kept), 4) if kept else None


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each metric over per-item rows of one system (judge metrics on answerable items only)."""
    answerable = [r for r in rows if not r["should_refuse"]]
    return {
        "judge_score": _mean(r["score"] for r in answerable),
        "judge_correct": _mean(float(r["verdict"] == "correct") for r in answerable),
        "refusal_handling": _mean(float(r["handled"]) for r in rows),
        "cosine": _mean(r["cosine"] for r in rows),
        "rouge_l": _mean(r["rouge_l"] for r in rows),
        "items": len(rows),
    }


def ratio(student: float | None, teacher: float | None) -> float | None:
    if student is None or teacher is None or teacher == 0:
        return None
    return round(student / teacher, 4)


def summarise(rows: Sequence[dict[str, Any]], systems: Sequence[str], teacher: str = "teacher") -> dict:
    """Per system and per tier: metric means, and each student's ratio to the teacher."""
    by_tier: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_tier[row["tier"]].append(row)
    groups = {"all": list(rows), **{f"tier:{t}": rs for t, rs in sorted(by_tier.items())}}
    out: dict[str, Any] = {}
    for name, group in groups.items():
        means = {s: aggregate([r for r in group if r["system"] == s]) for s in systems}
        ratios = {
            s: {m: ratio(means[s][m], means[teacher][m]) for m in METRICS} for s in systems if s != teacher
        }
        out[name] = {"means": means, "ratio_to_teacher": ratios}
    return out
