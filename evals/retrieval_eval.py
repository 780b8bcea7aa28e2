"""Retrieval quality on the labelled questions: recall@k and MRR for vector, BM25 and hybrid search.

Why: the teacher is only as grounded as what it retrieves, and the default search mode should be
the one that measures best. Labels name a file and a substring (``contains``), not chunk ids, so
they survive re-chunking; they are mapped to chunk ids here, and a label that matches no chunk
is an error (fix the label or the chunker).

Run from the repo root:
    python -m evals.retrieval_eval                      # ingests examples/university into a temp DB
    python -m evals.retrieval_eval --db forge.duckdb --k 1 3 5 10 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from teacherforge.evals.paths import checkout_root
from teacherforge.retrieval.embedder import load_embedder
from teacherforge.retrieval.fusion import DEFAULT_FUSION, RRF_K
from teacherforge.retrieval.index import ChunkTable, load_chunks
from teacherforge.retrieval.retriever import SEARCH_MODES, InMemoryRetriever
from teacherforge.store.database import connect

ROOT = checkout_root()
LABELS = ROOT / "evals" / "retrieval_labels.jsonl"
CORPUS = ROOT / "examples" / "university"


@dataclass
class Question:
    question: str
    relevant: set[str]


def load_questions(table: ChunkTable, labels: Path = LABELS) -> list[Question]:
    """Map each label's (file, contains) to the chunk ids of that file whose text contains it."""
    questions, problems = [], []
    for line in labels.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        relevant: set[str] = set()
        for label in record["relevant"]:
            ids = {
                table.ids[i]
                for i, doc in enumerate(table.documents)
                if Path(doc).as_posix().endswith(label["file"]) and label["contains"] in table.texts[i]
            }
            if not ids:
                problems.append(
                    f"{record['question']!r}: no chunk of {label['file']} contains {label['contains']!r}"
                )
            relevant |= ids
        questions.append(Question(record["question"], relevant))
    if problems:
        raise SystemExit("labels that match no chunk:\n  " + "\n  ".join(problems))
    return questions


def evaluate(retriever: InMemoryRetriever, questions: list[Question], ks: list[int]) -> dict[str, dict]:
    """Per mode: mean recall@k (share of a question's relevant chunks in the top k) and MRR@max(k)."""
    depth = max(ks)
    report: dict[str, dict] = {}
    for mode in SEARCH_MODES:
        recall = {k: 0.0 for k in ks}
        mrr = 0.0
        for q in questions:
            ranked = [h.chunk_id for h in retriever.search(q.question, depth, mode)]
            for k in ks:
                recall[k] += len(q.relevant & set(ranked[:k])) / len(q.relevant)
            first = next((i for i, c in enumerate(ranked, start=1) if c in q.relevant), None)
            mrr += 1.0 / first if first else 0.0
        n = len(questions)
        report[mode] = {
            **{f"recall@{k}": round(recall[k] / n, 4) for k in ks},
            f"mrr@{depth}": round(mrr / n, 4),
        }
    return report


def ingest_corpus(corpus: Path, db: Path) -> None:
    from teacherforge.retrieval.ingest import ingest_into

    ingest_into(db, [corpus])


def print_table(report: dict[str, dict], n: int, out=sys.stdout) -> None:
    columns = list(next(iter(report.values())))
    out.write(f"{n} labelled questions\n")
    out.write("| mode | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n")
    for mode, row in report.items():
        out.write(f"| {mode} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", type=Path, help="An ingested database (default: ingest --corpus into a temp file)."
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument(
        "--fusion", choices=["relative", "rrf"], default=DEFAULT_FUSION, help="Hybrid fusion."
    )
    parser.add_argument("--alpha", type=float, help="Vector weight (default 0.7 relative, 0.5 rrf).")
    parser.add_argument("--rrf-k", type=int, default=RRF_K, help="RRF constant (default 60).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            db = Path(tmp) / "eval.duckdb"
            ingest_corpus(args.corpus, db)
        con = connect(db, read_only=True)
        table = load_chunks(con)
        con.close()
    embedder = load_embedder(table.embedder or "minilm-onnx-int8")
    retriever = InMemoryRetriever(table, embedder, args.fusion, args.alpha, args.rrf_k)
    questions = load_questions(table, args.labels)
    report = evaluate(retriever, questions, sorted(set(args.k)))
    if args.json:
        print(
            json.dumps(
                {
                    "questions": len(questions),
                    "chunks": len(table.ids),
                    "fusion": retriever.fusion,
                    "alpha": retriever.alpha,
                    "rrf_k": args.rrf_k,
                    **report,
                }
            )
        )
    else:
        print_table(report, len(questions))
        print(f"hybrid: {retriever.fusion} fusion, alpha {retriever.alpha}")
    return report


if __name__ == "__main__":
    main()
