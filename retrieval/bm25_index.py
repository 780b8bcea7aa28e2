"""The BM25 index, persisted in the DuckDB file so ``search`` and ``run`` start fast.

Why: building a ``bm25s`` index means tokenising every chunk; at 100k chunks that took 9-60 s here
(docs/retrieval.md), paid again by every ``teacherforge search`` and every ``run``. Ingest saves
the index (its sparse score matrix and vocabulary) in a ``bm25_index`` table (store/bm25_table.py);
readers load it when its fingerprint (the ordered chunk ids, which are content hashes, plus the
tokeniser settings) matches the chunks they loaded, and otherwise build it in memory as before.
"""

from __future__ import annotations

import hashlib
import json

import duckdb

from teacherforge.store import bm25_table, chunk_tables

SETTINGS = {"method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en", "format": 1}


def fingerprint(ids: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode())
    for chunk_id in ids:
        digest.update(chunk_id.encode() + b"\n")
    return digest.hexdigest()


def build(texts: list[str]):
    """A fresh index over ``texts`` (row i of the index is texts[i])."""
    import bm25s

    model = bm25s.BM25(method=SETTINGS["method"], k1=SETTINGS["k1"], b=SETTINGS["b"])
    if texts:
        tokens = bm25s.tokenize(texts, stopwords=SETTINGS["stopwords"], show_progress=False)
        model.index(tokens, show_progress=False)
    return model


def save(con: duckdb.DuckDBPyConnection, ids: list[str], model) -> None:
    """Replace the stored index (one row: the current corpus)."""
    scores = model.scores
    bm25_table.save_bm25(
        con,
        fingerprint(ids),
        int(scores["num_docs"]),
        model.vocab_dict,
        scores["data"],
        scores["indices"],
        scores["indptr"],
    )


def load(con: duckdb.DuckDBPyConnection, ids: list[str]):
    """The stored index if it was built over exactly these chunks, else None."""
    import bm25s

    if not ids:
        return None
    stored = bm25_table.load_bm25(con, fingerprint(ids))
    if stored is None:
        return None
    model = bm25s.BM25(method=SETTINGS["method"], k1=SETTINGS["k1"], b=SETTINGS["b"])
    model.scores = {
        "data": stored.data,
        "indices": stored.indices,
        "indptr": stored.indptr,
        "num_docs": stored.num_docs,
    }
    model.vocab_dict = stored.vocab
    model.unique_token_ids_set = set(model.vocab_dict.values())
    model.nonoccurrence_array = None  # only the bm25l/bm25+ methods use it
    return model


def refresh(con: duckdb.DuckDBPyConnection) -> bool:
    """Rebuild and save the index if the stored one does not match the chunks; True if rebuilt."""
    ids = chunk_tables.chunk_ids(con)
    if not ids:
        return False
    if bm25_table.has_bm25(con, fingerprint(ids)):
        return False
    save(con, ids, build(chunk_tables.chunk_texts(con)))
    return True
