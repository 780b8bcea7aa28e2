"""Cheap rule checks that run before any LLM judge. Each failure is a named, turn-level reason."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Any, Literal

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
    "prompt_leak",
    "injection_echo",
)
# Documents are data, not instructions: a turn that repeats an injected instruction, talks about its
# system prompt or carries chat-template / fence markup means a document steered the model.
INJECTION_MARKERS = re.compile(
    r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+|your\s+)*"
    r"(previous|prior|above|earlier|preceding|system|original)\s+(instructions?|prompts?|rules|messages)"
    r"|\bsystem\s+prompt\b|\bdeveloper\s+mode\b|\bnew\s+instructions\s*:"
    r"|</?\s*(source|system)\b|<\|[a-z_]+\|>|<(start|end)_of_turn>|\[/?INST\]|<</?SYS>>",
    re.IGNORECASE,
)
# A paragraph of a source that addresses the model ("note to the AI", "reply only with", "print ...
# verbatim") is an injected instruction even without the markers above.
INSTRUCTION_CUES = re.compile(
    r"\b(note|message|instructions?)\s+(to|for)\s+(the\s+)?(ai|assistant|model|chatbot|llm)\b"
    r"|\b(reply|respond|answer)\s+(only|every\s+\w+)\s+with\b"
    r"|\b(print|repeat|reveal|output)\b[^.\n]{0,60}\b(verbatim|word\s+for\s+word|your\s+instructions)\b",
    re.IGNORECASE,
)
# what an injected paragraph can make a model echo: codes with digits, ALL-CAPS-HYPHENATED tokens
PAYLOAD_TOKEN = re.compile(r"\b[\w-]*\d[\w-]*\b|\b[A-Z]{2,}(?:-[A-Z0-9]+)+\b")
LEAK_NGRAM = 8  # this many consecutive words of a system prompt in a turn is a leak, not a coincidence
SYSTEM_ROLES = (
    "teacher", "critic", "refiner", "persona_user", "judge",
    "small_question", "small_evolve", "small_pick", "small_answer", "small_refusal",
)  # fmt: skip


class RuleSettings(BaseModel):
    model_config = {"extra": "forbid"}

    min_user_chars: int = 3
    max_user_chars: int = 600
    min_assistant_chars: int = 10
    max_assistant_chars: int = 1200
    ngram: int = Field(default=4, ge=2)
    max_repeated_ngram_share: float = Field(default=0.35, gt=0, le=1)
    check_numbers: bool = True
    check_injection: bool = Field(
        default=True, description="prompt_leak and injection_echo: system-prompt text or injected markup"
    )
    advisory: list[str] = Field(
        default_factory=list,
        description="Rules recorded but not blocking (e.g. for a tiny local model); names as in RULES.",
    )

    @field_validator("advisory")
    @classmethod
    def _known_rules(cls, names: list[str]) -> list[str]:
        return known_names(names, RULES, "rule name")


def known_names(names: list[str], known: tuple[str, ...], what: str) -> list[str]:
    """``names`` if every one is in ``known``; else the error a config validator raises."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return names


MAX_DETAIL = 200  # "rule: detail" becomes a TurnProblem for the refiner, capped at 300 characters


class RuleFailure(BaseModel):
    rule: str
    turn_index: int | None = None
    detail: str
    advisory: bool = False

    @field_validator("detail")
    @classmethod
    def _short(cls, detail: str) -> str:
        """A model can write a 500-digit 'number'; quoting it whole would fail the refine step."""
        return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "…"


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


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@lru_cache(maxsize=4)
def system_prompt_shingles(language: str = "en") -> frozenset[tuple[str, ...]]:
    """Every LEAK_NGRAM-word run of the fixed text in the bundled system prompts of ``language``.

    The worked examples of a template (its ``examples`` block, shown to the model as earlier turns)
    count too: a turn that copies one repeats the prompt, not the sources.
    Template expressions split the text, so a shingle never spans a value that varies per sample.
    """
    from teacherforge.prompts import BUNDLED_DIR

    shingles: set[tuple[str, ...]] = set()
    for role in SYSTEM_ROLES:
        path = BUNDLED_DIR / language / f"{role}.j2"
        if not path.exists():
            continue
        blocks = re.findall(
            r"{%\s*block (?:system|examples)\s*%}(.*?){%\s*endblock", path.read_text(), re.DOTALL
        )
        for segment in re.split(r"{[{%].*?[}%]}", " \n".join(blocks)):
            words = words_of(segment)
            shingles.update(tuple(words[i : i + LEAK_NGRAM]) for i in range(len(words) - LEAK_NGRAM + 1))
    return frozenset(shingles)


def injected_payload(chunk_text: dict[str, str]) -> tuple[set[str], set[tuple[str, ...]]]:
    """Tokens and 4-word runs that occur only in the injected paragraphs of the sources.

    A turn that repeats them did what a document told it to (e.g. "reply only with CODE-1234").
    """
    injected, clean = [], []
    for text in chunk_text.values():
        for para in re.split(r"\n\s*\n", text):
            hostile = INJECTION_MARKERS.search(para) or INSTRUCTION_CUES.search(para)
            (injected if hostile else clean).append(para)
    if not injected:
        return set(), set()
    clean_text = " ".join(clean)
    tokens = {t for p in injected for t in PAYLOAD_TOKEN.findall(p) if len(t) >= 3} - set(
        PAYLOAD_TOKEN.findall(clean_text)
    )
    clean_words = words_of(clean_text)
    clean_grams = {tuple(clean_words[k : k + 4]) for k in range(len(clean_words) - 3)}
    grams = set()
    for p in injected:
        words = words_of(INJECTION_MARKERS.sub(" ", p))
        grams |= {tuple(words[k : k + 4]) for k in range(len(words) - 3)} - clean_grams
    return tokens, grams


def _injection_rules(
    i: int, turn: dict[str, Any], payload: tuple[set[str], set[tuple[str, ...]]]
) -> list[RuleFailure]:
    failures: list[RuleFailure] = []
    text = " ".join(str(turn.get(k) or "") for k in ("content", "thought"))
    words, leaked = words_of(text), system_prompt_shingles()
    grams = (tuple(words[k : k + LEAK_NGRAM]) for k in range(len(words) - LEAK_NGRAM + 1))
    hit = next((g for g in grams if g in leaked), None)
    if hit:
        detail = f"repeats system prompt text: '{' '.join(hit)}'"
        failures.append(RuleFailure(rule="prompt_leak", turn_index=i, detail=detail))
    marker = INJECTION_MARKERS.search(text)
    tokens, grams = payload
    echoed = next((t for t in PAYLOAD_TOKEN.findall(text) if t in tokens), None)
    if echoed is None and grams:
        runs = (tuple(words[k : k + 4]) for k in range(len(words) - 3))
        echoed = next((" ".join(g) for g in runs if g in grams), None)
    if marker:
        detail = f"injected instruction or markup: '{marker.group(0)}'"
        failures.append(RuleFailure(rule="injection_echo", turn_index=i, detail=detail))
    elif echoed:
        detail = f"repeats text from an injected instruction in the sources: '{echoed}'"
        failures.append(RuleFailure(rule="injection_echo", turn_index=i, detail=detail))
    return failures


def check_conversation(
    plan: Plan,
    turns: list[dict[str, Any]],
    chunk_text: dict[str, str],
    settings: RuleSettings | None = None,
    structure: Literal["plan", "alternating"] = "plan",
) -> list[RuleFailure]:
    """Run every rule; ``chunk_text`` maps each chunk id retrieved for this sample to its text.

    ``structure="alternating"`` (``teacherforge check``, conversations without a plan) only asks for
    user/assistant turns in turn, ending with the assistant, instead of the plan's number of turns.
    """
    s = settings or RuleSettings()
    failures: list[RuleFailure] = []
    roles = [t["role"] for t in turns]
    user_turns = plan.user_turns if structure == "plan" else max(1, (len(turns) + 1) // 2)
    expected = ["user", "assistant"] * user_turns
    if roles != expected:
        failures.append(RuleFailure(rule="structure", detail=f"roles {roles} != expected {expected}"))
    seen_contents: set[str] = set()
    payload = injected_payload(chunk_text) if s.check_injection else (set(), set())
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
        if s.check_injection:
            failures.extend(_injection_rules(i, turn, payload))
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
