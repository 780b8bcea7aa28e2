"""One contract for every ``Retriever`` backend: DuckDB in memory, Weaviate (loopback fake), and a real
Weaviate server when ``WEAVIATE_URL`` is set (see docs/retrieval.md for starting one).

Vector search must agree exactly with numpy cosine over the DuckDB matrix (both backends hold the
same self-provided vectors); BM25 and hybrid are held to properties that any sound implementation
meets (Weaviate's BM25 tokenises differently from bm25s, so exact ranks are not compared).
"""

from __future__ import annotations

import os
import shutil
import uuid

import numpy as np
import pytest

from teacherforge.retrieval.embedder import load_embedder
from teacherforge.retrieval.index import load_chunks
from teacherforge.retrieval.retriever import InMemoryRetriever
from teacherforge.retrieval.weaviate_client import WeaviateSettings
from teacherforge.store.database import connect

TUITION_Q = "How much is full-time tuition per semester for an international undergraduate?"
BACKENDS = ["duckdb", "weaviate-fake", "weaviate-live"]


@pytest.fixture(scope="module")
def index_db(ingested_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "forge.duckdb"
    shutil.copy(ingested_template, path)
    return path


@pytest.fixture(scope="module")
def table(index_db):
    con = connect(index_db, read_only=True)
    try:
        return load_chunks(con)
    finally:
        con.close()


def _weaviate(index_db, settings):
    from teacherforge.retrieval.weaviate_mirror import WeaviateRetriever, sync_to_weaviate
    from teacherforge.retrieval.weaviate_store import WeaviateChunkStore, connect_weaviate

    client = connect_weaviate(settings)
    store = WeaviateChunkStore(client, settings)
    con = connect(index_db)
    try:
        sync_to_weaviate(con, store)
        return WeaviateRetriever.from_index(con, store, load_embedder())
    finally:
        con.close()


@pytest.fixture(scope="module", params=BACKENDS)
def retriever(request, index_db, table):
    if request.param == "duckdb":
        yield InMemoryRetriever(table, load_embedder())
        return
    if request.param == "weaviate-fake":
        pytest.importorskip("weaviate", reason="weaviate-client is not installed")
        from test_weaviate_fake import FakeWeaviate

        with FakeWeaviate() as fake:
            r = _weaviate(index_db, WeaviateSettings(url=fake.url, grpc_port=fake.grpc_port))
            yield r
            r.close()
        return
    url = os.environ.get("WEAVIATE_URL")
    if not url:
        pytest.skip("set WEAVIATE_URL (and WEAVIATE_GRPC_PORT) to run the contract against a real server")
    collection = f"TeacherforgeTest{uuid.uuid4().hex[:8]}"
    grpc_port = int(os.environ.get("WEAVIATE_GRPC_PORT", "50051"))
    settings = WeaviateSettings(url=url, grpc_port=grpc_port, collection=collection, index="flat")
    r = _weaviate(index_db, settings)
    yield r
    r.store.client.collections.delete(collection)
    r.close()


def _reference_vector_ids(table, query: str, k: int, category: str | None = None) -> list[str]:
    scores = table.matrix @ load_embedder().embed([query])[0]
    if category is not None:
        scores = np.where(np.array(table.categories, dtype=object) == category, scores, -np.inf)
    return [table.ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_vector_search_is_exact_cosine(retriever, table):
    hits = retriever.search(TUITION_Q, k=5, mode="vector")
    assert [h.chunk_id for h in hits] == _reference_vector_ids(table, TUITION_Q, 5)
    reference = table.matrix @ load_embedder().embed([TUITION_Q])[0]
    for h in hits:
        assert h.score == pytest.approx(float(reference[table.ids.index(h.chunk_id)]), abs=1e-4)


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_results_are_k_ordered_and_carry_their_metadata(retriever, table, mode):
    hits = retriever.search(TUITION_Q, k=4, mode=mode)
    assert len(hits) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.chunk_id for h in hits}) == 4
    for h in hits:
        row = table.record(table.ids.index(h.chunk_id))
        assert (h.document, h.category, h.section, h.text, h.page) == (
            row["document"],
            row["category"],
            row["section"],
            row["text"],
            row["page"],
        )


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_category_filter(retriever, table, mode):
    hits = retriever.search("deadline fee deposit", k=5, mode=mode, category="housing")
    assert hits and {h.category for h in hits} == {"housing"}
    if mode == "vector":
        assert [h.chunk_id for h in hits] == _reference_vector_ids(
            table, "deadline fee deposit", 5, "housing"
        )


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_exclude_documents(retriever, mode):
    top = retriever.search(TUITION_Q, k=3, mode=mode)
    banned = {top[0].document}
    hits = retriever.search(TUITION_Q, k=5, mode=mode, exclude_documents=banned)
    assert hits and not {h.document for h in hits} & banned


def test_bm25_ranks_an_exact_term_first_and_returns_only_matches(retriever):
    hits = retriever.search("Heritage Recitation Scholarship", k=3, mode="bm25")
    assert hits[0].document.endswith("recitation-and-service.md")
    assert all({"heritage", "recitation", "scholarship"} & set(h.text.lower().split()) for h in hits)
    assert retriever.search("zxqvv", k=3, mode="bm25") == []


@pytest.mark.parametrize(
    ("question", "document", "contains"),
    [
        (TUITION_Q, "tuition.md", "$14,700"),
        (
            "How many credits can I bring over from a community college?",
            "transfer-and-credit.md",
            "60 credits",
        ),
        (
            "Can a friend stay overnight in my dorm room for a whole week?",
            "rules-safety-and-meals.md",
            "overnight",
        ),
    ],
)
def test_hybrid_finds_the_labelled_chunk(retriever, question, document, contains):
    hits = retriever.search(question, k=5, mode="hybrid")
    assert any(h.document.endswith(document) and contains in h.text for h in hits)


def test_unknown_category_mode_and_k(retriever):
    assert retriever.search(TUITION_Q, k=3, category="no-such-category") == []
    assert retriever.search(TUITION_Q, k=0) == []
    with pytest.raises(ValueError, match="search mode"):
        retriever.search(TUITION_Q, k=3, mode="semantic")


def test_count_and_categories(retriever, table):
    assert retriever.count() == len(table.ids)
    assert retriever.categories() == ["admissions", "fees", "housing", "scholarships"]
