"""Loaders for formats that need a parser library: HTML (selectolax), PDF (pypdf), DOCX (python-docx)."""

from __future__ import annotations

from pathlib import Path

from teacherforge.retrieval.documents import Document, SkipDocument, read_text_file


def _require(module: str, package: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise SkipDocument(f"needs the '{package}' package: pip install {package}") from exc


def load_html(path: Path) -> Document:
    """Main text with headings kept as markdown-style lines, so sections survive chunking."""
    _require("selectolax", "selectolax")
    from selectolax.lexbor import LexborHTMLParser  # the old Modest backend is gone in selectolax 1.0

    tree = LexborHTMLParser(read_text_file(path))
    for node in tree.css("script, style, nav, header, footer, noscript"):
        node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    if root is None:
        raise SkipDocument("HTML has no body")
    lines: list[str] = []
    for node in root.css("h1, h2, h3, h4, p, li, td, pre"):
        text = " ".join(node.text(separator=" ").split())
        if not text:
            continue
        if node.tag in ("h1", "h2", "h3", "h4"):
            lines.append(f"{'#' * int(node.tag[1])} {text}")
        else:
            lines.append(("- " if node.tag == "li" else "") + text)
    if not lines:
        raise SkipDocument("HTML has no readable text")
    from teacherforge.retrieval.documents import markdown_sections

    text = "\n\n".join(lines)
    title_node = tree.css_first("title")
    title = title_node.text().strip() if title_node else path.stem
    return Document(str(path), text, title, None, {}, markdown_sections(text))


def load_pdf(path: Path) -> Document:
    """Text layer page by page; each page start is recorded so every chunk knows its page."""
    _require("pypdf", "pypdf")
    from pypdf import PdfReader

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):  # many PDFs only have an empty user password
            raise SkipDocument("encrypted PDF; save a copy without the password")
        pages = [(page.extract_text() or "") for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "").strip() or path.stem
    except SkipDocument:
        raise
    except Exception as exc:  # PdfReadError, but also struct/zlib/index/recursion errors for a broken file
        detail = (str(exc).splitlines() or [""])[0][:160]
        raise SkipDocument(f"unreadable PDF ({type(exc).__name__}: {detail}); re-export or OCR it") from exc
    if not any(p.strip() for p in pages):
        raise SkipDocument("PDF has no text layer (scanned?); OCR it first")
    text, starts = "", []
    for number, page_text in enumerate(pages, start=1):
        if not page_text.strip():
            continue
        starts.append((len(text), number))
        text += page_text.strip() + "\n\n"
    return Document(str(path), text, title, None, {}, [], starts)


def load_docx(path: Path) -> Document:
    _require("docx", "python-docx")
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several unrelated types for a bad file
        raise SkipDocument(f"unreadable DOCX ({type(exc).__name__}); re-save it from Word") from exc
    lines = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name or "").lower() if para.style is not None else ""
        level = int(style[-1]) if style.startswith("heading") and style[-1:].isdigit() else 0
        lines.append(f"{'#' * level} {text}" if level else text)
    if not lines:
        raise SkipDocument("DOCX has no text")
    from teacherforge.retrieval.documents import markdown_sections

    text = "\n\n".join(lines)
    return Document(str(path), text, path.stem, None, {}, markdown_sections(text))
