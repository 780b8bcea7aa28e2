"""Hybrid fusion maths (retrieval/fusion.py) and the labelled-set guarantee that hybrid is never worse."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT

from teacherforge.retrieval.embedder import load_embedder
from teacherforge.retrieval.fusion import fuse, relative_score, rrf
from teacherforge.retrieval.index import load_chunks
from teacherforge.retrieval.retriever import InMemoryRetriever
from teacherforge.store.database import connect

DENSE = np.array([0.9, 0.5, 0.1, 0.7])
SPARSE = np.array([0.0, 4.0, 2.0, 1.0])
ALL = np.ones(4, dtype=bool)


def test_relative_score_is_weighted_minmax_over_each_side():
    fused = relative_score(DENSE, SPARSE, ALL, alpha=0.7)
    dense = (DENSE - 0.1) / 0.8
    sparse = np.array([0.0, 1.0, 1 / 3, 0.0])  # min-max over the BM25 matches (4, 2, 1)
    np.testing.assert_allclose(fused, 0.7 * dense + 0.3 * sparse)


def test_alpha_extremes_reduce_to_one_side_and_masked_rows_get_nothing():
    assert list(np.argsort(-relative_score(DENSE, SPARSE, ALL, alpha=1.0))) == [0, 3, 1, 2]
    mask = np.array([True, True, False, True])
    fused = relative_score(DENSE, SPARSE, mask, alpha=0.0)
    assert fused[2] == 0 and int(np.argmax(fused)) == 1


def test_weighted_rrf_and_bm25_non_matches_get_no_vote():
    fused = rrf(DENSE, SPARSE, ALL, alpha=0.5, k=60)
    assert fused[0] == pytest.approx(0.5 / 61)  # dense rank 1, no BM25 match
    assert fused[1] == pytest.approx(0.5 / 63 + 0.5 / 61)
    with pytest.raises(ValueError, match="relative or rrf"):
        fuse(DENSE, SPARSE, ALL, "max", 0.5)


def test_hybrid_beats_or_equals_each_single_method_on_the_labelled_set(ingested_template):
    if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) leaves the repo root off the path
        sys.path.insert(0, str(ROOT))
    from teacherforge.evals.retrieval_eval import evaluate, load_questions

    con = connect(ingested_template, read_only=True)
    table = load_chunks(con)
    con.close()
    report = evaluate(InMemoryRetriever(table, load_embedder()), load_questions(table), [1, 3, 5, 10])
    for metric, value in report["hybrid"].items():
        assert value >= report["vector"][metric] and value >= report["bm25"][metric], metric
