"""The ``embedding_cache`` table: one vector per (model id, text hash), beside the chunk index.

Why here: the cache's statements (lookup, insert, prune) sit in one module; retrieval/embed_cache.py
decides what to look up and what to embed. The text hash is sha256 hex of the UTF-8 text, the same
string DuckDB's ``sha256(text)`` gives, which lets the prune join the cache to chunk text in SQL.
"""

from __future__ import annotations

import duckdb
import numpy as np


def ensure_embedding_cache(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS embedding_cache (
            model VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, embedding FLOAT[] NOT NULL,
            PRIMARY KEY (model, text_hash)
        )"""
    )


def cached_vectors(con: duckdb.DuckDBPyConnection, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
    """The stored float32 vectors of ``model`` for those of ``hashes`` the cache holds."""
    if not hashes:
        return {}
    sql = (
        "SELECT text_hash, embedding FROM embedding_cache "
        "WHERE model = ? AND text_hash IN (SELECT unnest(?::VARCHAR[]))"
    )
    cols = con.execute(sql, [model, sorted(set(hashes))]).fetchnumpy()
    pairs = zip(cols["text_hash"].tolist(), cols["embedding"], strict=True)
    return {h: np.asarray(v, dtype=np.float32) for h, v in pairs}


def store_vectors(con: duckdb.DuckDBPyConnection, model: str, hashes: list[str], vectors: np.ndarray) -> None:
    """Add vectors (row-aligned with ``hashes``); an entry already cached is kept as it is."""
    con.executemany(
        "INSERT OR IGNORE INTO embedding_cache VALUES (?, ?, ?)",
        [[model, h, v.tolist()] for h, v in zip(hashes, vectors, strict=True)],
    )


def prune_embedding_cache(con: duckdb.DuckDBPyConnection) -> int:
    """Remove entries no indexed chunk uses (by the embedder recorded for its document); how many went."""
    ensure_embedding_cache(con)
    before = con.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
    con.execute(
        """
        DELETE FROM embedding_cache e WHERE NOT EXISTS (
            SELECT 1 FROM chunks c JOIN documents d ON d.path = c.document
            WHERE d.embedder = e.model AND sha256(c.text) = e.text_hash
        )"""
    )
    return before - con.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
