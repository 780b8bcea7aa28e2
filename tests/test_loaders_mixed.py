"""A mixed folder (txt, md, html, pdf, docx, jsonl, a binary, an empty file, a broken PDF) through ingest.

The PDF is written by hand (a valid two-page PDF with a Helvetica text layer), the DOCX with
python-docx; a hashing embedder keeps the test fast. Checks the summary, the skip reasons and their
events, PDF page metadata, section paths from HTML/DOCX headings, and that re-ingest is a no-op.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from teacherforge.retrieval import ingest as ingest_module
from teacherforge.retrieval.documents import load_path
from teacherforge.retrieval.index import load_chunks
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog


class HashEmbedder:
    model_id = "test-hash-8"
    dim = 8

    def __init__(self):
        self.calls = 0
        self.texts = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.ones((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, int(hashlib.md5(text.encode()).hexdigest(), 16) % self.dim] += 3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def minimal_pdf(pages: list[list[str]]) -> bytes:
    """A valid PDF 1.4 with one Helvetica text line per string, one page per list."""
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for lines in pages:
        ops = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {ops} ET".encode()
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def write_docx(path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Meal plans", level=1)
    document.add_paragraph("The 14-meal plan costs 2100 dollars per semester.")
    document.add_heading("Exceptions", level=2)
    document.add_paragraph("Students with a medical need may ask for an exemption.")
    document.save(str(path))


@pytest.fixture
def mixed(tmp_path, monkeypatch):
    embedder = HashEmbedder()
    monkeypatch.setattr(ingest_module, "load_embedder", lambda *a: embedder)
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.txt").write_text("Office hours are 9 to 5. Call 555-0100 for help.\n")
    (folder / "fees.md").write_text("---\ncategory: fees\n---\n# Fees\n\nTuition is 9800 dollars.\n")
    (folder / "page.html").write_text(
        "<html><head><title>Halls</title><script>var x = 1;</script></head><body><nav>Menu</nav>"
        "<main><h1>Halls</h1><p>Alder Hall has doubles.</p><h2>Prices</h2><p>A double costs 3150 dollars.</p>"
        "</main></body></html>"
    )
    (folder / "guide.pdf").write_bytes(
        minimal_pdf([["Guide to refunds.", "Refunds take 21 days."], ["Appeals go to the Bursar."]])
    )
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    write_docx(folder / "meals.docx")
    (folder / "records.jsonl").write_text(
        json.dumps({"id": "r1", "text": "Parking costs 40 dollars."}) + "\n"
    )
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "empty.md").write_text("")
    return folder, embedder


def test_minimal_pdf_reads_back_with_pages(tmp_path):
    path = tmp_path / "two.pdf"
    path.write_bytes(minimal_pdf([["First page text."], ["Second page text."]]))
    doc = load_path(path)[0]
    assert "First page text." in doc.text and "Second page text." in doc.text
    assert [p for _, p in doc.pages] == [1, 2]
    assert doc.text[doc.pages[1][0] :].startswith("Second page")


def test_mixed_folder_summary_events_pages_and_noop_reingest(mixed, tmp_path):
    folder, embedder = mixed
    con = connect(tmp_path / "forge.duckdb")
    log = EventLog(con)
    first = ingest_module.ingest(con, log, [folder])
    names = sorted(p.rsplit("/", 1)[1] for p in first.added)
    assert names == ["fees.md", "guide.pdf", "meals.docx", "notes.txt", "page.html", "records.jsonl#r1"]
    reasons = {p.rsplit("/", 1)[1]: r for p, r in first.skipped}
    assert set(reasons) == {"broken.pdf", "image.png", "empty.md"}
    assert reasons["empty.md"] == "empty file"
    assert "unsupported file type '.png'" in reasons["image.png"]
    assert reasons["broken.pdf"].startswith("unreadable PDF") and "\n" not in reasons["broken.pdf"]

    table = load_chunks(con)
    pdf_rows = [i for i, d in enumerate(table.documents) if d.endswith("guide.pdf")]
    assert sorted(table.page(i) for i in pdf_rows) == [1, 2]
    assert all(table.page(i) is None for i, d in enumerate(table.documents) if not d.endswith(".pdf"))
    sections = {table.sections[i] for i, d in enumerate(table.documents) if d.endswith(("html", "docx"))}
    assert {"Halls > Prices", "Meal plans > Exceptions"} <= sections
    assert not any("var x" in t or "Menu" in t for t in table.texts)

    calls = embedder.texts
    second = ingest_module.ingest(con, log, [folder])
    assert (second.added, second.updated, second.chunks, embedder.texts) == ([], [], 0, calls)
    assert len(second.unchanged) == 6 and len(second.skipped) == 3
    log.flush()
    counts = dict(con.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
    assert counts["document.skipped"] == 6 and counts["document.ingested"] == 6
    log.close()
    con.close()
