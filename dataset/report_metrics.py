"""The numbers of the quality report, computed from ``RunData``: mixes, rates, scores, lengths, diversity.

Every rate says what it is a share *of*, because "acceptance 80%" means little until one knows
whether failed samples count (here: they do; a failed sample is a cost like a rejected one).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from teacherforge.dataset.dedup import DEFAULT_THRESHOLDS, find_duplicates
from teacherforge.dataset.report_data import SCORE_DIMENSIONS, RunData, Sample

_WORD = re.compile(r"\w+", re.UNICODE)
DIMENSIONS = ("tier", "persona", "technique", "category")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Unique n-grams / all n-grams over the texts (Li et al., 2016); None without any n-gram."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        w = words(text)
        grams.extend(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    return len(set(grams)) / len(grams) if grams else None


def mean_pairwise_distance(vectors: np.ndarray) -> float | None:
    """Mean cosine distance over all pairs of (L2-normalised) rows; None for fewer than two rows."""
    n = len(vectors)
    if n < 2:
        return None
    sims = vectors @ vectors.T
    return float(1 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def first_user_turn(sample: Sample) -> str:
    return next((c for r, c in sample.turns if r == "user"), "")


def user_turns(sample: Sample) -> list[str]:
    return [c for r, c in sample.turns if r == "user"]


def diversity(texts: list[str], embed: Callable[[list[str]], np.ndarray] | None) -> dict[str, Any]:
    texts = [t for t in texts if t.strip()]
    result: dict[str, Any] = {
        "n": len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "mean_pairwise_distance": None,
    }
    if embed is not None and len(texts) >= 2:
        result["mean_pairwise_distance"] = mean_pairwise_distance(np.asarray(embed(texts), dtype=np.float32))
    return result


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "p95": None, "max": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "median": float(statistics.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": float(max(values)),
    }


def breakdown(samples: list[Sample], dimension: str) -> list[dict[str, Any]]:
    """Per value of a plan dimension: planned, accepted, rejected, failed, dropped, in dataset."""
    rows: dict[str, Counter] = {}
    for s in samples:
        key = getattr(s, dimension) or "(none)"
        counts = rows.setdefault(key, Counter())
        counts["planned"] += 1
        counts[s.status] += 1
        if s.status == "accepted":
            counts["dropped" if s.dropped else "dataset"] += 1
    out = []
    for key in sorted(rows):
        c = rows[key]
        finished = c["accepted"] + c["rejected"] + c["failed"]
        out.append(
            {
                "value": key,
                **{k: c[k] for k in ("planned", "accepted", "rejected", "failed", "dropped", "dataset")},
                "acceptance": _share(c["accepted"], finished),
            }
        )
    return out


def targets(data: RunData) -> dict[str, dict[str, float]]:
    """The configured mix as shares: tiers from ``tier_mix``; personas round-robin, so uniform;
    techniques from the hard-negative and multi-source rates."""
    plan = data.config.get("plan") or {}
    tier_mix = plan.get("tier_mix") or {"direct": 40, "reasoning": 40, "edge": 20}
    total = sum(tier_mix.values()) or 1
    personas = [p.get("name") for p in plan.get("personas") or [] if p.get("name")]
    hard, multi = plan.get("hard_negative_rate", 0.10), plan.get("multi_source_rate", 0.15)
    return {
        "tier": {k: v / total for k, v in tier_mix.items()},
        "persona": {p: 1 / len(personas) for p in personas} if personas else {},
        "technique": {"standard": max(0.0, 1 - hard - multi), "hard_negative": hard, "multi_source": multi},
    }


def mix(samples: list[Sample], dimension: str) -> dict[str, float]:
    counts = Counter(getattr(s, dimension) or "(none)" for s in samples)
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def mean_scores(samples: list[Sample]) -> dict[str, float | None]:
    scored = [s.scores for s in samples if s.scores]
    return {
        d: (statistics.fmean(v) if (v := [sc[d] for sc in scored if d in sc]) else None)
        for d in SCORE_DIMENSIONS
    }


def lengths(samples: list[Sample]) -> dict[str, dict[str, float | None]]:
    return {
        "words_per_conversation": _stats([sum(len(words(c)) for _, c in s.turns) for s in samples]),
        "turns_per_conversation": _stats([len(s.turns) for s in samples]),
        "words_per_user_turn": _stats([len(words(c)) for s in samples for r, c in s.turns if r == "user"]),
        "words_per_assistant_turn": _stats(
            [len(words(c)) for s in samples for r, c in s.turns if r == "assistant"]
        ),
    }


def token_usage(data: RunData) -> dict[str, Any]:
    calls = sum(r["calls"] for r in data.llm)
    tokens_in = sum(r["tokens_in"] or 0 for r in data.llm)
    tokens_out = sum(r["tokens_out"] or 0 for r in data.llm)
    accepted = sum(s.status == "accepted" for s in data.samples)
    return {
        "calls": calls,
        "reused": sum(r["reused"] or 0 for r in data.llm),
        "errors": sum(r["errors"] or 0 for r in data.llm),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "per_accepted_sample_in": tokens_in / accepted if accepted else None,
        "per_accepted_sample_out": tokens_out / accepted if accepted else None,
    }


def rates(data: RunData) -> dict[str, Any]:
    s = data.samples
    status = Counter(x.status for x in s)
    finished = status["accepted"] + status["rejected"] + status["failed"]
    judged = [x for x in s if x.status in ("accepted", "rejected")]
    hard = [x for x in judged if x.technique == "hard_negative"]
    return {
        "planned": len(s),
        "target": data.target,
        **{k: status[k] for k in ("accepted", "rejected", "failed", "running")},
        "dropped": sum(x.dropped for x in s),
        "dataset": len(data.dataset),
        "acceptance": _share(status["accepted"], finished),
        "revision_rate": _share(sum(x.revisions > 0 for x in judged), len(judged)),
        "accepted_after_revision": _share(
            sum(x.revisions > 0 for x in judged if x.status == "accepted"), status["accepted"]
        ),
        "mean_revisions": statistics.fmean([x.revisions for x in judged]) if judged else None,
        "hard_negatives": len(hard),
        "hard_negative_refusal_rate": _share(sum(x.status == "accepted" for x in hard), len(hard)),
    }


def near_duplicate_rate(data: RunData) -> dict[str, Any]:
    """Recorded dedup drops, and a fresh estimate (exact + MinHash on first user turns over all
    accepted samples), so the card shows the rate even when ``dedup`` was never run."""
    accepted = [s for s in data.samples if s.status == "accepted"]
    threshold = DEFAULT_THRESHOLDS["minhash"]
    found = find_duplicates([first_user_turn(s) for s in accepted], "minhash", threshold)
    return {
        "accepted": len(accepted),
        "recorded_drops": len(data.drops),
        "recorded_rate": _share(len(data.drops), len(accepted)),
        "passes": data.dedup_passes,
        "estimated_duplicates": len(found),
        "estimated_rate": _share(len(found), len(accepted)),
        "estimate_method": f"exact + MinHash Jaccard >= {threshold} on first user turns",
    }


def revisions_by_tier(samples: list[Sample]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for s in samples:
        if s.status in ("accepted", "rejected"):
            out.setdefault(s.tier or "(none)", Counter())[s.revisions] += 1
    return out
