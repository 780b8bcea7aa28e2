"""Reading documents into plain text with metadata (title, category, section headings).

Each loader returns a :class:`Document` or raises :class:`SkipDocument` with a one-line reason;
ingest lists every skipped file in its summary and records it as an event.
"""

from __future__ import annotations

import codecs
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
    encoding: str = "utf-8"  # of the file as read; not UTF-8 is worth a note in the ingest summary

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\x1b")
LEGACY_ENCODING = "cp1252"


def _binary(data: bytes) -> bool:
    """NUL bytes, or more than 2% control bytes in the first 64 KiB: text files have next to none."""
    head = data[:65536]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in TEXT_CONTROLS)
    return controls > 0.02 * len(head)


def _mojibake(text: str) -> bool:
    """A legacy decode that turned most letters into accented Latin-1 is another encoding (e.g. CJK)."""
    letters = [c for c in text if c.isalpha()]
    high = sum(1 for c in letters if ord(c) > 127)
    return bool(letters) and high > 0.3 * len(letters)


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8, UTF-8/16 with a BOM, or Windows-1252 as the one legacy fallback.

    Why only cp1252: it is what old Western documents use, and it decodes almost any byte string,
    so anything that does not read as mostly-ASCII text under it is refused rather than garbled.
    """
    if not data.strip():
        raise SkipDocument("empty file")
    for bom, codec in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError as exc:
                reason = f"starts with a {codec} byte-order mark but does not decode; re-save it"
                raise SkipDocument(reason) from exc
    if _binary(data):
        raise SkipDocument("binary file (NUL/control bytes); convert it to text, markdown, html, pdf or docx")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode(LEGACY_ENCODING)
    except UnicodeDecodeError as exc:
        raise SkipDocument("not UTF-8 text; re-save it as UTF-8") from exc
    if _mojibake(text):
        raise SkipDocument("not UTF-8 text (another encoding?); re-save it as UTF-8")
    return text, LEGACY_ENCODING


def read_text_file(path: Path) -> str:
    return _read_text_enc(path)[0]


def _read_text_enc(path: Path) -> tuple[str, str]:
    text, encoding = decode_text(path.read_bytes())
    if not text.strip():
        raise SkipDocument("empty file")
    return text, encoding


FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def markdown_sections(text: str) -> list[tuple[int, str]]:
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
    text, encoding = _read_text_enc(path)
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
    sections = markdown_sections(text)
    title = str(front.get("title") or (sections[0][1] if sections else path.stem))
    category = front.get("category")
    doc = Document(str(path), text, title, str(category) if category else None, front, sections)
    doc.encoding = encoding
    return doc


def load_jsonl(path: Path) -> list[Document]:
    docs = []
    for n, line in enumerate(read_text_file(path).splitlines(), start=1):
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


def load_path(path: Path, max_bytes: int = MAX_FILE_BYTES) -> list[Document]:
    """Load one file into one or more documents, or raise SkipDocument.

    The size cap is checked before reading: a 50 MB file is almost always a log or a data dump,
    and would cost tens of thousands of chunks; the user can raise it (``--max-file-mb``).
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise SkipDocument(
            f"{size / 2**20:.3g} MiB is over the {max_bytes / 2**20:.3g} MiB limit; "
            "split the file or raise --max-file-mb"
        )
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return [load_markdown(path)]
    if suffix == ".jsonl":
        return load_jsonl(path)
    if suffix in (".html", ".htm"):
        from teacherforge.retrieval.loaders_rich import load_html

        return [load_html(path)]
    if suffix == ".pdf":
        from teacherforge.retrieval.loaders_rich import load_pdf

        return [load_pdf(path)]
    if suffix == ".docx":
        from teacherforge.retrieval.loaders_rich import load_docx

        return [load_docx(path)]
    raise SkipDocument(f"unsupported file type '{suffix or 'none'}' (txt, md, html, pdf, docx, jsonl)")
