"""The (model id, text hash) embedding cache and the ingest progress hooks."""

from __future__ import annotations

import functools

import pytest
from test_loaders_mixed import HashEmbedder

from teacherforge.retrieval import ingest as ingest_module
from teacherforge.retrieval.embed_cache import CachedEmbedder
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog

SECTIONS = [
    f"## Part {i}\n\nPart {i} says the fee is {i * 10} dollars. It is due in week {i}.\n" for i in range(8)
]


class Bar:
    def __init__(self):
        self.plans: list[tuple[int, int]] = []
        self.done = 0

    def planned(self, documents: int, chunks: int) -> None:
        self.plans.append((documents, chunks))

    def advance(self, chunks: int) -> None:
        self.done += chunks


@pytest.fixture
def setup(tmp_path, monkeypatch):
    embedder = HashEmbedder()
    monkeypatch.setattr(ingest_module, "load_embedder", lambda *a: embedder)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\n" + "\n".join(SECTIONS))
    con = connect(tmp_path / "forge.duckdb")
    log = EventLog(con)
    yield folder, con, log, embedder
    log.close()
    con.close()


def test_changed_file_embeds_only_its_new_texts_and_progress_adds_up(setup):
    folder, con, log, embedder = setup
    bar = Bar()
    first = ingest_module.ingest(con, log, [folder], progress=bar)
    assert first.chunks == 9 and first.embedded == 9 and bar.plans == [(1, 9)] and bar.done == 9
    (folder / "a.md").write_text("# A\n\n" + "\n".join(SECTIONS).replace("fee is 30", "fee is 35"))
    before, bar = embedder.texts, Bar()
    second = ingest_module.ingest(con, log, [folder], progress=bar)
    assert second.updated and second.chunks == 9
    assert embedder.texts - before == 1 and second.embedded == 1
    assert bar.plans == [(1, 9)] and bar.done == 9
    # pruned: the cache holds exactly the texts the index uses
    assert con.execute("SELECT count(*) FROM embedding_cache").fetchone()[0] == 9


def test_cache_is_keyed_by_model(setup):
    _, con, _, embedder = setup
    cached = CachedEmbedder(embedder, con)
    cached.embed(["alpha", "beta", "alpha"])
    assert (cached.hits, cached.misses, embedder.texts) == (0, 2, 2)
    cached.embed(["beta", "gamma"])
    assert (cached.hits, cached.misses, embedder.texts) == (1, 3, 3)
    other = HashEmbedder()
    other.model_id = "another-model"
    CachedEmbedder(other, con).embed(["alpha"])
    assert other.texts == 1


def test_an_interrupted_ingest_resumes_from_the_cache(setup, monkeypatch):
    folder, con, log, embedder = setup
    monkeypatch.setattr(ingest_module, "CachedEmbedder", functools.partial(CachedEmbedder, batch_size=2))
    real_embed = embedder.embed
    calls = {"n": 0}

    def flaky(texts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_embed(texts)

    monkeypatch.setattr(embedder, "embed", flaky)
    with pytest.raises(KeyboardInterrupt):
        ingest_module.ingest(con, log, [folder])
    assert embedder.texts == 4
    monkeypatch.setattr(embedder, "embed", real_embed)
    summary = ingest_module.ingest(con, log, [folder])
    assert summary.chunks == 9 and summary.embedded == 5 and embedder.texts == 9


def test_bm25_index_is_stored_at_ingest_and_matches_a_fresh_build(setup):
    import numpy as np

    from teacherforge.retrieval import bm25_index
    from teacherforge.retrieval.index import load_chunks
    from teacherforge.retrieval.retriever import InMemoryRetriever

    folder, con, log, embedder = setup
    ingest_module.ingest(con, log, [folder])
    table = load_chunks(con)
    assert table.bm25 is not None
    stored = InMemoryRetriever(table, embedder)
    table.bm25 = None
    fresh = InMemoryRetriever(table, embedder)
    for query in ["fee due week", "Part 3 dollars", "nothing-matches-here"]:
        np.testing.assert_allclose(stored.bm25_scores(query), fresh.bm25_scores(query), rtol=1e-6)
    assert bm25_index.refresh(con) is False
    (folder / "b.md").write_text("# B\n\nAnother fee.\n")
    summary = ingest_module.ingest(con, log, [folder])
    assert summary.added and load_chunks(con).bm25.scores["num_docs"] == 10


def test_a_folder_with_nothing_readable_ingests_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "load_embedder", lambda *a: HashEmbedder())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "empty.md").write_text("")
    con = connect(tmp_path / "forge.duckdb")
    log = EventLog(con)
    summary = ingest_module.ingest(con, log, [tmp_path / "docs"])
    assert summary.chunks == 0 and len(summary.skipped) == 1
    log.close()
    con.close()
