"""Embedders: the default int8 ONNX MiniLM, and the sentence-transformers path with the bundled model.

The ``st:bundled`` test needs torch and sentence-transformers (CI: ``pip install torch==2.13.0
--index-url https://download.pytorch.org/whl/cpu sentence-transformers``); it is skipped without them.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from teacherforge.retrieval.embedder import EmbedderUnavailable, load_embedder

SENTENCES = [
    "Tuition for an international undergraduate is $14,700 per semester.",
    "A late payment costs a flat $75 fee.",
    "Quiet hours in the residence halls start at 11 pm.",
]


def test_default_embedder_is_normalised_384d_and_semantic():
    embedder = load_embedder()
    vectors = embedder.embed(SENTENCES + ["How much do foreign students pay in tuition?"])
    assert vectors.shape == (4, 384) and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert int(np.argmax(vectors[:3] @ vectors[3])) == 0


def test_unknown_embedder_name_says_what_to_use():
    with pytest.raises(EmbedderUnavailable, match="st:<model id or path>"):
        load_embedder("word2vec")


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs torch and sentence-transformers (pip install torch==2.13.0 sentence-transformers)",
)
def test_bundled_sentence_transformers_model_matches_the_onnx_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = load_embedder("st:bundled")
    assert st.dim == 384 and st.model_id.startswith("st:")
    onnx = load_embedder().embed(SENTENCES)
    cosines = np.sum(st.embed(SENTENCES) * onnx, axis=1)
    assert cosines.min() > 0.99


class CountingEmbedder:
    """The real embedder, noting every text it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.model_id, self.dim, self.texts = inner, inner.model_id, inner.dim, []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self.inner.embed(texts)


def test_a_query_that_is_a_chunks_text_reuses_its_stored_vector_which_is_what_embedding_gives(db_path):
    """A plan's anchor search queries with the anchor chunk's text; ingest embedded that same text."""
    from teacherforge.graph.runner import build_retriever
    from teacherforge.retrieval.embedder import QueryVectors
    from teacherforge.store.database import connect

    con = connect(db_path)
    retriever = build_retriever(con)
    con.close()
    table, counting = retriever.table, CountingEmbedder(retriever.embedder)
    queries = QueryVectors(counting, known=retriever._queries.known)
    for row in (0, len(table.ids) // 2, len(table.ids) - 1):
        stored = queries.vector(table.texts[row])
        assert not stored.flags.writeable
        fresh = retriever.embedder.embed([table.texts[row]])[0]
        assert float(stored @ fresh) > 0.9999  # the same text through the same model
    assert counting.texts == []  # none of them was embedded again
    queries.vector("a question no chunk has as its text")
    assert counting.texts == ["a question no chunk has as its text"]
