"""Search latency of the embedded store at 10k and 100k synthetic chunks; prints one JSON line.

Why: the teacher retrieves on every user turn, so per-query latency bounds run throughput, and
the choice "numpy matrix loaded from DuckDB" over "DuckDB array_cosine_similarity per query"
should rest on numbers. Chunks are synthetic (Zipf-like words, ~800 characters; random 384-d
vectors) and generated inside DuckDB in the real ``chunks`` schema, so the measured path is the
production one: ``load_chunks`` -> ``InMemoryRetriever`` (numpy + bm25s + fusion), with the BM25
index built fresh and loaded from the file as ingest stores it. The query
embedding is excluded (it is the same for every store: one MiniLM call, see docs/retrieval.md).

Run from the repo root: ``python -m evals.bench.retrieval_latency [--sizes 10000 100000] [--queries 30]``;
``--embed [minilm-onnx-int8 st:bundled]`` measures embedding chunks/s on the example corpus instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from teacherforge.evals.paths import checkout_root
from teacherforge.retrieval import bm25_index
from teacherforge.retrieval.index import ensure_index_schema, load_chunks
from teacherforge.retrieval.retriever import InMemoryRetriever

DIM = 384
VOCAB = 20_000


class FixedQueryEmbedder:
    """Returns precomputed query vectors, so only search is timed."""

    model_id, dim = "synthetic", DIM

    def __init__(self) -> None:
        self.next: np.ndarray | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.next[None, :]


def build(con: duckdb.DuckDBPyConnection, n: int) -> float:
    started = time.perf_counter()
    ensure_index_schema(con, DIM)
    con.execute("SELECT setseed(0.42)")
    con.execute(
        f"""
        INSERT INTO chunks (chunk_id, document, category, section, start_char, end_char, text, embedding)
        SELECT printf('%010d', range), 'doc' || (range // 20), 'cat' || (range // 20 % 10), '', 0, 800,
            array_to_string(list_transform(range(120),
                lambda x: 'w' || floor(pow(random(), 3) * {VOCAB})::INT), ' '),
            list_transform(range({DIM}), lambda x: (random() - 0.5)::FLOAT)::FLOAT[{DIM}]
        FROM range({n})"""
    )
    documents = "SELECT DISTINCT document, 'h', '', category, 20, 'synthetic', now() FROM chunks"
    con.execute(f"INSERT INTO documents {documents}")
    return time.perf_counter() - started


def timed(fn, repeats: list) -> dict:
    samples = []
    for args in repeats:
        started = time.perf_counter()
        fn(*args)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
    }


def duckdb_topk(con: duckdb.DuckDBPyConnection, vector: np.ndarray, k: int) -> list:
    sql = (
        f"SELECT chunk_id, array_cosine_similarity(embedding, ?::FLOAT[{DIM}]) AS s "
        "FROM chunks ORDER BY s DESC LIMIT ?"
    )
    return con.execute(sql, [vector.tolist(), k]).fetchall()


def numpy_topk(matrix: np.ndarray, vector: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ vector
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def bench(n: int, queries: int, k: int, threads: int) -> dict:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "bench.duckdb"))
        con.execute(f"SET threads = {threads}")
        build_s = build(con, n)
        started = time.perf_counter()
        table = load_chunks(con)
        load_s = time.perf_counter() - started
        table.matrix /= np.linalg.norm(table.matrix, axis=1, keepdims=True)
        embedder = FixedQueryEmbedder()
        started = time.perf_counter()
        retriever = InMemoryRetriever(table, embedder)
        bm25_index_s = time.perf_counter() - started
        started = time.perf_counter()
        bm25_index.save(con, table.ids, retriever._bm25)  # what ingest does after writing chunks
        bm25_save_s = time.perf_counter() - started
        started = time.perf_counter()
        InMemoryRetriever(load_chunks(con), embedder)  # what search/run do at start with a stored index
        startup_s = time.perf_counter() - started
        vectors = rng.normal(size=(queries, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        words = (rng.random((queries, 4)) ** 3 * VOCAB).astype(int)
        texts = [" ".join(f"w{w}" for w in row) for row in words]

        def search(mode: str, vector: np.ndarray, text: str, category: str | None = None) -> None:
            embedder.next = vector
            retriever.search(text, k, mode, category)

        same = [
            [table.ids[i] for i in numpy_topk(table.matrix, v, k)] == [r[0] for r in duckdb_topk(con, v, k)]
            for v in vectors[:5]
        ]
        result = {
            "chunks": n,
            "k": k,
            "queries": queries,
            "build_s": round(build_s, 2),
            "load_chunks_s": round(load_s, 2),
            "bm25_build_s": round(bm25_index_s, 2),
            "bm25_save_s": round(bm25_save_s, 2),
            "startup_with_stored_bm25_s": round(startup_s, 2),
            "duckdb_array_cosine_topk": timed(lambda v: duckdb_topk(con, v, k), [(v,) for v in vectors]),
            "numpy_topk": timed(lambda v: numpy_topk(table.matrix, v, k), [(v,) for v in vectors]),
            "numpy_and_duckdb_agree": all(same),
        }
        for mode in ("vector", "bm25", "hybrid"):
            result[f"retriever_{mode}"] = timed(
                search, [(mode, v, t) for v, t in zip(vectors, texts, strict=True)]
            )
        result["retriever_hybrid_category"] = timed(
            search, [("hybrid", v, t, "cat3") for v, t in zip(vectors, texts, strict=True)]
        )
        con.close()
    return result


def embed_throughput(names: list[str], corpus: Path) -> list[dict]:
    """Chunks/s of each embedder over the example corpus's real chunks (800 characters, batch 32)."""
    from teacherforge.retrieval.chunking import chunk_document
    from teacherforge.retrieval.documents import load_path
    from teacherforge.retrieval.embedder import EmbedderUnavailable, load_embedder

    texts = [c.text for f in sorted(corpus.rglob("*.*")) for d in load_path(f) for c in chunk_document(d)]
    out = []
    for name in names:
        try:
            embedder = load_embedder(name)
        except EmbedderUnavailable as exc:
            out.append({"embedder": name, "error": str(exc)})
            continue
        embedder.embed(texts[:4])  # warm-up
        started = time.perf_counter()
        for i in range(0, len(texts), 32):
            embedder.embed(texts[i : i + 32])
        seconds = time.perf_counter() - started
        out.append(
            {
                "embedder": name,
                "chunks": len(texts),
                "s": round(seconds, 1),
                "chunks_per_s": round(len(texts) / seconds, 1),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2).")
    parser.add_argument(
        "--embed", nargs="*", metavar="EMBEDDER", help="Measure chunks/s instead (default embedder)."
    )
    args = parser.parse_args(argv)
    if args.embed is not None:
        corpus = checkout_root() / "examples" / "university"
        results = embed_throughput(args.embed or ["minilm-onnx-int8"], corpus)
        print(json.dumps({"cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "embedding": results}))
        return
    results = [bench(n, args.queries, args.k, args.threads) for n in args.sizes]
    print(json.dumps({"cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "results": results}))


if __name__ == "__main__":
    main()
