"""Sentence-preserving, heading-aware chunking (default 800 characters, 100 overlap; seed 002).

A chunk never crosses a section or page boundary and never ends inside a sentence (only a single
sentence longer than the budget is cut, at a space), so its section path and PDF page are exact.
Chunk ids are ``<document hash[:10]>-<position>``, so an unchanged file re-ingests to the same ids
and a changed one gets new ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from teacherforge.retrieval.documents import Document

T = TypeVar("T")
SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n\s*\n|\n(?=\s*(?:[-*+]|\d+[.)])\s)")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    document: str
    category: str | None
    section: str
    start: int
    end: int
    text: str
    page: int | None = None


def _sentences(text: str, base: int) -> list[tuple[int, int]]:
    """(start, end) spans of sentences/list items/paragraphs, absolute offsets."""
    spans, pos = [], 0
    for match in SENTENCE_END.finditer(text):
        if match.start() > pos:
            spans.append((base + pos, base + match.start()))
        pos = match.end()
    if pos < len(text):
        spans.append((base + pos, base + len(text)))
    return [(s, e) for s, e in spans if e > s]


def _hard_split(start: int, end: int, text: str, size: int) -> list[tuple[int, int]]:
    parts = []
    while end - start > size:
        cut = text.rfind(" ", start, start + size)
        cut = cut if cut > start else start + size
        parts.append((start, cut))
        start = cut + 1
    parts.append((start, end))
    return parts


def _pack(spans: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily pack sentence spans into windows of <= size chars; carry <= overlap chars of tail."""
    windows: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    for span in spans:
        if current and span[1] - current[0][0] > size:
            windows.append((current[0][0], current[-1][1]))
            tail: list[tuple[int, int]] = []
            for s in reversed(current):
                if current[-1][1] - s[0] > overlap:
                    break
                tail.insert(0, s)
            current = tail if tail and span[1] - tail[0][0] <= size else []
        current.append(span)
    if current:
        windows.append((current[0][0], current[-1][1]))
    return windows


def _last_at(marks: list[tuple[int, T]], offset: int, default: T) -> T:
    """The value of the last mark at or before ``offset`` (marks are sorted by offset)."""
    value = default
    for at, v in marks:
        if at > offset:
            break
        value = v
    return value


def chunk_document(doc: Document, size: int = 800, overlap: int = 100) -> list[Chunk]:
    text = doc.text
    bounds = sorted({0, *[o for o, _ in doc.sections], *[o for o, _ in doc.pages]}) + [len(text)]
    chunks: list[Chunk] = []
    doc_hash = doc.content_hash[:10]
    for start, end in zip(bounds, bounds[1:], strict=False):
        section, page = _last_at(doc.sections, start, ""), _last_at(doc.pages, start, None)
        spans: list[tuple[int, int]] = []
        for s, e in _sentences(text[start:end], start):
            spans.extend(_hard_split(s, e, text, size) if e - s > size else [(s, e)])
        for s, e in _pack(spans, size, overlap):
            body = text[s:e].strip()
            if not body:
                continue
            chunks.append(
                Chunk(
                    chunk_id=f"{doc_hash}-{len(chunks):03d}",
                    document=doc.path,
                    category=doc.category,
                    section=section,
                    start=s,
                    end=e,
                    text=body,
                    page=page,
                )
            )
    return chunks
