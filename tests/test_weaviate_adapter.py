"""The Weaviate adapter against the loopback fake: schema, sync, import errors, auth, request shape.

A small hashing embedder stands in for MiniLM so these tests take well under a second each.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("weaviate", reason="weaviate-client is not installed (pip install -e '.[weaviate]')")
from test_weaviate_fake import FakeWeaviate

from teacherforge.cli.retrieval import StoreChoiceError, open_retriever, store_settings, summary_lines
from teacherforge.retrieval import ingest as ingest_module
from teacherforge.retrieval.weaviate_client import WeaviateSettings, WeaviateStoreError, connect_weaviate
from teacherforge.retrieval.weaviate_mirror import WeaviateRetriever, stale_documents, sync_to_weaviate
from teacherforge.retrieval.weaviate_store import WeaviateChunkStore, WeaviateImportError, chunk_uuid
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog


class HashEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close."""

    model_id = "test-hash-16"
    dim = 16

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "load_embedder", lambda *a: HashEmbedder())
    folder = tmp_path / "docs"
    (folder / "fees").mkdir(parents=True)
    (folder / "housing").mkdir()
    (folder / "fees" / "tuition.md").write_text("# Tuition\n\nTuition is 9800 dollars per semester.\n")
    (folder / "fees" / "late.md").write_text("# Late fees\n\nA late payment costs 75 dollars.\n")
    (folder / "housing" / "halls.md").write_text("# Halls\n\nAlder Hall doubles cost 3150 dollars.\n")
    db = tmp_path / "forge.duckdb"
    con = connect(db)
    log = EventLog(con)
    ingest_module.ingest(con, log, [folder])
    yield folder, con, log
    log.close()
    con.close()


def _store(fake: FakeWeaviate, **kw) -> WeaviateChunkStore:
    settings = WeaviateSettings(url=fake.url, grpc_port=fake.grpc_port, **kw)
    return WeaviateChunkStore(connect_weaviate(settings), settings)


def test_schema_uuids_and_self_provided_vectors(corpus):
    _, con, _ = corpus
    with FakeWeaviate() as fake:
        store = _store(fake)
        report = sync_to_weaviate(con, store)
        store.client.close()
    assert report.created and len(report.pushed) == 3 and report.chunks == 3
    schema = fake.schemas["TeacherforgeChunk"]
    assert schema["vectorConfig"]["default"]["vectorizer"] == {"none": {}}
    assert schema["vectorConfig"]["default"]["vectorIndexConfig"]["distance"] == "cosine"
    props = {p["name"]: p for p in schema["properties"]}
    assert props["text"]["tokenization"] == "word" and props["document"]["indexSearchable"] is False
    assert props["page"]["dataType"] == ["int"]
    rows = con.execute("SELECT chunk_id, embedding FROM chunks").fetchall()
    stored = fake.objects["TeacherforgeChunk"]
    for chunk_id, vector in rows:
        props_, vec = stored[chunk_uuid(chunk_id)]
        assert props_["chunk_id"] == chunk_id
        np.testing.assert_allclose(vec, vector, rtol=1e-6)


def test_sync_pushes_only_changes_and_removes_deleted_documents(corpus):
    folder, con, log = corpus
    with FakeWeaviate() as fake:
        store = _store(fake)
        sync_to_weaviate(con, store)
        again = sync_to_weaviate(con, store)
        assert (again.pushed, again.removed, again.unchanged) == ([], [], 3)
        (folder / "fees" / "late.md").write_text("# Late fees\n\nA late payment now costs 90 dollars.\n")
        ingest_module.ingest(con, log, [folder])
        con.execute("DELETE FROM chunks WHERE document LIKE '%halls.md'")
        con.execute("DELETE FROM documents WHERE path LIKE '%halls.md'")
        report = sync_to_weaviate(con, store)
        texts = sorted(p["text"] for p, _ in fake.objects["TeacherforgeChunk"].values())
        store.client.close()
    assert [p.rsplit("/", 1)[1] for p in report.pushed] == ["late.md"]
    assert [p.rsplit("/", 1)[1] for p in report.removed] == ["halls.md"]
    assert len(texts) == 2 and any("90 dollars" in t for t in texts) and not any("75" in t for t in texts)


def test_a_wiped_server_gets_everything_again(corpus):
    _, con, _ = corpus
    with FakeWeaviate() as fake:
        store = _store(fake)
        sync_to_weaviate(con, store)
        fake.schemas.clear()
        fake.objects.clear()
        report = sync_to_weaviate(con, store)
        store.client.close()
    assert report.created and len(report.pushed) == 3 and len(fake.objects["TeacherforgeChunk"]) == 3


@pytest.mark.parametrize(("marker", "expected"), [("3150", "halls.md"), ("Refunds", "tuition.md")])
def test_rejected_objects_are_reported_by_chunk_id_and_not_marked_synced(corpus, marker, expected):
    """A whole batch rejected (halls: one chunk) and one object of a batch rejected (tuition: two)."""
    folder, con, log = corpus
    (folder / "fees" / "tuition.md").write_text(
        "# Tuition\n\nIt is 9800 dollars.\n\n## Refunds\n\nRefunds.\n"
    )
    ingest_module.ingest(con, log, [folder])
    reject = lambda props: "vector lengths don't match" if marker in props["text"] else None  # noqa: E731
    with FakeWeaviate(reject=reject) as fake:
        store = _store(fake)
        with pytest.raises(WeaviateImportError, match="rejected 1 of") as info:
            sync_to_weaviate(con, store)
        store.client.close()
    assert list(info.value.errors.values()) == ["vector lengths don't match"]
    chunk_id = con.execute("SELECT chunk_id FROM chunks WHERE text LIKE ?", [f"%{marker}%"]).fetchone()[0]
    assert list(info.value.errors) == [chunk_id]
    assert any(d.endswith(expected) for d in stale_documents(con, store.settings.target))


def test_api_key_comes_from_the_environment(corpus, monkeypatch):
    _, con, _ = corpus
    with FakeWeaviate(api_key="s3cret") as fake:
        monkeypatch.delenv("WEAVIATE_API_KEY", raising=False)
        with pytest.raises(WeaviateStoreError, match=r"connect failed.*401.*WEAVIATE_API_KEY"):
            _store(fake)
        monkeypatch.setenv("WEAVIATE_API_KEY", "s3cret")
        store = _store(fake)
        sync_to_weaviate(con, store)
        hits = WeaviateRetriever.from_index(con, store, HashEmbedder()).search("tuition", 1, "bm25")
        store.client.close()
    assert hits[0].document.endswith("tuition.md")
    assert "Bearer s3cret" in fake.auth_seen


def test_hybrid_request_uses_relative_fusion_alpha_text_only_and_filters(corpus):
    _, con, _ = corpus
    with FakeWeaviate() as fake:
        store = _store(fake, alpha=0.7)
        sync_to_weaviate(con, store)
        retriever = WeaviateRetriever.from_index(con, store, HashEmbedder())
        hits = retriever.search("late payment dollars", 2, "hybrid", category="fees", exclude_documents={"x"})
        retriever.close()
    request = fake.searches[-1]
    hybrid = request.hybrid_search
    assert (hybrid.alpha_param if hybrid.use_alpha_param else hybrid.alpha) == pytest.approx(0.7)
    assert hybrid.fusion_type == hybrid.FUSION_TYPE_RELATIVE_SCORE and list(hybrid.properties) == ["text"]
    assert request.limit == 2 and len(request.filters.filters) == 2
    assert hits[0].document.endswith("late.md") and {h.category for h in hits} == {"fees"}


def test_a_stale_mirror_refuses_to_search(corpus, tmp_path):
    folder, con, log = corpus
    with FakeWeaviate() as fake:
        store = _store(fake)
        sync_to_weaviate(con, store)
        (folder / "fees" / "new.md").write_text("# New\n\nA new fee.\n")
        ingest_module.ingest(con, log, [folder])
        with pytest.raises(WeaviateStoreError, match="behind the database.*--store weaviate"):
            WeaviateRetriever.from_index(con, store, HashEmbedder())
        store.client.close()


def test_connection_errors_are_one_line_and_name_the_fix():
    with FakeWeaviate() as fake:
        with pytest.raises(WeaviateStoreError, match="check --weaviate-grpc-port"):
            connect_weaviate(WeaviateSettings(url=fake.url, grpc_port=1, timeout_s=2))
        port = int(fake.url.rsplit(":", 1)[1])
    with pytest.raises(WeaviateStoreError, match="cannot reach Weaviate"):
        connect_weaviate(WeaviateSettings(url=f"http://127.0.0.1:{port}", timeout_s=2))
    with pytest.raises(WeaviateStoreError, match="must look like"):
        connect_weaviate(WeaviateSettings(url="127.0.0.1:8080"))


def test_cli_store_helpers(corpus, monkeypatch):
    _, con, _ = corpus
    assert store_settings("duckdb", None) is None
    with pytest.raises(StoreChoiceError, match="--weaviate-url"):
        store_settings("weaviate", None)
    with pytest.raises(StoreChoiceError, match="duckdb or weaviate"):
        store_settings("qdrant", "http://x")
    monkeypatch.setattr("teacherforge.retrieval.embedder.load_embedder", lambda *a: HashEmbedder())
    with FakeWeaviate() as fake:
        settings = store_settings("weaviate", fake.url, fake.grpc_port)
        store = WeaviateChunkStore(connect_weaviate(settings), settings)
        report = sync_to_weaviate(con, store)
        store.client.close()
        retriever = open_retriever(con, settings)
        assert retriever.count() == 3 and retriever.categories() == ["fees", "housing"]
        retriever.close()
    summary = ingest_module.IngestSummary("ingest-x", added=["a"], chunks=3, embedded=2, embed_s=1.0)
    lines = summary_lines(summary, report)
    assert "2 embedded at 2.0 chunks/s, 1 from cache" in lines[0] and "pushed 3 document(s)" in lines[-1]
