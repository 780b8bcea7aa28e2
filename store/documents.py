"""Reading documents into plain text with metadata (title, category, section headings).

Each loader returns a :class:`Document` or raises :class:`SkipDocument` with a one-line reason;
ingest lists every skipped file in its summary and records it as an event.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MAX_FILE_BYTES = 20 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".md", ".markdown"}


class SkipDocument(Exception):
    """This file cannot be ingested; the message is the one-line reason."""


@dataclass
class Document:
    path: str
    text: str
    title: str
    category: str | None
    front_matter: dict = field(default_factory=dict)
    # (character offset, section path) where each section starts
    sections: list[tuple[int, str]] = field(default_factory=list)
    # (character offset, 1-based page number) where each page starts; PDFs only
    pages: list[tuple[int, int]] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise SkipDocument("empty file")
    if b"\x00" in data[:4096]:
        raise SkipDocument("binary file (NUL bytes); convert it to text, markdown, html, pdf or docx")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise SkipDocument("not UTF-8 text; re-save it as UTF-8") from exc


FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _markdown_sections(text: str) -> list[tuple[int, str]]:
    """Section path at each heading, e.g. 'Refunds > Withdrawal before week 4'."""
    stack: list[tuple[int, str]] = []
    sections: list[tuple[int, str]] = []
    for match in MD_HEADING.finditer(text):
        level, title = len(match.group(1)), match.group(2).strip()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        sections.append((match.start(), " > ".join(t for _, t in stack)))
    return sections


def load_markdown(path: Path) -> Document:
    text = _read_text(path)
    front: dict = {}
    match = FRONT_MATTER.match(text)
    if match:
        try:
            front = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise SkipDocument(f"front matter is not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(front, dict):
            front = {}
        text = text[match.end() :]
    if not text.strip():
        raise SkipDocument("no text after the front matter")
    sections = _markdown_sections(text)
    title = str(front.get("title") or (sections[0][1] if sections else path.stem))
    category = front.get("category")
    return Document(str(path), text, title, str(category) if category else None, front, sections)


def load_jsonl(path: Path) -> list[Document]:
    docs = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SkipDocument(f"line {n} is not JSON ({exc.msg})") from exc
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise SkipDocument(f"line {n} has no non-empty 'text' field")
        doc_path = f"{path}#{record.get('id', n)}"
        category = record.get("category")
        docs.append(Document(doc_path, text, str(record.get("title") or doc_path), category, record))
    return docs


def load_path(path: Path) -> list[Document]:
    """Load one file into one or more documents, or raise SkipDocument."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SkipDocument(
            f"{size / 1e6:.0f} MB is over the {MAX_FILE_BYTES // 2**20} MiB limit; split the file"
        )
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return [load_markdown(path)]
    if suffix == ".jsonl":
        return load_jsonl(path)
    if suffix in (".html", ".htm"):
        from teacherforge.store.loaders_rich import load_html

        return [load_html(path)]
    if suffix == ".pdf":
        from teacherforge.store.loaders_rich import load_pdf

        return [load_pdf(path)]
    if suffix == ".docx":
        from teacherforge.store.loaders_rich import load_docx

        return [load_docx(path)]
    raise SkipDocument(f"unsupported file type '{suffix or 'none'}' (txt, md, html, pdf, docx, jsonl)")
