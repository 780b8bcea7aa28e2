"""The deterministic verifier: checks every assistant turn against the text it claims to rest on.

Pure string work, no model and no I/O, so it runs on every turn of every revision for free and
judges the same way in a run and in ``teacherforge check``. Each failure names the exact span that
is wrong (a quote, a figure, a marker), because the refiner is asked to fix that span and a person
reading ``verify.checked`` should see it without re-reading the conversation.

Checks, each one a name in :data:`CHECKS`:

- ``quote_not_in_chunk``: an evidence quote is not a verbatim span of the chunk it names (after
  folding whitespace and case), or that chunk was not retrieved for the turn.
- ``unsupported_figure``: a number, amount, date or percentage in the reply is in no verified quote
  (of this or an earlier answer), in no chunk retrieved for the turn, not in what the user wrote,
  and not simple arithmetic on such figures (a total, 25% of a fee).
- ``no_evidence``: an answer (not a refusal) carries no evidence at all.
- ``refusal_with_figures``: a refusal states figures the user's questions did not contain.
- ``leaked_markup``: the reply shows chunk ids, bracket citations, source fences or prompt/template
  text that belongs to the prompt, not to what a user should read.

A refusal is a reply with refusal wording (agents/rules.py ``REFUSAL_PATTERNS``) and no evidence:
"tuition does not include housing, which costs $3,150" quotes its source and is judged as an answer.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from teacherforge.agents.rules import REFUSAL_PATTERNS, known_names
from teacherforge.agents.schemas import MAX_PROBLEM_CHARS
from teacherforge.prompts import fence

CHECKS = (
    "quote_not_in_chunk",
    "unsupported_figure",
    "no_evidence",
    "refusal_with_figures",
    "leaked_markup",
)
MAX_SPAN = 160  # a span and its detail must fit the refiner's 300-character TurnProblem
MAX_DETAIL = 120


class VerifierSettings(BaseModel):
    """Which checks block a sample; an advisory check is recorded in ``verify.checked`` only."""

    model_config = {"extra": "forbid"}

    advisory: list[str] = Field(
        default_factory=list,
        description="Checks recorded but not blocking (e.g. no_evidence for a tiny local model).",
    )
    figures_in: Literal["retrieved", "evidence"] = Field(
        default="retrieved",
        description="Where a figure must occur: the turn's quotes or retrieved chunks, or only the quotes.",
    )
    derived_figures: bool = Field(
        default=True,
        description="Accept a figure computed from supported ones (a total, a percentage of a fee).",
    )

    @field_validator("advisory")
    @classmethod
    def _known_checks(cls, names: list[str]) -> list[str]:
        return known_names(names, CHECKS, "verifier check")


class VerifierFailure(BaseModel):
    check: str
    turn_index: int
    span: str
    detail: str
    advisory: bool = False

    @field_validator("span")
    @classmethod
    def _short_span(cls, span: str) -> str:
        return span if len(span) <= MAX_SPAN else span[: MAX_SPAN - 1] + "…"

    @field_validator("detail")
    @classmethod
    def _short_detail(cls, detail: str) -> str:
        return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "…"

    def problem(self) -> str:
        """The refiner's problem line: what is wrong and the exact text to change."""
        return f"{self.check}: '{self.span}' {self.detail}"[:MAX_PROBLEM_CHARS]


def blocking(failures: list[VerifierFailure]) -> list[VerifierFailure]:
    return [f for f in failures if not f.advisory]


# --- text normalisation -------------------------------------------------------------------------


def folded(text: str) -> str:
    """Whitespace runs to one space, lower case, typographic quotes and dashes to ASCII."""
    text = text.translate(_TYPOGRAPHY)
    return " ".join(text.split()).lower()


_TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                             "\u2014": "-", "\u00a0": " "})  # fmt: skip


def quote_in_chunk(quote: str, chunk: str) -> bool:
    """Is ``quote`` a span of ``chunk``? Also against the fenced chunk text, which is what the model saw."""
    q = folded(quote).strip(" .,;:\"'…")
    if not q:
        return False
    return q in folded(chunk) or q in folded(fence(chunk))


# --- figures ------------------------------------------------------------------------------------

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?P<{g}>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?P<{g}>[0-3]?\d)(?!\d)(?:st|nd|rd|th)?"
DATE = re.compile(
    r"\b(?P<iy>\d{4})-(?P<im>[01]\d)-(?P<id>[0-3]\d)\b"  # 2025-03-15
    rf"|\b{_MONTH.format(g='m1')}\s+{_DAY.format(g='d1')}\b"  # March 15
    rf"|\b{_DAY.format(g='d2')}\s+(?:of\s+)?{_MONTH.format(g='m2')}\b",  # 15 March
    re.IGNORECASE,
)
NUMBER = re.compile(
    r"(?<![\w.])(?P<cur>[$€£])?\s?(?P<num>\d+(?:[.,]\d+)*)(?P<pct>\s?%|\s?(?:percent|per\s?cent)\b)?",
    re.IGNORECASE,
)
LIST_MARKER = re.compile(r"^\s*\d{1,2}[.)]\s", re.MULTILINE)  # "1. Pay the fee": numbering, not a figure


@dataclass(frozen=True)
class Figure:
    """A figure as written (``span``) and as compared (``kind``, ``value``)."""

    span: str
    kind: str  # number | percent | date
    value: str


def _number_value(raw: str) -> str:
    """ "1,200" and "1200.00" -> "1200"; "03" -> "3"; a version-like "1.2.3" keeps its dots."""
    plain = raw.replace(",", "")
    try:
        value = Decimal(plain)
    except InvalidOperation:
        return ".".join(str(int(part)) for part in plain.split(".") if part)
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def figures(text: str) -> list[Figure]:
    """Every date, percentage, amount and number in ``text`` (a date's day is not a number as well).

    Month names count only capitalised ("15 March", not "under 18 may apply"); list numbering
    ("1. Pay the fee") is layout, not a figure.
    """
    found: list[Figure] = []
    taken = [m.span() for m in LIST_MARKER.finditer(text)]
    for m in DATE.finditer(text):
        if m.group("iy"):
            month, day = int(m.group("im")), int(m.group("id"))
            found.append(Figure(m.group("iy"), "number", str(int(m.group("iy")))))
        else:
            name = m.group("m1") or m.group("m2")
            if not name[0].isupper():
                continue
            month, day = _MONTHS[name.lower()[:3]], int(m.group("d1") or m.group("d2"))
        if 1 <= month <= 12 and 1 <= day <= 31:
            found.append(Figure(m.group(0), "date", f"{month}-{day}"))
            taken.append(m.span())
    for m in NUMBER.finditer(text):
        start = m.start("num")
        if any(a <= start < b for a, b in taken):
            continue
        kind = "percent" if m.group("pct") else "number"
        found.append(Figure(m.group(0).strip(), kind, _number_value(m.group("num"))))
    return found


def _supported_values(texts: Iterable[str]) -> tuple[set[tuple[str, str]], set[str]]:
    """(kind, value) pairs of the figures in ``texts``, plus every bare number value in them.

    The bare values count a date's day, a percentage's number and an amount's digits as plain
    numbers, so a reply that writes "15" where the source says "15 March" is not flagged.
    """
    typed: set[tuple[str, str]] = set()
    bare: set[str] = set()
    for text in texts:
        text_typed, text_bare = _values_in(text)
        typed |= text_typed
        bare |= text_bare
    return typed, bare


@lru_cache(maxsize=8192)
def _values_in(text: str) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """One text's share of :func:`_supported_values`, kept: every turn of every revision of a sample
    checks against the same retrieved chunks, and scanning them was ~6% of the event loop's CPU."""
    found = figures(text)
    typed = frozenset((f.kind, f.value) for f in found)
    bare = {f.value for f in found if f.kind != "date"}
    bare.update(_number_value(n) for n in re.findall(r"\d+(?:[.,]\d+)*", text))
    return typed, frozenset(bare)


def _is_supported(figure: Figure, typed: set[tuple[str, str]], bare: set[str]) -> bool:
    """A date must match a date and a percentage a percentage; a plain number any occurrence."""
    if figure.kind == "number":
        return figure.value in bare
    return (figure.kind, figure.value) in typed


# --- derived figures ----------------------------------------------------------------------------

FRACTION = re.compile(r"(?<![\d/])(\d{1,3})\s?/\s?(\d{1,3})(?![\d/])")
MAX_OPERANDS = 24  # at most ~10k results, computed only for a turn with a figure found nowhere
MAX_QUAD_OPERANDS = 12  # sums of four only over few operands: C(24, 4) x 8 signs would be 85k


def operands_of(texts: Iterable[str]) -> set[Decimal]:
    """The numbers a reply may compute with: every number and percentage, and fractions like 2/3."""
    values: set[Decimal] = set()
    for text in texts:
        for f in figures(text):
            value = _decimal(f.value) if f.kind != "date" else None
            if value is not None:
                values.add(value)
        for a, b in FRACTION.findall(text):
            if int(b):
                values.add(Decimal(a) / Decimal(b))
    return values


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _matches(target: Decimal, result: float) -> bool:
    """``result`` as ``target`` writes it: exact for a small whole number, else rounded to the target's
    decimals, and a target on a half step may also be a result rounded down or up to the half.

    A small whole number must match exactly: rounding would let almost any of them through.
    """
    value = Decimal(repr(result))
    exponent = target.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if places == 0 and abs(target) < 100:
        return abs(value - target) < Decimal("1e-9")
    if value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP) == target:
        return True
    doubled = target * 2
    if places and doubled == doubled.to_integral_value():  # "rounded down to the nearest half credit"
        return any(
            (value * 2).quantize(Decimal(1), rounding=m) / 2 == target for m in (ROUND_FLOOR, ROUND_CEILING)
        )
    return False


def _pair_results(a: float, b: float) -> Iterable[float]:
    yield a + b
    yield abs(a - b)
    yield a * b
    yield a * b / 100  # 25% of 9,800
    if b:
        yield a / b
        yield a / b * 100  # 2,450 is 25% of 9,800
    if a:
        yield b / a
        yield b / a * 100


def _signed_sums(group: tuple[float, ...]) -> Iterable[float]:
    first, *rest = group
    for signs in itertools.product((1, -1), repeat=len(rest)):
        yield abs(first + sum(s * v for s, v in zip(signs, rest, strict=True)))


def derivations(operands: set[Decimal]) -> list[float]:
    """Every result of simple arithmetic on ``operands``, sorted: one operation on two of them, or a
    sum or difference of three or four (a bill's total, a total less two deposits).

    Why: a reasoning-tier answer adds up fees or applies a percentage; its result is in no source,
    but every number it came from is. The operands are only the user's figures, the verified quotes
    and the reply's own supported figures, never whole chunks: with a chunk's dozens of numbers
    almost any small number would be "derivable". Computed once per turn (about 15k floats at most).
    """
    values = [float(v) for v in sorted(operands)[:MAX_OPERANDS]]
    results = [r for i, a in enumerate(values) for b in values[i + 1 :] for r in _pair_results(a, b)]
    results += [r for group in itertools.combinations(values, 3) for r in _signed_sums(group)]
    if len(values) <= MAX_QUAD_OPERANDS:
        results += [r for group in itertools.combinations(values, 4) for r in _signed_sums(group)]
    return sorted(results)


def derivable(target: Decimal, results: list[float]) -> bool:
    """Is ``target`` one of ``results`` (from :func:`derivations`) up to the rounding its digits show?"""
    exponent = target.as_tuple().exponent
    window = max(10.0 ** min(0, exponent if isinstance(exponent, int) else 0), 0.5)  # half steps
    low = bisect.bisect_left(results, float(target) - window)
    high = bisect.bisect_right(results, float(target) + window)
    return any(_matches(target, r) for r in results[low:high])


def _unsupported(
    found: list[Figure], typed: set[tuple[str, str]], bare: set[str], operand_texts: list[str], derive: bool
) -> list[Figure]:
    """The figures neither found in the grounds nor (with ``derive``) computed from supported ones.

    Derivation runs to a fixed point: a total found from four supported prices is then an operand
    for the balance after the deposits.
    """
    missing = [f for f in found if not _is_supported(f, typed, bare)]
    if not derive or not missing:
        return missing
    operands = operands_of(operand_texts)
    operands |= {v for f in found if f not in missing and (v := _decimal(f.value)) is not None}
    changed = True
    while changed and missing:
        changed = False
        results = derivations(operands)
        for f in list(missing):
            target = _decimal(f.value) if f.kind != "date" else None
            if target is not None and derivable(target, results):
                missing.remove(f)
                operands.add(target)
                changed = True
    return missing


# --- leaked markup ------------------------------------------------------------------------------

MARKUP = re.compile(
    r"</?\s*source\b[^>]*>?|&lt;/?source\b|\bsource\s+id\s*="
    r"|\bcited_chunk_ids\b|\bchunk_ids?\b|\bretrieved_chunk_ids\b"
    r"|\bSources\s*:|\b(?:USER|ASSISTANT|SYSTEM)\s*:|^\s*\[\d+\]\s+(?:USER|ASSISTANT)\b"
    r"|\bReply to the last USER message\b|\bFailing assistant turns\b|\bProblems to fix\s*:"
    r"|\[(?=[^\]\s]*\d)[\w.:-]{1,40}\]"  # a bracket citation such as [c1], [3] or [a1b2c3d4e5-0]
    r"|\b(?=[0-9a-f]*[a-f])[0-9a-f]{10}-\d+\b",  # a chunk id: <document hash[:10]>-<position>
    re.MULTILINE,
)


def leaked_markup(content: str, chunk_ids: Iterable[str] = ()) -> list[str]:
    """Prompt and template text in a reply: fences, ids, field names, transcript markers."""
    spans = [m.group(0).strip() for m in MARKUP.finditer(content)]
    spans += [cid for cid in chunk_ids if len(cid) >= 4 and cid in content and cid not in spans]
    return list(dict.fromkeys(s for s in spans if s))


# --- the checks ---------------------------------------------------------------------------------


def _evidence(turn: Mapping[str, Any]) -> list[dict[str, str]]:
    items = turn.get("evidence") or []
    return [e if isinstance(e, dict) else dict(e) for e in items]


def is_refusal(turn: Mapping[str, Any]) -> bool:
    """Refusal wording and no evidence: a reply that quotes its sources is an answer."""
    return bool(REFUSAL_PATTERNS.search(turn.get("content") or "")) and not _evidence(turn)


def verify_turn(
    turn_index: int,
    turn: Mapping[str, Any],
    retrieved_text: Mapping[str, str],
    user_text: str = "",
    settings: VerifierSettings | None = None,
    earlier_quotes: Sequence[str] = (),
) -> list[VerifierFailure]:
    """Check one assistant turn.

    ``retrieved_text`` maps each chunk id retrieved for this turn to its text; ``user_text`` is what
    the user wrote up to this turn (figures the user gave are never the assistant's invention);
    ``earlier_quotes`` are the verified quotes of earlier answers, which ground a figure repeated later.
    """
    return _verify_turn(turn_index, turn, retrieved_text, user_text, settings, earlier_quotes)[0]


def _verify_turn(
    turn_index: int,
    turn: Mapping[str, Any],
    retrieved_text: Mapping[str, str],
    user_text: str,
    settings: VerifierSettings | None,
    earlier_quotes: Sequence[str],
) -> tuple[list[VerifierFailure], list[str]]:
    """The failures and the quotes that checked out (later turns may lean on them)."""
    s = settings or VerifierSettings()
    content = turn.get("content") or ""
    failures: list[VerifierFailure] = []

    def fail(check: str, span: str, detail: str) -> None:
        failures.append(
            VerifierFailure(
                check=check, turn_index=turn_index, span=span, detail=detail, advisory=check in s.advisory
            )  # fmt: skip
        )

    verified: list[str] = []
    for item in _evidence(turn):
        chunk_id, quote = str(item.get("chunk_id") or ""), str(item.get("quote") or "")
        chunk = retrieved_text.get(chunk_id)
        if chunk is None:
            fail("quote_not_in_chunk", quote, f"names chunk '{chunk_id}', not retrieved for this turn")
        elif not quote_in_chunk(quote, chunk):
            fail("quote_not_in_chunk", quote, f"is not a verbatim span of chunk '{chunk_id}'")
        else:
            verified.append(quote)

    leaks = leaked_markup(content, retrieved_text.keys())
    for span in leaks:
        fail("leaked_markup", span, "is prompt or template text; the reply must not show it")
    visible = content
    for span in leaks:  # a leaked chunk id's digits are not figures as well
        visible = visible.replace(span, " ")

    user_typed, user_bare = _supported_values([user_text])
    own = [f for f in figures(visible) if not _is_supported(f, user_typed, user_bare)]
    if is_refusal(turn):
        for f in _unique(own):
            fail("refusal_with_figures", f.span, "is stated in a refusal but not in the user's question")
        return failures, verified
    if not _evidence(turn):
        fail("no_evidence", _first_words(content), "answers without evidence: quote the sources it rests on")
    quotes = [*earlier_quotes, *verified]
    grounds = quotes if s.figures_in == "evidence" else [*quotes, *retrieved_text.values()]
    typed, bare = _supported_values(grounds)
    where = "quote" if s.figures_in == "evidence" else "quote or chunk retrieved for this turn"
    for f in _unsupported(_unique(own), typed, bare, [user_text, *quotes], s.derived_figures):
        fail("unsupported_figure", f.span, f"({f.kind}) is in no {where}")
    return failures, verified


def _unique(found: list[Figure]) -> list[Figure]:
    """The first occurrence of each figure: one failure per wrong figure, not per mention."""
    seen: set[tuple[str, str]] = set()
    out = []
    for f in found:
        if (f.kind, f.value) not in seen:
            seen.add((f.kind, f.value))
            out.append(f)
    return out


def _first_words(content: str, n: int = 12) -> str:
    words = content.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def verify_conversation(
    turns: list[Mapping[str, Any]],
    retrieved_text_by_turn: Mapping[int, Mapping[str, str]],
    settings: VerifierSettings | None = None,
) -> list[VerifierFailure]:
    """Every assistant turn, in order; ``retrieved_text_by_turn[i]`` holds turn i's chunks and texts."""
    failures: list[VerifierFailure] = []
    asked: list[str] = []
    quoted: list[str] = []
    for i, turn in enumerate(turns):
        if turn.get("role") == "user":
            asked.append(turn.get("content") or "")
        elif turn.get("role") == "assistant":
            chunks = retrieved_text_by_turn.get(i, {})
            found, verified = _verify_turn(i, turn, chunks, "\n".join(asked), settings, quoted)
            failures.extend(found)
            quoted = [*quoted, *verified]
    return failures
