"""Held-out split by source document, so the student is tested on documents it never trained on.

Why by document: a held-out question whose documents were in the training set measures memory,
not generalisation. A record's documents come from ``metadata.source_documents`` when the export
has them, else from the chunk ids (``<document hash[:10]>-<position>``: the prefix names the
document). The split itself is the export's module, dataset/splits.py (``pick_heldout``): held-out
documents are picked greedily from a seeded order until the held-out share is reached, and records
touching both sides are dropped (``straddling``) rather than leak.

An export that already carries ``metadata.split`` (train/validation/test) is used as it is, with
validation and test as the held-out set, unless every record is in train (a small corpus whose
documents could not be separated at export): then this module makes its own split, so ``eval``
still has held-out items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from teacherforge.dataset.splits import document_of_chunk, pick_heldout
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
    return frozenset(document_of_chunk(str(c)) for c in record.metadata.get("source_chunk_ids") or [])


def split_by_document(records: Sequence[Record], heldout_share: float = 0.2, seed: int = 0) -> Split:
    """Train / held-out records with no document on both sides (see the module docstring)."""
    if any(r.metadata.get("split") not in (None, "", "train") for r in records):
        return _from_export(records)
    plan = pick_heldout([record_documents(r) for r in records], heldout_share, seed)
    out = Split(heldout_documents=plan.documents["test"])
    for record, side in zip(records, plan.assignment, strict=True):
        if side is None:
            out.straddling.append(record.sample_id)
        else:
            (out.heldout if side == "test" else out.train).append(record)
    return out


def _from_export(records: Sequence[Record]) -> Split:
    out = Split()
    for record in records:
        name = record.metadata.get("split") or "train"
        (out.train if name == "train" else out.heldout).append(record)
    return out
