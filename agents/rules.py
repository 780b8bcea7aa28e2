"""Cheap rule checks that run before any LLM judge. Each failure is a named, turn-level reason."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field, field_validator

from teacherforge.agents.schemas import Plan

REFUSAL_PATTERNS = re.compile(
    r"(do(es)? not (cover|contain|mention|include|say|specify|have)|don't (cover|contain|have|know)|"
    r"not (covered|mentioned|included|stated|specified|in the (documents|sources))|no information|"
    r"cannot find|can't find|couldn't find|unable to find|isn't (covered|mentioned)|not able to answer)",
    re.IGNORECASE,
)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
RULES = (
    "structure",
    "empty_turn",
    "length",
    "repetition",
    "thought_missing",
    "citation_not_retrieved",
    "refusal_missing",
    "invented_facts",
    "ungrounded_numbers",
)


class RuleSettings(BaseModel):
    model_config = {"extra": "forbid"}

    min_user_chars: int = 3
    max_user_chars: int = 600
    min_assistant_chars: int = 10
    max_assistant_chars: int = 1200
    ngram: int = Field(default=4, ge=2)
    max_repeated_ngram_share: float = Field(default=0.35, gt=0, le=1)
    check_numbers: bool = True
    advisory: list[str] = Field(
        default_factory=list,
        description="Rules recorded but not blocking (e.g. for a tiny local model); names as in RULES.",
    )

    @field_validator("advisory")
    @classmethod
    def _known_rules(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule name(s) {unknown}; known: {', '.join(RULES)}")
        return names


class RuleFailure(BaseModel):
    rule: str
    turn_index: int | None = None
    detail: str
    advisory: bool = False


def blocking(failures: list[RuleFailure]) -> list[RuleFailure]:
    return [f for f in failures if not f.advisory]


def _repeated_share(text: str, n: int) -> float:
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 4:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values() if c > 1) / len(grams)


def _numbers(text: str) -> set[str]:
    return {m.replace(",", "") for m in NUMBER.findall(text)}


def check_conversation(
    plan: Plan, turns: list[dict[str, Any]], chunk_text: dict[str, str], settings: RuleSettings | None = None
) -> list[RuleFailure]:
    """Run every rule; ``chunk_text`` maps each chunk id retrieved for this sample to its text."""
    s = settings or RuleSettings()
    failures: list[RuleFailure] = []
    roles = [t["role"] for t in turns]
    expected = ["user", "assistant"] * plan.user_turns
    if roles != expected:
        failures.append(RuleFailure(rule="structure", detail=f"roles {roles} != expected {expected}"))
    seen_contents: set[str] = set()
    user_text = " ".join(t["content"] for t in turns if t["role"] == "user")
    for i, turn in enumerate(turns):
        content = (turn.get("content") or "").strip()
        if not content:
            failures.append(
                RuleFailure(rule="empty_turn", turn_index=i, detail=f"{turn['role']} turn is empty")
            )
            continue
        lo, hi = (
            (s.min_user_chars, s.max_user_chars)
            if turn["role"] == "user"
            else (s.min_assistant_chars, s.max_assistant_chars)
        )
        if not lo <= len(content) <= hi:
            failures.append(
                RuleFailure(rule="length", turn_index=i, detail=f"{len(content)} chars, allowed {lo}-{hi}")
            )
        share = _repeated_share(content, s.ngram)
        if share > s.max_repeated_ngram_share:
            failures.append(
                RuleFailure(rule="repetition", turn_index=i, detail=f"{share:.0%} repeated {s.ngram}-grams")
            )
        if content.lower() in seen_contents:
            failures.append(
                RuleFailure(rule="repetition", turn_index=i, detail="turn repeats an earlier turn")
            )
        seen_contents.add(content.lower())
        if turn["role"] == "assistant":
            failures.extend(_assistant_rules(plan, i, turn, chunk_text, user_text, s))
    for failure in failures:
        failure.advisory = failure.rule in s.advisory
    return failures


def _assistant_rules(
    plan: Plan, i: int, turn: dict[str, Any], chunk_text: dict[str, str], user_text: str, s: RuleSettings
) -> list[RuleFailure]:
    failures: list[RuleFailure] = []
    if not (turn.get("thought") or "").strip():
        failures.append(
            RuleFailure(rule="thought_missing", turn_index=i, detail="assistant turn has no thought")
        )
    retrieved = set(turn.get("retrieved_chunk_ids") or [])
    unknown = [c for c in turn.get("cited_chunk_ids") or [] if c not in retrieved]
    if unknown:
        failures.append(
            RuleFailure(
                rule="citation_not_retrieved", turn_index=i, detail=f"cited {unknown} not in retrieved chunks"
            )
        )
    content = turn["content"]
    refused = bool(REFUSAL_PATTERNS.search(content))
    if plan.technique == "hard_negative" and not refused:
        failures.append(
            RuleFailure(
                rule="refusal_missing", turn_index=i, detail="hard negative answered without refusing"
            )
        )
    if s.check_numbers:
        grounded = _numbers(" ".join(chunk_text.get(c, "") for c in retrieved)) | _numbers(user_text)
        invented = sorted(_numbers(content) - grounded)
        if invented:
            rule = "invented_facts" if plan.technique == "hard_negative" else "ungrounded_numbers"
            failures.append(
                RuleFailure(
                    rule=rule, turn_index=i, detail=f"numbers not in retrieved chunks: {invented[:5]}"
                )
            )
    return failures
