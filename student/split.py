"""Held-out split by source document, so the student is tested on documents it never trained on.

Why by document: a held-out question whose documents were in the training set measures memory,
not generalisation. A record's documents come from ``metadata.source_documents`` when the export
has them, else from the chunk ids (``<document hash[:10]>-<position>``: the prefix names the
document). Held-out documents are picked greedily from a seeded order, each step taking the
document that keeps the most records whole and cuts the fewest, until the held-out share is
reached. Records touching both sides are dropped (``straddling``) rather than leak.

An export that already carries ``metadata.split`` (train/validation/test) is used as it is, with
validation and test as the held-out set, unless every record is in train (a small corpus whose
documents could not be separated at export): then this module makes its own split, so ``eval``
still has held-out items.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from teacherforge.student.data import Record


@dataclass
class Split:
    train: list[Record] = field(default_factory=list)
    heldout: list[Record] = field(default_factory=list)
    straddling: list[str] = field(default_factory=list)
    heldout_documents: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "train": len(self.train),
            "heldout": len(self.heldout),
            "straddling": len(self.straddling),
            "heldout_documents": self.heldout_documents,
        }


def record_documents(record: Record) -> frozenset[str]:
    docs = record.metadata.get("source_documents")
    if docs:
        return frozenset(str(d) for d in docs)
    return frozenset(str(c).rsplit("-", 1)[0] for c in record.metadata.get("source_chunk_ids") or [])


def split_by_document(records: Sequence[Record], heldout_share: float = 0.2, seed: int = 0) -> Split:
    """Train / held-out records with no document on both sides (see the module docstring)."""
    if any(r.metadata.get("split") not in (None, "", "train") for r in records):
        return _from_export(records)
    docs_of = [record_documents(r) for r in records]
    target = max(1, round(heldout_share * len(records))) if heldout_share > 0 else 0
    free = sorted({d for docs in docs_of for d in docs})
    random.Random(f"student-split:{seed}").shuffle(free)
    chosen: set[str] = set()

    def counts(docs: set[str]) -> tuple[int, int]:
        whole = sum(1 for d in docs_of if d and d <= docs)
        cut = sum(1 for d in docs_of if d & docs and not d <= docs)
        return whole, cut

    while free and counts(chosen)[0] < target:
        best = max(free[:64], key=lambda d: _score(counts(chosen | {d})))
        chosen.add(best)
        free.remove(best)
    out = Split(heldout_documents=sorted(chosen))
    for record, docs in zip(records, docs_of, strict=True):
        if docs and docs <= chosen:
            out.heldout.append(record)
        elif docs & chosen:
            out.straddling.append(record.sample_id)
        else:
            out.train.append(record)
    return out


def _score(whole_cut: tuple[int, int]) -> tuple[int, int]:
    whole, cut = whole_cut
    return whole - cut, -cut


def _from_export(records: Sequence[Record]) -> Split:
    out = Split()
    for record in records:
        name = record.metadata.get("split") or "train"
        (out.train if name == "train" else out.heldout).append(record)
    return out
