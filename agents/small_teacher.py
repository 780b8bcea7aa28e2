"""The small-model profile: a teacher and a persona-user a 135M model can play, one short object per call.

Why: SmolLM2-135M cannot write one JSON object holding reasoning, verbatim quotes, chunk ids and a
reply (it wrote ids in the reply and quotes that were never in a chunk), nor invent a question from
a page of sources. It can ask for a figure cut out of one sentence and restate one sentence. So each
turn is split into those steps, and the code does the rest:

1. **question** (``small_question.j2``): the code picks a sentence with a figure and cuts the
   figure out ("Pay the [how much?] housing deposit"); the model asks for it, in the persona's voice
   (the examples carry the voice). The tier's Evol-Instruct operators follow as short rewrites
   (``small_evolve.j2``) where a 135M model can do them; the others are recorded as skipped.
2. **evidence**: the code splits the chunks retrieved for the question into sentences and ranks
   them by shared words; the best one is the evidence (``pick: overlap``), or the model picks 1-2
   numbers of the first few (``pick: model``, ``small_pick.j2``; measured worse, docs/quality.md).
3. **answer** (``small_answer.j2``): the model answers from the evidence only. The code quotes it
   verbatim as ``evidence`` (so every quote is real and every id retrieved) and builds the hidden
   ``thought`` from it.

Every reply is checked before it is used (agents/small_checks.py) and a rejected one is asked
again with a new seed: a question must be a question about its sentence; an answer must pass the
verifier on its own turn (stricter: figures from its evidence only) and stay on its facts. The gate
after the conversation is the same as in the standard profile; these checks only make it likelier
that a turn passes it. ``small_checks.roundtrip_problem`` then asks whether the answer states the
figure its question asked for (graph/small_nodes.py discards the exchange if not).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import LLMCallFailed, LLMCallRecord
from teacherforge.agents.schemas import MAX_PICKABLE, Plan, SmallAnswer, SmallPick, SmallQuestion
from teacherforge.agents.sentences import Fact, Sentence, gaps, ranked, split_chunks
from teacherforge.agents.small_checks import (
    answer_checker,
    pick_checker,
    question_checker,
    refusal_checker,
    rewrite_checker,
)
from teacherforge.agents.verifier import VerifierSettings

SMALL_CRITIC = "none (small profile: verifier + rules)"
Step = Literal["question", "evolve", "pick", "answer", "refusal"]

# The planner's operators (agents/planner.py) as rewrites a 135M model follows; None: skipped, why.
EVOL_REWRITES: dict[str, str | None] = {
    "add a constraint (budget, deadline or eligibility condition)": "constraint",
    "concretize with the person's own specific situation": "situation",
    "deepen: ask why or what happens if": None,
    "require multi-step reasoning across two facts": None,
    "vague wording with implied intent": "vague",
    "a few misspellings and no punctuation": "code",
    "rumour-based premise that may be wrong": None,
    "mixes two questions in one run-on sentence": None,
}
WHY_SKIPPED = {
    "deepen: ask why or what happens if": "a why or what-if question is seldom answered by one sentence",
    "require multi-step reasoning across two facts": "the question is grown from one sentence",
    "rumour-based premise that may be wrong": "a 135M teacher repeats a wrong premise, not correcting it",
    "mixes two questions in one run-on sentence": "the answer is written from the sentences of one question",
}


class SmallSettings(BaseModel):
    """Bounds of the small-model profile (``small:`` in run.yaml); docs/quality.md has the figures."""

    model_config = {"extra": "forbid"}

    max_tokens: dict[Step, int] = Field(
        default_factory=lambda: {"question": 60, "evolve": 70, "pick": 30, "answer": 160, "refusal": 80},
        description="Per step: each reply is one short JSON object, so these end a runaway reply early.",
    )
    temperature: float = Field(default=0.3, ge=0, le=2, description="Lower than the standard 0.7.")
    attempts: dict[Step, int] = Field(
        default_factory=lambda: {"question": 3, "evolve": 2, "pick": 2, "answer": 2, "refusal": 3},
        description="Attempts per step, each with a new seed (a rejected reply is asked again).",
    )
    sentences: int = Field(default=5, ge=2, le=MAX_PICKABLE, description="Sentences the model picks from.")
    pick: Literal["overlap", "model"] = Field(
        default="overlap",
        description="overlap: the best-ranked sentence is the evidence; model: the model picks 1-2 of the "
        "listed sentences (measured worse on SmolLM2-135M, docs/quality.md).",
    )
    hard_negatives: Literal["refuse", "off"] = Field(
        default="refuse",
        description="refuse: the model writes the refusal and the gate checks it; off: no hard negatives.",
    )


@dataclass
class Grown:
    """A user question and how it came to be (recorded with the turn)."""

    question: str
    fact: Fact | None
    topic: str | None = None
    applied: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    calls: list[LLMCallRecord] = field(default_factory=list)

    def origin(self) -> dict[str, Any]:
        """The ``grown_from`` of a user ``turn.added``: the sentence or topic, and the operators."""
        source: dict[str, Any] = {"topic": self.topic} if self.topic else {}
        if self.fact is not None:
            source = {"chunk_id": self.fact.sentence.chunk_id, "sentence": self.fact.sentence.quote}
            source["asks_for"] = self.fact.gap.span if self.fact.gap else None
        return {**source, "evol_applied": self.applied, "evol_skipped": self.skipped}


@dataclass
class SmallTurn:
    """An assistant turn as the small profile builds it, plus how its evidence was chosen."""

    content: str
    thought: str
    evidence: list[dict[str, str]]
    shown: int  # sentences listed for the pick
    picked: list[int]  # 1-based numbers in that list
    picked_by: str  # "overlap" (the code's ranking) or "model"
    calls: list[LLMCallRecord] = field(default_factory=list)

    def extraction(self) -> dict[str, Any]:
        return {"shown": self.shown, "picked": self.picked, "picked_by": self.picked_by}


# --- the steps ------------------------------------------------------------------------------------


def fact_candidates(chunks: Sequence[dict[str, Any]], used: Sequence[str]) -> list[Sentence]:
    """Sentences a question can grow from: not used yet, of a readable length, figures first.

    Why figures first: a sentence with an amount, a date or a percentage states a checkable fact,
    and the verifier can then tell a grounded answer from an invented one.
    """
    seen = set(used)
    pool = [
        s
        for s in split_chunks(chunks)
        if s.quote not in seen and 30 <= len(s.text) <= 260 and not CONTACT.search(s.text)
    ]
    return sorted(pool, key=lambda s: not gaps(s))


# Contact lines (e-mail, telephone, web, opening hours) make poor questions and worse answers: a
# 135M model mangles addresses ("northvale.example.edu.com") and clock times.
CONTACT = re.compile(
    r"@|\bhttps?://|www\.|\btelephone\b|\bphone\b|\b\d{3}-\d{4}\b|\b\d{1,2}:\d{2}\b|\.{4,}", re.I
)  # and dot leaders of a plain-text table ("Before the first day ...... 100%")


def choose_fact(candidates: Sequence[Sentence], rng: random.Random) -> Fact | None:
    """A candidate with a figure a question can ask for, and that figure; None when none has one.

    Why only those: round-trip consistency is only checkable on a figure. Grown from a sentence
    without one, the 135M pairs were vague ("The minimum requirements must meet the requirements.")
    or invented a count in words ("twice") that no check sees.
    """
    with_gap = [s for s in candidates if gaps(s)]
    if not with_gap:
        return None
    sentence = rng.choice(with_gap)
    return Fact(sentence, rng.choice(gaps(sentence)))


async def _ask(
    ctx: AgentContext,
    role: str,
    schema: type,
    prompt: Any,
    seed: int,
    check: Callable,
    settings: SmallSettings,
    step: Step,
) -> Any:
    return await ctx.generator.call(
        role,
        schema,
        prompt,
        seed=seed,
        validate=check,
        max_tokens=settings.max_tokens.get(step),
        temperature=settings.temperature,
        reseed=True,
        attempts=settings.attempts.get(step),
    )


def misspell(text: str, rng: random.Random) -> str:
    """The edge tier's "a few misspellings and no punctuation", done by the code (reliably).

    Two letters swapped inside two longer words, sentence punctuation dropped, no capital at the
    start; figures are left alone, so the gate judges the same amounts.
    """
    words = text.split()
    long_words = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
    for i in rng.sample(long_words, k=min(2, len(long_words))):
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    out = re.sub(r"[?!.;:](?!\d)|,(?!\d)", "", " ".join(words))
    return out[:1].lower() + out[1:]


async def grow_question(
    ctx: AgentContext,
    plan: Plan,
    fact: Fact | None,
    earlier: Sequence[str],
    seed: int,
    settings: SmallSettings,
) -> Grown:
    """The user's question from ``fact`` (or, for a hard negative, the plan's topic), then the operators.

    Raises LLMCallFailed when no attempt gave a usable question; an operator whose rewrites all
    fail is recorded as skipped and the question stays as it was.
    """
    topic = plan.hard_negative_topic if fact is None else None
    source = fact.sentence.text if fact is not None else topic or ""
    allowed = fact.shown if fact is not None else ""
    shown = fact.shown if fact is not None else None
    gap = fact.gap if fact is not None else None
    prompt = ctx.prompts.render("small_question", plan=plan, fact=shown, gap=gap is not None, topic=topic)
    result = await _ask(
        ctx,
        "persona_user",
        SmallQuestion,
        prompt,
        seed,
        question_checker(source, earlier, allowed, gap),
        settings,
        "question",
    )
    grown = Grown(result.output.question, fact, topic, calls=list(result.calls))
    rng = random.Random(seed)
    for k, operator in enumerate([*plan.evol_operators, *plan.edge_noise]):
        rewrite = EVOL_REWRITES.get(operator)
        if rewrite is None:
            grown.skipped.append(
                {"operator": operator, "why": WHY_SKIPPED.get(operator, "not in this profile")}
            )
        elif rewrite == "code":
            grown.question = misspell(grown.question, rng)
            grown.applied.append(operator)
        else:
            prompt = ctx.prompts.render("small_evolve", plan=plan, operator=rewrite, question=grown.question)
            check = rewrite_checker(grown.question, source, earlier, rewrite, allowed, gap)
            try:
                result = await _ask(ctx, "persona_user", SmallQuestion, prompt, seed + 101 * (k + 1), check,
                                    settings, "evolve")  # fmt: skip
            except LLMCallFailed as exc:
                grown.calls += exc.calls
                why = f"no rewrite passed the checks ({exc.calls[-1].error if exc.calls else 'no attempt'})"
                grown.skipped.append({"operator": operator, "why": why[:200]})
                continue
            grown.calls += result.calls
            grown.question = result.output.question
            grown.applied.append(operator)
    return grown


def build_thought(question: str, picked: Sequence[Sentence]) -> str:
    """The hidden reasoning, written by the code from the evidence (the model wrote none of it).

    How the evidence was chosen is recorded with the turn (``extraction``), not told to a student.
    """
    cited = "; ".join(f'[{s.chunk_id}] "{s.text[:220]}"' for s in picked)
    return f'The question: "{question[:200]}". The retrieved sources answer it in: {cited}. Reply from these.'


def refusal_thought(question: str, topic: str | None) -> str:
    about = f" about {topic}" if topic else ""
    return (
        f'The question: "{question[:200]}". It is{about}, which the documents do not cover, so the reply '
        "says so and states no facts."
    )


async def answer_turn(
    ctx: AgentContext,
    plan: Plan,
    question: str,
    chunks: Sequence[dict[str, Any]],
    user_text: str,
    earlier_quotes: Sequence[str],
    seed: int,
    settings: SmallSettings,
    verifier_settings: VerifierSettings | None = None,
    exclude: Sequence[str] = (),
) -> SmallTurn:
    """One assistant turn: pick sentences of ``chunks`` (retrieved for ``question``), then answer from them.

    A hard negative gets a refusal instead. Raises LLMCallFailed when the answer (or refusal) never
    passes its checks; a pick that never does falls back to the best-ranked sentence, and says so.
    ``exclude`` holds quotes an earlier answer to this question rested on, when that answer was
    discarded: the list is made without them, so the next try rests on other sentences.
    """
    if plan.technique == "hard_negative":
        prompt = ctx.prompts.render("small_refusal", question=question)
        check = refusal_checker(user_text, verifier_settings)
        result = await _ask(ctx, "teacher", SmallAnswer, prompt, seed, check, settings, "refusal")
        thought = refusal_thought(question, plan.hard_negative_topic)
        return SmallTurn(result.output.answer, thought, [], 0, [], "none (refusal)", list(result.calls))
    candidates = [s for s in split_chunks(chunks) if s.quote not in set(exclude)]
    listed = ranked(question, candidates, settings.sentences)
    if not listed:
        raise ValueError("the chunks retrieved for the question hold no sentence to answer from")
    calls: list[LLMCallRecord] = []
    numbers, picked_by = [1], "overlap"
    if settings.pick == "model":
        prompt = ctx.prompts.render("small_pick", question=question, sentences=[s.text for s in listed])
        try:
            check = pick_checker(question, listed)
            pick = await _ask(ctx, "teacher", SmallPick, prompt, seed, check, settings, "pick")
            calls += pick.calls
            numbers, picked_by = pick.output.sentences, "model"
        except LLMCallFailed as exc:
            calls += exc.calls
            picked_by = "overlap (no pick of the model was on the question)"
    picked = [listed[n - 1] for n in numbers]
    retrieved = {c["chunk_id"]: c["text"] for c in chunks}
    prompt = ctx.prompts.render("small_answer", question=question, facts=[s.text for s in picked])
    check = answer_checker(question, picked, retrieved, user_text, earlier_quotes, verifier_settings)
    result = await _ask(ctx, "teacher", SmallAnswer, prompt, seed + 1, check, settings, "answer")
    calls += result.calls
    evidence = [{"chunk_id": s.chunk_id, "quote": s.quote} for s in picked]
    thought = build_thought(question, picked)
    return SmallTurn(result.output.answer, thought, evidence, len(listed), numbers, picked_by, calls)
