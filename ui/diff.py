"""Side-by-side diffs of a rewritten turn, and quotes marked inside chunk text.

Why sentences: an answer is one paragraph, so a line diff would show it all as changed; one sentence
per row shows only the sentences the refiner (or a person) rewrote, and the changed words are marked
inside them. Everything here returns plain segments ``(text, marked)``; the template escapes them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
Segments = list[tuple[str, bool]]


@dataclass
class DiffRow:
    kind: str  # equal, changed, removed, added
    left: Segments
    right: Segments


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def _words(old: str, new: str) -> tuple[Segments, Segments]:
    a, b = old.split(" "), new.split(" ")
    left: Segments = []
    right: Segments = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i2 > i1:
            left.append((" ".join(a[i1:i2]), op != "equal"))
        if j2 > j1:
            right.append((" ".join(b[j1:j2]), op != "equal"))
    return _spaced(left), _spaced(right)


def _spaced(segments: Segments) -> Segments:
    return [
        (text + (" " if i < len(segments) - 1 else ""), marked) for i, (text, marked) in enumerate(segments)
    ]


def side_by_side(before: str, after: str) -> list[DiffRow]:
    """Rows of (before, after) sentences: equal ones once, rewritten ones paired with the words marked."""
    a, b = sentences(before), sentences(after)
    rows: list[DiffRow] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            rows.extend(DiffRow("equal", [(s, False)], [(s, False)]) for s in a[i1:i2])
            continue
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            if k < len(left) and k < len(right):
                rows.append(DiffRow("changed", *_words(left[k], right[k])))
            elif k < len(left):
                rows.append(DiffRow("removed", [(left[k], True)], []))
            else:
                rows.append(DiffRow("added", [], [(right[k], True)]))
    return rows


def mark_quotes(text: str, quotes: list[str]) -> Segments:
    """``text`` split so that each quote's first occurrence is marked (any whitespace between its words
    matches any whitespace: a quote is usually copied from a chunk with its line breaks joined)."""
    spans: list[tuple[int, int]] = []
    for words in (q.split() for q in quotes):
        if words:
            found = re.search(r"\s+".join(map(re.escape, words)), text, re.IGNORECASE)
            if found:
                spans.append(found.span())
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    segments: Segments = []
    at = 0
    for start, end in merged:
        if start > at:
            segments.append((text[at:start], False))
        segments.append((text[start:end], True))
        at = end
    if at < len(text) or not segments:
        segments.append((text[at:], False))
    return segments
