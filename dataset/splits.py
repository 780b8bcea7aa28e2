"""Train / validation / test by source document, so no document's text is on two sides.

Why by document: a test question whose documents were also in training measures memory, not
generalisation. Documents (not records) are dealt out, and a record goes where all its documents
went. A record whose documents ended up in two splits (it *straddles*) is dropped and reported,
never placed: putting it anywhere would leak a document across the line. Records with no known
document cannot leak one and go to train.

Conversations retrieve from several documents, so a split costs records. The assignment is a local
search that starts with every document in train and moves documents (one at a time, or all of one
record's documents at once) while that lowers

    cost = dropped + 2 × (records test/validation are short of their share) + (records over it)

i.e. one more held-out record is worth dropping up to two others. On a small, tightly connected
corpus no split is worth its cost: everything stays in train and the report says the held-out
splits came out short. Moves are tried in a seeded order: same records, ratios and seed → same split.

``pick_heldout`` is the two-way variant ``teacherforge train`` uses when the export did not split (a
dozen conversations): held-out documents are picked greedily from a seeded order, each step taking
the document that keeps the most records whole and cuts the fewest, until the held-out share is
reached. Both work on plain document sets, one per record, and return a :class:`SplitPlan`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

SPLITS = ("train", "validation", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
SHORT_WEIGHT, OVER_WEIGHT = 2.0, 1.0
MAX_PASSES = 30  # each pass tries every move once; real splits settle in a handful


Outcome = tuple[dict[int, list[int]], list[int], int]  # per-record count changes, kept per split, dropped


class SplitError(ValueError):
    """The ratios are malformed; the message says what to pass."""


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (train, validation, test) → floats summing to 1."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise SplitError(
            f"--split '{text}': give three shares train,validation,test that sum to 1, e.g. 0.8,0.1,0.1"
        )
    return values  # type: ignore[return-value]


def apportion(n: int, ratios: Sequence[float]) -> dict[str, int]:
    """Records per split (largest remainder). Ties go to test, then validation: small sets get a test."""
    exact = [r * n for r in ratios]
    counts = [int(x) for x in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), -i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return dict(zip(SPLITS, counts, strict=True))


@dataclass
class SplitPlan:
    """Which split each record (by position) went to; ``None`` for a straddling record."""

    assignment: list[str | None]
    documents: dict[str, list[str]] = field(default_factory=dict)
    straddling: list[int] = field(default_factory=list)
    targets: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {name: sum(1 for a in self.assignment if a == name) for name in SPLITS}

    def short(self) -> dict[str, int]:
        """Held-out splits that got fewer records than their share (name → records missing)."""
        counts = self.counts()
        return {n: self.targets[n] - counts[n] for n in SPLITS[1:] if counts[n] < self.targets.get(n, 0)}


def assign_splits(
    record_documents: Sequence[frozenset[str]], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0
) -> SplitPlan:
    """Split records by their documents (see the module docstring)."""
    targets = apportion(len(record_documents), ratios)
    docs_of = [sorted(d) for d in record_documents]
    rng = random.Random(f"export-split:{seed}")
    docs = sorted({d for group in docs_of for d in group})
    rng.shuffle(docs)
    records = sorted((i for i, d in enumerate(docs_of) if d), key=lambda i: docs_of[i])
    rng.shuffle(records)
    moves = [docs_of[i] for i in records] + [[d] for d in docs]
    best = None
    for grown in (False, True):  # from all-train, and from grown held-out regions: keep the cheaper
        search = _Search(docs_of, targets)
        if grown:
            search.grow(2, docs)
            search.grow(1, docs)
        _improve(search, moves)
        if best is None or search.cost(search.kept, search.dropped) < best.cost(best.kept, best.dropped):
            best = search
    search = best
    plan = SplitPlan(assignment=[], targets=targets)
    for i in range(len(record_documents)):
        side = search.side(i)
        plan.assignment.append(None if side is None else SPLITS[side])
        if side is None:
            plan.straddling.append(i)
    plan.documents = {name: [] for name in SPLITS}
    for doc, side in sorted(search.split_of.items()):
        plan.documents[SPLITS[side]].append(doc)
    return plan


def document_of_chunk(chunk_id: str) -> str:
    """The content-hash prefix that names a chunk's document (chunk ids are ``<document hash[:10]>-<n>``)."""
    return chunk_id.rsplit("-", 1)[0]


def pick_heldout(
    record_documents: Sequence[frozenset[str]], share: float = 0.2, seed: int = 0, candidates: int = 64
) -> SplitPlan:
    """Records to train or held out (``test``) with no document on both sides; straddling ones get None.

    Greedy (see the module docstring): at least one held-out record when ``share`` > 0, none at 0.
    Each step weighs the first ``candidates`` free documents of the seeded order.
    """
    docs_of = [frozenset(d) for d in record_documents]
    target = max(1, round(share * len(docs_of))) if share > 0 else 0
    every = sorted({d for docs in docs_of for d in docs})
    free = list(every)
    random.Random(f"student-split:{seed}").shuffle(free)
    chosen: set[str] = set()

    def counts(docs: set[str]) -> tuple[int, int]:
        whole = sum(1 for d in docs_of if d and d <= docs)
        cut = sum(1 for d in docs_of if d & docs and not d <= docs)
        return whole, cut

    def score(docs: set[str]) -> tuple[int, int]:
        whole, cut = counts(docs)
        return whole - cut, -cut

    while free and counts(chosen)[0] < target:
        best = max(free[:candidates], key=lambda d: score(chosen | {d}))
        chosen.add(best)
        free.remove(best)
    plan = SplitPlan(
        assignment=[],
        documents={"train": [d for d in every if d not in chosen], "validation": [], "test": sorted(chosen)},
        targets={"train": len(docs_of) - target, "validation": 0, "test": target},
    )
    for i, docs in enumerate(docs_of):
        if docs and docs <= chosen:
            plan.assignment.append("test")
        elif docs & chosen:
            plan.assignment.append(None)
            plan.straddling.append(i)
        else:
            plan.assignment.append("train")
    return plan


def _improve(search: _Search, moves: list[list[str]]) -> None:
    for _ in range(MAX_PASSES):
        improved = False
        for group in moves:
            for target in (2, 1, 0):  # test, validation, train
                improved = search.try_move(group, target) or improved
        if not improved:
            return


class _Search:
    """Documents → split (0 train, 1 validation, 2 test) with per-record counts kept incrementally."""

    def __init__(self, docs_of: list[list[str]], targets: dict[str, int]) -> None:
        self.docs_of = docs_of
        self.targets = [targets[name] for name in SPLITS]
        self.by_doc: dict[str, list[int]] = {}
        for i, docs in enumerate(docs_of):
            for doc in docs:
                self.by_doc.setdefault(doc, []).append(i)
        self.split_of = dict.fromkeys(self.by_doc, 0)
        self.counts = [[len(docs), 0, 0] for docs in docs_of]  # documents of each record per split
        self.kept = [len(docs_of), 0, 0]
        self.dropped = 0

    def side(self, i: int) -> int | None:
        size = len(self.docs_of[i])
        if size == 0:
            return 0
        return next((s for s in range(3) if self.counts[i][s] == size), None)

    def cost(self, kept: list[int], dropped: int) -> float:
        total = float(dropped)
        for s in (1, 2):
            gap = kept[s] - self.targets[s]
            total += OVER_WEIGHT * gap if gap > 0 else -SHORT_WEIGHT * gap
        return total

    def evaluate(self, moving: list[str], target: int) -> Outcome:
        """(per-record count changes, kept, dropped) if ``moving`` went to ``target``; nothing changes."""
        delta: dict[int, list[int]] = {}
        for doc in moving:
            source = self.split_of[doc]
            for i in self.by_doc[doc]:
                change = delta.setdefault(i, [0, 0, 0])
                change[source] -= 1
                change[target] += 1
        kept, dropped = list(self.kept), self.dropped
        for i, change in delta.items():
            before = self.side(i)
            size = len(self.docs_of[i])
            after = next((s for s in range(3) if self.counts[i][s] + change[s] == size), None)
            if before is not None:
                kept[before] -= 1
            else:
                dropped -= 1
            if after is not None:
                kept[after] += 1
            else:
                dropped += 1
        return delta, kept, dropped

    def apply(self, moving: list[str], target: int, outcome: Outcome) -> None:
        delta, self.kept, self.dropped = outcome
        for i, change in delta.items():
            self.counts[i] = [c + d for c, d in zip(self.counts[i], change, strict=True)]
        for doc in moving:
            self.split_of[doc] = target

    def try_move(self, group: list[str], target: int) -> bool:
        """Move ``group``'s documents to ``target`` if that lowers the cost; True if it did."""
        moving = [d for d in group if self.split_of[d] != target]
        if not moving:
            return False
        outcome = self.evaluate(moving, target)
        if self.cost(outcome[1], outcome[2]) >= self.cost(self.kept, self.dropped) - 1e-9:
            return False
        self.apply(moving, target, outcome)
        return True

    def grow(self, target: int, order: list[str]) -> None:
        """Grow one connected region of train documents into ``target`` until it holds its share.

        Why a region: documents that share conversations go together, so only the region's edge
        cuts records (a scattered pick cuts around every document). Each step takes the neighbour
        that completes the most records for the fewest newly dropped ones.
        """
        rank = {d: n for n, d in enumerate(order)}
        frontier: set[str] = set()
        while self.kept[target] < self.targets[target]:
            free = [d for d in frontier if self.split_of[d] == 0]
            if not free:
                free = [d for d in order if self.split_of[d] == 0][:1]
                if not free:
                    return
            best, best_key, best_outcome = None, None, None
            for doc in free:
                outcome = self.evaluate([doc], target)
                key = (outcome[1][target] - self.kept[target] - (outcome[2] - self.dropped), -rank[doc])
                if best_key is None or key > best_key:
                    best, best_key, best_outcome = doc, key, outcome
            self.apply([best], target, best_outcome)
            frontier.discard(best)
            frontier.update(d for i in self.by_doc[best] for d in self.docs_of[i] if self.split_of[d] == 0)
