"""Chunks as numbered sentences: what the small-model profile shows a model and quotes as evidence.

Why: a 135M model cannot copy a quote verbatim or keep a chunk id straight, but it can pick a
number from a short list. So the code splits the retrieved chunks into sentences, shows a few of
them, and quotes the picked ones itself. Each :class:`Sentence` keeps two forms: ``quote``, a
verbatim span of the chunk (markdown and all, so the verifier finds it), and ``text``, the same
fact readable for a model (no ``**``, a table row with its column names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from teacherforge.agents.schemas import MAX_PICKABLE, MAX_QUOTE_CHARS
from teacherforge.agents.verifier import figures

MIN_SENTENCE_CHARS = 25
STEM = 6  # a crude stemmer: words compare by their first six letters
MAX_SENTENCES = MAX_PICKABLE

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"“])")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|No|St|Dr|Mr|Mrs|Ms|approx)\.$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,2}[.)])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
_MARKUP = re.compile(r"\*\*|__|`")
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = (
    "a an the of to in on for and or is are be by at as it its this that with from what which who how "
    "do does did can could would should i my me we our us you your if when where why will there their "
    "they per any all not no yes please sorry hi hello also but so than then much many was were has have "
    "had get"
)
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class Sentence:
    """One fact of a chunk: ``quote`` is copied from the chunk, ``text`` is what a model reads."""

    chunk_id: str
    quote: str
    text: str

    @property
    def has_figure(self) -> bool:
        return bool(figures(self.text))

    @property
    def is_row(self) -> bool:
        """A table row: its text is "Row, Column: value, ..." (an answer should not read like that)."""
        return self.quote.startswith("|")


def _readable(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _split_sentences(block: str) -> list[str]:
    """A paragraph or list item cut at sentence ends (not after "e.g." or inside "$7.50")."""
    parts, current = [], ""
    for piece in _SENTENCE_END.split(" ".join(block.split())):
        current = f"{current} {piece}" if current else piece
        if not _ABBREVIATION.search(current):
            parts.append(current)
            current = ""
    if current:
        parts.append(current)
    return parts


def _blocks(text: str) -> Iterable[tuple[str, list[str] | None]]:
    """(block, table header or None): paragraphs, list items (with their wrapped lines) and table rows."""
    header: list[str] | None = None
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if current:
                yield " ".join(current), None
                current = []
            if header is None:
                header = _cells(stripped)
            elif not _TABLE_RULE.match(stripped):
                yield stripped, header
            continue
        header = None
        if not stripped or stripped.startswith("#"):
            if current:
                yield " ".join(current), None
            current = []
            continue
        if _BULLET.match(line) and current:
            yield " ".join(current), None
            current = []
        current.append(line.rstrip() if not current else stripped)
    if current:
        yield " ".join(current), None


def _row_text(row: str, header: list[str]) -> str:
    """ "| Alder Hall | Triple | $2,700 |" -> "Alder Hall, Room type: Triple, Price per semester: $2,700."

    The first cell names the row; the others keep their column names, which say what a figure is.
    """
    cells = _cells(row)
    named = [f"{h}: {c}" if h else c for h, c in zip(header[1:], cells[1:], strict=False) if c not in "—-"]
    return _readable(", ".join([cells[0], *named])) + "."


def _clip(quote: str) -> str:
    """At most MAX_QUOTE_CHARS, cut at a word boundary: a prefix of a span is still a span."""
    if len(quote) <= MAX_QUOTE_CHARS:
        return quote
    return quote[:MAX_QUOTE_CHARS].rsplit(" ", 1)[0]


def split_chunk(chunk_id: str, text: str) -> list[Sentence]:
    """Every sentence of a chunk long enough to state something, in reading order.

    A list item is read with the sentence that introduces the list ("To keep a scholarship a
    student must:"): without it, "Enrol full-time" states nothing a question could ask about.
    """
    found: list[Sentence] = []
    lead = ""
    for block, header in _blocks(text):
        if header is not None:
            quote = " ".join(block.split())
            found.append(Sentence(chunk_id, _clip(quote), _row_text(block, header)))
            continue
        is_item = bool(_BULLET.match(block))
        if not is_item:
            lead = ""
        for part in _split_sentences(_BULLET.sub("", block)):
            readable = _readable(part)
            if readable.endswith(":"):
                lead = "" if is_item else readable
            elif len(readable) >= MIN_SENTENCE_CHARS:
                text_ = f"{lead} {readable}" if is_item and lead else readable
                found.append(Sentence(chunk_id, _clip(part), text_))
    return found


def split_chunks(chunks: Sequence[dict[str, Any]]) -> list[Sentence]:
    """The sentences of several chunks, each once (overlapping chunks repeat text)."""
    seen: set[str] = set()
    out = []
    for chunk in chunks:
        for sentence in split_chunk(chunk["chunk_id"], chunk["text"]):
            key = sentence.text.lower()
            if key not in seen:
                seen.add(key)
                out.append(sentence)
    return out


def content_words(text: str) -> set[str]:
    """Lower-case words that carry meaning, cut to 6 letters: "assignments", "assigned" -> "assign"."""
    return {w[:STEM] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def overlap(question: str, sentence: Sentence) -> float:
    """Share of the question's content words the sentence contains (a cheap relevance score)."""
    asked = content_words(question)
    if not asked:
        return 0.0
    return len(asked & content_words(sentence.text)) / len(asked)


def ranked(question: str, sentences: Sequence[Sentence], limit: int = MAX_SENTENCES) -> list[Sentence]:
    """The ``limit`` sentences that share most words with the question, best first.

    Why: the model picks from this list, and a small model favours the first items; putting the
    likeliest answers first makes its bias harmless. Ties keep the retrieval order.
    """
    order = sorted(range(len(sentences)), key=lambda i: (-overlap(question, sentences[i]), i))
    return [sentences[i] for i in order[:limit]]


# --- gaps: the fact a question asks for ----------------------------------------------------------

_YEAR = re.compile(r"(?:19|20)\d\d")
_TRAILING_YEAR = re.compile(r",?\s+(?:19|20)\d\d\b")
_UNIT = re.compile(r"\s+([a-z]{3,}s)\b")  # "12 credits", "8 metres": a count of something (plural)
_NAMED = re.compile(r"\b(?:Room|No|Building|Level|Floor|Lot|Suite|Form)\.?\s*$")


@dataclass(frozen=True)
class Gap:
    """A figure of a sentence taken out and replaced by what a question would ask for it."""

    span: str  # as written in the sentence, e.g. "$250" or "15 July 2026"
    kind: str  # number | percent | date (verifier.Figure kinds)
    value: str
    text: str  # the sentence with the gap, e.g. "Pay the [how much?] housing deposit when applying."
    unit: str | None = None  # what a count counts ("credits"); a question and its answer must name it
    year: str | None = None  # a date's year, when the sentence gives one

    def named_in(self, text: str) -> bool:
        """Does ``text`` name this gap's unit? Compared on 3 letters: "metres" and "meters" agree."""
        if self.unit is None:
            return True
        return any(w[:3] == self.unit[:3] for w in re.findall(r"[a-z]+", text.lower()))


def gaps(sentence: Sentence) -> list[Gap]:
    """Every figure of ``sentence`` that a question can ask for: amounts, dates, percentages and counts
    of something ("12 credits"); not years, not numbers that name a thing ("Room 104").

    Why a gap: a 135M model asked to turn "Pay the $250 housing deposit" into a question mostly
    writes the $250 into it; shown "Pay the [how much?] housing deposit" it asks "How much is the
    housing deposit?", and the answer then has to state exactly the figure that was taken out.
    """
    text, out = sentence.text, []
    for f in figures(text):
        start = text.find(f.span)
        if start < 0 or (f.kind == "number" and _YEAR.fullmatch(f.value)):
            continue
        end, unit, year = start + len(f.span), None, None
        if f.kind == "date":
            trailing = _TRAILING_YEAR.match(text, end)
            if trailing:
                end, year = trailing.end(), trailing.group(0).strip(" ,")
            ask = "[when?]"
        elif f.kind == "percent":
            ask = "[what percentage?]"
        elif f.span[:1] in "$€£":
            ask = "[how much?]"
        elif (counted := _UNIT.match(text, end)) and not _NAMED.search(text, 0, start):
            ask, unit = "[how many?]", counted.group(1)
        else:
            continue
        gapped = f"{text[:start]}{ask}{text[end:]}"
        out.append(Gap(text[start:end], f.kind, f.value, gapped, unit, year))
    return out


@dataclass(frozen=True)
class Fact:
    """The sentence a question grows from, and the gap it asks for (None: the whole sentence)."""

    sentence: Sentence
    gap: Gap | None

    @property
    def shown(self) -> str:
        return self.gap.text if self.gap else self.sentence.text
