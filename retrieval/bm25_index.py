"""The BM25 index, persisted in the DuckDB file so ``search`` and ``run`` start fast.

Why: building a ``bm25s`` index means tokenising every chunk; at 100k chunks that took 9-60 s here
(docs/retrieval.md), paid again by every ``teacherforge search`` and every ``run``. Ingest saves
the index (its sparse score matrix and vocabulary) in a ``bm25_index`` table; readers load it
when its fingerprint (the ordered chunk ids, which are content hashes, plus the tokeniser
settings) matches the chunks they loaded, and otherwise build it in memory as before.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import numpy as np

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


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    sql = "SELECT 1 FROM information_schema.tables WHERE table_name = 'bm25_index'"
    return bool(con.execute(sql).fetchall())


def save(con: duckdb.DuckDBPyConnection, ids: list[str], model) -> None:
    """Replace the stored index (one row: the current corpus)."""
    con.execute(
        """CREATE TABLE IF NOT EXISTS bm25_index (
            fingerprint VARCHAR, num_docs BIGINT, vocab JSON, data BLOB, indices BLOB, indptr BLOB)"""
    )
    scores = model.scores
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM bm25_index")
        con.execute(
            "INSERT INTO bm25_index VALUES (?, ?, ?, ?, ?, ?)",
            [
                fingerprint(ids),
                int(scores["num_docs"]),
                json.dumps(model.vocab_dict),
                np.ascontiguousarray(scores["data"], dtype=np.float32).tobytes(),
                np.ascontiguousarray(scores["indices"], dtype=np.int32).tobytes(),
                np.ascontiguousarray(scores["indptr"], dtype=np.int64).tobytes(),
            ],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def load(con: duckdb.DuckDBPyConnection, ids: list[str]):
    """The stored index if it was built over exactly these chunks, else None."""
    import bm25s

    if not ids or not _has_table(con):
        return None
    row = con.execute(
        "SELECT num_docs, vocab, data, indices, indptr FROM bm25_index WHERE fingerprint = ?",
        [fingerprint(ids)],
    ).fetchone()
    if row is None:
        return None
    model = bm25s.BM25(method=SETTINGS["method"], k1=SETTINGS["k1"], b=SETTINGS["b"])
    model.scores = {
        "data": np.frombuffer(row[2], dtype=np.float32),
        "indices": np.frombuffer(row[3], dtype=np.int32),
        "indptr": np.frombuffer(row[4], dtype=np.int64),
        "num_docs": int(row[0]),
    }
    model.vocab_dict = json.loads(row[1])
    model.unique_token_ids_set = set(model.vocab_dict.values())
    model.nonoccurrence_array = None  # only the bm25l/bm25+ methods use it
    return model


def refresh(con: duckdb.DuckDBPyConnection) -> bool:
    """Rebuild and save the index if the stored one does not match the chunks; True if rebuilt."""
    ids = con.execute("SELECT chunk_id FROM chunks ORDER BY chunk_id").fetchnumpy()["chunk_id"].tolist()
    if not ids:
        return False
    sql = "SELECT 1 FROM bm25_index WHERE fingerprint = ?"
    if _has_table(con) and con.execute(sql, [fingerprint(ids)]).fetchall():
        return False
    texts = con.execute("SELECT text FROM chunks ORDER BY chunk_id").fetchnumpy()["text"].tolist()
    save(con, ids, build(texts))
    return True
