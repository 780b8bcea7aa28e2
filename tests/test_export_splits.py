"""The split by source document (dataset/splits.py): no document on two sides, deterministic, and
honest about what it costs."""

from __future__ import annotations

import random

import pytest

from teacherforge.dataset.splits import SplitError, apportion, assign_splits, parse_ratios


def topic_corpus(n_records: int, n_docs: int, seed: int = 1) -> list[frozenset[str]]:
    """Records that each retrieve 1-3 neighbouring documents of a ring of topics (like a real corpus)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_records):
        base = rng.randrange(n_docs)
        k = rng.choice([1, 1, 2, 2, 3])
        out.append(frozenset(f"doc{(base + rng.randrange(-3, 4)) % n_docs:03d}" for _ in range(k)))
    return out


def check_disjoint(records: list[frozenset[str]], plan) -> dict[str, str]:
    side_of: dict[str, str] = {}
    for name, docs in plan.documents.items():
        for doc in docs:
            assert doc not in side_of, f"{doc} in {side_of.get(doc)} and {name}"
            side_of[doc] = name
    for docs, name in zip(records, plan.assignment, strict=True):
        sides = {side_of[d] for d in docs}
        if name is None:
            assert len(sides) > 1  # dropped only when it really straddles
        else:
            assert sides <= {name}
    return side_of


def test_no_document_in_two_splits_and_shares_are_met_on_a_topic_corpus():
    records = topic_corpus(1000, 200)
    plan = assign_splits(records, (0.8, 0.1, 0.1), seed=0)
    check_disjoint(records, plan)
    counts = plan.counts()
    assert counts["test"] >= 90 and counts["validation"] >= 90
    assert len(plan.straddling) < 100  # regions of related documents, not a scatter that cuts everything
    assert sum(counts.values()) + len(plan.straddling) == len(records)


def test_same_records_in_any_order_give_the_same_split_and_the_seed_changes_it():
    records = topic_corpus(300, 60)
    plan = assign_splits(records, seed=3)
    shuffled = list(records)
    random.Random(9).shuffle(shuffled)
    again = assign_splits(shuffled, seed=3)
    assert again.documents == plan.documents
    assert assign_splits(records, seed=4).documents != plan.documents


def test_a_straddling_record_is_dropped_and_reported_not_placed():
    # a chain d0-d1-...-d9: any held-out region cuts the records across its edge
    records = [frozenset({f"d{i}", f"d{i + 1}"}) for i in range(9)] * 3
    plan = assign_splits(records, (0.8, 0.1, 0.1), seed=0)
    side_of = check_disjoint(records, plan)
    assert plan.counts()["test"] >= 3 and plan.straddling
    assert all(len({side_of[d] for d in records[i]}) == 2 for i in plan.straddling)
    assert len(plan.straddling) <= 12  # two cuts of three records per held-out region at most


def test_an_entangled_corpus_stays_in_train_and_says_the_held_out_splits_are_short():
    docs = [f"d{i}" for i in range(6)]
    records = [frozenset(docs[i : i + 4]) | {docs[(i + 3) % 6]} for i in range(6)] * 3
    plan = assign_splits(records, (0.8, 0.1, 0.1), seed=0)
    check_disjoint(records, plan)
    assert plan.counts()["train"] + len(plan.straddling) == len(records)
    assert plan.short() == {"validation": plan.targets["validation"], "test": plan.targets["test"]}


def test_records_without_documents_go_to_train():
    plan = assign_splits([frozenset(), frozenset(), frozenset({"a"})], (0.0, 0.0, 1.0))
    assert plan.assignment == ["train", "train", "test"]


def test_apportion_gives_small_sets_a_test_record_first():
    assert apportion(10, (0.8, 0.1, 0.1)) == {"train": 8, "validation": 1, "test": 1}
    assert apportion(5, (0.8, 0.1, 0.1)) == {"train": 4, "validation": 0, "test": 1}
    assert apportion(0, (0.8, 0.1, 0.1)) == {"train": 0, "validation": 0, "test": 0}


@pytest.mark.parametrize("text", ["0.8,0.2", "0.8,0.1,0.2", "a,b,c", "1.2,-0.1,-0.1"])
def test_bad_ratios_name_the_flag_and_the_fix(text):
    with pytest.raises(SplitError, match="--split .*sum to 1"):
        parse_ratios(text)
    assert parse_ratios(" 0.7, 0.2 ,0.1") == (0.7, 0.2, 0.1)
