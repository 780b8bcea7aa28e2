"""The ``bm25_index`` table: one row holding the BM25 index of the current chunks.

Why here: retrieval/bm25_index.py builds the index and decides when it is stale; this module only
stores and reads it. The row is the index's sparse score matrix in CSR form (data float32, indices
int32, indptr int64, as raw bytes), its vocabulary (JSON) and a fingerprint of the chunks and
tokeniser settings it was built over, so a reader loads it only when it matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np

from teacherforge.store.table_info import has_table


@dataclass(frozen=True)
class StoredBM25:
    """A stored index: the CSR score matrix over ``num_docs`` chunks and its vocabulary."""

    num_docs: int
    vocab: dict[str, int]
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray


def save_bm25(
    con: duckdb.DuckDBPyConnection,
    fingerprint: str,
    num_docs: int,
    vocab: dict[str, int],
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
) -> None:
    """Replace the stored index (the table keeps one row: the current corpus)."""
    con.execute(
        """CREATE TABLE IF NOT EXISTS bm25_index (
            fingerprint VARCHAR, num_docs BIGINT, vocab JSON, data BLOB, indices BLOB, indptr BLOB)"""
    )
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM bm25_index")
        con.execute(
            "INSERT INTO bm25_index VALUES (?, ?, ?, ?, ?, ?)",
            [
                fingerprint,
                int(num_docs),
                json.dumps(vocab),
                np.ascontiguousarray(data, dtype=np.float32).tobytes(),
                np.ascontiguousarray(indices, dtype=np.int32).tobytes(),
                np.ascontiguousarray(indptr, dtype=np.int64).tobytes(),
            ],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def load_bm25(con: duckdb.DuckDBPyConnection, fingerprint: str) -> StoredBM25 | None:
    """The stored index with this fingerprint, or None (no table, or built over other chunks)."""
    if not has_table(con, "bm25_index"):
        return None
    row = con.execute(
        "SELECT num_docs, vocab, data, indices, indptr FROM bm25_index WHERE fingerprint = ?",
        [fingerprint],
    ).fetchone()
    if row is None:
        return None
    return StoredBM25(
        num_docs=int(row[0]),
        vocab=json.loads(row[1]),
        data=np.frombuffer(row[2], dtype=np.float32),
        indices=np.frombuffer(row[3], dtype=np.int32),
        indptr=np.frombuffer(row[4], dtype=np.int64),
    )


def has_bm25(con: duckdb.DuckDBPyConnection, fingerprint: str) -> bool:
    """True if the stored index has this fingerprint (without reading the index itself)."""
    sql = "SELECT 1 FROM bm25_index WHERE fingerprint = ?"
    return has_table(con, "bm25_index") and bool(con.execute(sql, [fingerprint]).fetchall())
