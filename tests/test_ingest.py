"""Loading and chunking documents: sentence boundaries, sections, stable ids, clear skip reasons."""

from __future__ import annotations

from conftest import EXAMPLES, query

from teacherforge.retrieval.chunking import chunk_document
from teacherforge.retrieval.documents import Document, load_path
from teacherforge.retrieval.ingest import ingest
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog


def doc(text: str, sections=None) -> Document:
    return Document("d.md", text, "d", "fees", {}, sections or [])


def test_chunks_respect_size_overlap_and_sentences():
    sentences = [f"Sentence number {i} says the fee is {i * 10} dollars." for i in range(60)]
    chunks = chunk_document(doc(" ".join(sentences)), size=200, overlap=60)
    assert len(chunks) > 5
    for c in chunks:
        assert len(c.text) <= 200
        assert c.text.startswith("Sentence number") and c.text.endswith("dollars.")
    assert any(a.text.split(". ")[-1] in b.text for a, b in zip(chunks, chunks[1:], strict=False))


def test_chunks_never_cross_sections_and_carry_their_path():
    text = "# Fees\n\nTuition is due.\n\n## Refunds\n\nRefunds take 21 days.\n"
    from teacherforge.retrieval.documents import markdown_sections

    chunks = chunk_document(doc(text, markdown_sections(text)))
    assert [c.section for c in chunks] == ["Fees", "Fees > Refunds"]
    assert "Refunds take" not in chunks[0].text


def test_chunk_ids_are_stable_and_change_with_content():
    a = chunk_document(doc("Alpha beta. Gamma delta."))
    assert [c.chunk_id for c in a] == [c.chunk_id for c in chunk_document(doc("Alpha beta. Gamma delta."))]
    assert a[0].chunk_id != chunk_document(doc("Alpha beta. Gamma delta!"))[0].chunk_id


def test_front_matter_gives_title_and_category():
    docs = load_path(EXAMPLES / "fees" / "tuition.md")
    assert docs[0].category == "fees" and docs[0].title and not docs[0].text.startswith("---")


def test_mixed_folder_skips_bad_files_with_reasons_and_reingest_is_noop(tmp_path):
    folder = tmp_path / "docs"
    (folder / "fees").mkdir(parents=True)
    (folder / "fees" / "a.md").write_text("# Fees\n\nTuition is 100 dollars. It is due in May.\n")
    (folder / "fees" / "empty.txt").write_text("")
    (folder / "fees" / "blob.bin").write_bytes(b"\x00\x01\x02")
    (folder / "fees" / "fake.txt").write_bytes(b"abc\x00def")
    (folder / "fees" / "latin.txt").write_bytes("Caf\xe9 fees are low.".encode("latin-1"))
    db = tmp_path / "x.duckdb"
    con = connect(db)
    log = EventLog(con)
    first = ingest(con, log, [folder])
    assert sorted(p.rsplit("/", 1)[1] for p in first.added) == ["a.md", "latin.txt"]
    reasons = {p.rsplit("/", 1)[1]: r for p, r in first.skipped}
    assert reasons["empty.txt"] == "empty file"
    assert "unsupported file type '.bin'" in reasons["blob.bin"]
    assert "binary" in reasons["fake.txt"]
    second = ingest(con, log, [folder])
    assert second.added == [] and second.chunks == 0 and len(second.unchanged) == 2
    (folder / "fees" / "a.md").write_text("# Fees\n\nTuition is 200 dollars now.\n")
    third = ingest(con, log, [folder])
    assert [p.rsplit("/", 1)[1] for p in third.updated] == ["a.md"]
    log.close()
    con.close()
    assert query(db, "SELECT text FROM chunks WHERE document LIKE '%a.md'") == [
        ("# Fees\n\nTuition is 200 dollars now.",)
    ]
    assert (
        query(db, "SELECT count(*) FROM events WHERE type = 'document.skipped'")[0][0] == 9
    )  # 3 files x 3 ingests
