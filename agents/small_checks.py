"""Checks on each reply of the small-model profile (agents/small_teacher.py), before it is used.

Why: a 135M model's reply is often not what was asked for (a statement instead of a question, the
figure written into the question, an answer about something else). Each step's reply goes through
its checker (``StructuredLLM.call(validate=...)``); a ``ValueError`` asks again with a new seed, and
its message is recorded as the attempt's error. :func:`roundtrip_problem` checks a finished
exchange: does the answer state what its question was grown from?
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from teacherforge.agents import verifier
from teacherforge.agents.rules import REFUSAL_PATTERNS
from teacherforge.agents.schemas import SmallAnswer, SmallPick, SmallQuestion
from teacherforge.agents.sentences import Fact, Gap, Sentence, content_words
from teacherforge.agents.verifier import VerifierSettings, figures, leaked_markup

MAX_REPEATED_SHARE = 0.3
ASKS_FOR_FIGURE = re.compile(
    r"\b(?:how (?:much|many|long|often)|when|what (?:time|date|day|percentage)|deadline|cost|price|fee)\b",
    re.I,
)
MAX_UNKNOWN_SHARE = 0.3


def _repeated_share(text: str, n: int = 4) -> float:
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if len(grams) >= 4 else 0.0


def _common_checks(text: str, earlier: Sequence[str]) -> None:
    """What any question must be: a question, new, without markup, not repeating itself."""
    if not text.endswith("?"):
        raise ValueError("not a question: it does not end with '?'")
    if len(text) < 12:
        raise ValueError("too short to be a question")
    if text.lower() in {e.lower() for e in earlier}:
        raise ValueError("repeats an earlier question")
    if leaked_markup(text):
        raise ValueError(f"shows prompt markup: {leaked_markup(text)[0]!r}")
    if _repeated_share(text) > 0:
        raise ValueError("repeats itself")


def question_checker(
    source: str, earlier: Sequence[str], allowed: str = "", gap: Gap | None = None
) -> Callable[[SmallQuestion], SmallQuestion]:
    """A question about ``source`` (a sentence or a topic): shares its words, names what a counted
    gap counts ("how many days" for "[how many?] credits" is another question), and states no
    figure but those in ``allowed`` (the sentence with its gap: the figure asked for never is)."""

    def check(reply: SmallQuestion) -> SmallQuestion:
        text = " ".join(reply.question.split())
        _common_checks(text, earlier)
        words = content_words(source)
        need = 1 if len(words) <= 3 else 2
        shared = content_words(text) & words
        if len(shared) < need:
            raise ValueError(
                f"shares {len(shared)} word(s) with the sentence it should ask about, not {need}"
            )
        _asks_without_giving(text, allowed, gap, "does not ask")
        return SmallQuestion(question=text)

    return check


def _asks_without_giving(text: str, allowed: str, gap: Gap | None, lacking: str) -> None:
    """A question states none of the figures it should ask for and names what its sentence counts."""
    if stated := _stated_figures(text, allowed):
        raise ValueError(f"states a figure ({stated[0]!r}): the question must ask for it, not give it")
    if gap is not None and not gap.named_in(text):
        raise ValueError(f"{lacking} about the {gap.unit} its sentence counts")


def _stated_figures(text: str, allowed: str = "") -> list[str]:
    """Figures in a question, except years ("Summer Session 2027" names a thing) and ``allowed`` ones.

    Why: a question grown from "Pay the $250 housing deposit" that says "$250" gives its answer
    away, and one that adds "$150" brings a premise the sources never stated.
    """
    ok = {(f.kind, f.value) for f in figures(allowed)}
    return [
        f.span
        for f in figures(text)
        if not (f.kind == "number" and YEAR.fullmatch(f.value)) and (f.kind, f.value) not in ok
    ]


YEAR = re.compile(r"(?:19|20)\d\d")


def rewrite_checker(
    question: str,
    source: str,
    earlier: Sequence[str],
    operator: str,
    allowed: str = "",
    gap: Gap | None = None,
) -> Callable[[SmallQuestion], SmallQuestion]:
    """A rewrite keeps its question: every word it shares with its sentence (the vague one: one of
    them) and most of its other words; and it states no figure."""

    def check(reply: SmallQuestion) -> SmallQuestion:
        text = " ".join(reply.question.split())
        _common_checks(text, [*earlier, question])
        before, now = content_words(question), content_words(text)
        anchored = before & content_words(source)
        if operator == "vague":
            if anchored and not now & anchored:
                raise ValueError("lost the topic of the question")
        elif anchored - now:
            raise ValueError(
                f"dropped {sorted(anchored - now)[0]!r}, a word the question shares with its sentence"
            )
        elif len(now & before) < max(1, round(0.6 * len(before))):
            raise ValueError(f"kept {len(now & before)} of the {len(before)} words of the question")
        _asks_without_giving(text, allowed, gap, "no longer asks")
        return SmallQuestion(question=text)

    return check


def pick_checker(question: str, sentences: Sequence[Sentence]) -> Callable[[SmallPick], SmallPick]:
    """Picks in range, each once, and on the question: a pick sharing no word with it is dropped."""

    def check(reply: SmallPick) -> SmallPick:
        if any(not 1 <= n <= len(sentences) for n in reply.sentences):
            raise ValueError(f"picked {reply.sentences}, but only 1-{len(sentences)} were listed")
        asked = content_words(question)
        kept = [n for n in dict.fromkeys(reply.sentences) if content_words(sentences[n - 1].text) & asked]
        if not kept:
            raise ValueError(f"picked {reply.sentences}: none shares a word with the question")
        return SmallPick(sentences=kept)

    return check


def stray_sentence(answer: str, known: str) -> str | None:
    """The first sentence of ``answer`` whose words are mostly not in ``known`` (facts and question).

    Why: a small model adds a clause from its examples ("You can buy it at the Security Office");
    the verifier only sees figures, so a made-up office would pass it.
    """
    have = content_words(known)
    for sentence in re.split(r"(?<=[.!?])\s+", answer):
        words = content_words(sentence)
        if len(words) >= 3 and len(words - have) / len(words) > MAX_UNKNOWN_SHARE:
            return sentence
    return None


def answer_checker(
    question: str,
    picked: Sequence[Sentence],
    retrieved_text: dict[str, str],
    user_text: str,
    earlier_quotes: Sequence[str],
    settings: VerifierSettings | None,
) -> Callable[[SmallAnswer], SmallAnswer]:
    """The verifier on this one turn, stricter than the gate: every figure must be in the picked
    sentences (``figures_in: evidence``), not just somewhere in the retrieved chunks, because the
    answer is meant to say what they say. Plus: no refusal, no sentence its facts do not support."""
    evidence = [{"chunk_id": s.chunk_id, "quote": s.quote} for s in picked]
    strict = (settings or VerifierSettings()).model_copy(update={"figures_in": "evidence"})

    def check(reply: SmallAnswer) -> SmallAnswer:
        text = " ".join(reply.answer.split())
        if len(text) < 10:
            raise ValueError("too short")
        if REFUSAL_PATTERNS.search(text):
            raise ValueError("refuses although the picked sentences answer the question")
        if ASKS_FOR_FIGURE.search(question) and not figures(text) and any(s.has_figure for s in picked):
            raise ValueError("the question asks for a figure and the answer gives none")
        if _repeated_share(text) > MAX_REPEATED_SHARE:
            raise ValueError("repeats itself")
        turn = {"role": "assistant", "content": text, "evidence": evidence}
        found = verifier.blocking(
            verifier.verify_turn(0, turn, retrieved_text, user_text, strict, earlier_quotes)
        )
        if found:
            raise ValueError(found[0].problem())
        stray = stray_sentence(text, " ".join([question, *(s.text for s in picked)]))
        if stray:
            raise ValueError(f"says what its facts do not: {stray[:80]!r}")
        if any(s.is_row and verifier.folded(s.text).rstrip(".") in verifier.folded(text) for s in picked):
            raise ValueError("copies a table row instead of answering")
        return SmallAnswer(answer=text)

    return check


def refusal_checker(question: str, settings: VerifierSettings | None) -> Callable[[SmallAnswer], SmallAnswer]:
    """Refusal wording, and no figure the question does not contain (the gate's checks on a refusal)."""

    def check(reply: SmallAnswer) -> SmallAnswer:
        text = " ".join(reply.answer.split())
        if not REFUSAL_PATTERNS.search(text):
            raise ValueError("does not say the documents do not cover it")
        found = verifier.blocking(verifier.verify_turn(0, {"content": text}, {}, question, settings))
        if found:
            raise ValueError(found[0].problem())
        return SmallAnswer(answer=text)

    return check


def roundtrip_problem(fact: Fact, content: str, evidence: Sequence[dict[str, str]]) -> str | None:
    """Round-trip consistency: does the answer say what the question was grown from?

    The question asked for the gap of ``fact``; the teacher answered it from its own retrieval and
    picks, without seeing ``fact``. A sound pair answers with exactly that figure; for a sentence
    without one, the answer quotes it or shares most of its words.
    Why: the gate checks that an answer is grounded, not that it answers its question; a 135M pair
    that fails this is usually a question and an answer about different things.
    """
    gap = fact.gap
    if gap is not None:
        stated = {(f.kind, f.value) for f in figures(content)}
        if (gap.kind, gap.value) not in stated or (gap.year and ("number", gap.year) not in stated):
            return f"the answer does not state {gap.span!r}, the figure its question asks for"
        if not gap.named_in(content):
            return f"the answer does not say what {gap.span!r} counts ({gap.unit})"
        return None
    if any(e.get("quote") == fact.sentence.quote for e in evidence):
        return None
    words = content_words(fact.sentence.text)
    if words and len(words & content_words(content)) / len(words) >= 0.5:
        return None
    return "the answer neither quotes nor restates the sentence its question was grown from"
