"""Duplicate detection over texts: exact, then near duplicates by MinHash or by embedding cosine.

Pure: texts in, ``(dropped, kept, similarity, how)`` index pairs out; no database, no events. The
pass over a run's accepted samples, which records every drop as a ``dedup.dropped`` event, is
dataset/dedup_run.py, and store/dedup_events.py answers which samples a pass dropped.

Two stages, in input order (the caller passes plan order, so the result does not depend on
concurrency): exact duplicates by a hash of the normalised text, then near duplicates by MinHash
over word shingles or by embedding cosine. A text is compared only with texts already *kept*, so
the earliest text of a group survives and chains (A~B, B~C, A!~C) do not drop C.

Near-misses matter as much as duplicates: "the fee for 2025" and "the fee for 2026" are different
facts. The number guard therefore never calls two texts near duplicates when the numbers in them
differ (exact duplicates are equal anyway).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from teacherforge.retrieval.embedder import DEFAULT_EMBEDDER, load_embedder

DedupField = Literal["first-turn", "conversation"]
DedupMethod = Literal["minhash", "embedding"]
FIELDS: tuple[str, ...] = ("first-turn", "conversation")
METHODS: tuple[str, ...] = ("minhash", "embedding")
# Cosine between MiniLM vectors runs high for same-template questions (0.9+), so it needs a higher bar
# than Jaccard over shingles. Measured on the planted pairs in tests/test_dedup.py.
DEFAULT_THRESHOLDS: dict[str, float] = {"minhash": 0.85, "embedding": 0.95}

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


class DedupError(Exception):
    """A dedup request that cannot be run (unknown run, bad option); the message says the fix."""


# --- text -----------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Case, width, punctuation and whitespace differences do not make a new sample."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).replace("_", " ").strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def numbers(text: str) -> frozenset[str]:
    """The numbers a text states ("1,200" and "1200" agree): a change here is a change of fact."""
    return frozenset(n.replace(",", "") for n in _NUMBER.findall(text))


def shingles(text: str, size: int = 3) -> frozenset[str]:
    """Word n-grams of the normalised text; a text shorter than ``size`` words is one shingle."""
    words = normalise(text).split()
    if not words:
        return frozenset()
    if len(words) <= size:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


# --- MinHash + LSH ----------------------------------------------------------------------------------


class MinHasher:
    """Universal-hash MinHash (as in datasketch): ``num_perm`` values of ``(a*h + b) mod p``."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self._a = rng.integers(1, int(_MERSENNE), size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, int(_MERSENNE), size=num_perm, dtype=np.uint64)

    def signature(self, items: frozenset[str]) -> np.ndarray:
        if not items:
            return np.full(self.num_perm, _MAX_HASH, dtype=np.uint64)
        hashes = np.array(
            [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little") for s in items],
            dtype=np.uint64,
        )
        with np.errstate(over="ignore"):  # wrap-around multiplication is part of the hash family
            values = (np.outer(hashes, self._a) + self._b) % _MERSENNE & _MAX_HASH
        return values.min(axis=0)


def lsh_params(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """The most selective banding (bands, rows) that still pairs two texts at ``threshold`` with
    probability >= ``recall``; the pairs it finds are then checked by exact Jaccard."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def _lsh_candidates(signatures: np.ndarray, threshold: float) -> dict[int, set[int]]:
    """For each index, the earlier indices that share at least one LSH band with it."""
    bands, rows = lsh_params(threshold, signatures.shape[1])
    earlier: dict[int, set[int]] = {}
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i, sig in enumerate(signatures[:, band * rows : (band + 1) * rows]):
            buckets.setdefault(sig.tobytes(), []).append(i)
        for members in buckets.values():
            for pos, i in enumerate(members):
                if pos:
                    earlier.setdefault(i, set()).update(members[:pos])
    return earlier


# --- finding duplicates -------------------------------------------------------------------------------


def find_duplicates(
    texts: Sequence[str],
    method: str = "minhash",
    threshold: float | None = None,
    shingle_size: int = 3,
    number_guard: bool = True,
    embed: Callable[[list[int]], np.ndarray] | None = None,
) -> list[tuple[int, int, float, str]]:
    """Greedy dedup in input order: ``(dropped index, kept index, similarity, exact|method)``.

    ``embed`` maps indices into ``texts`` to L2-normalised rows (default: the bundled MiniLM on the
    texts); a caller that embeds conversations turn by turn passes its own.
    """
    if method not in METHODS:
        raise DedupError(f"unknown dedup method '{method}'; use minhash or embedding")
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    if not 0 < threshold <= 1:
        raise DedupError(f"--threshold must be in (0, 1] (got {threshold})")
    drops: list[tuple[int, int, float, str]] = []
    kept: list[int] = []
    first_by_hash: dict[str, int] = {}
    for i, text in enumerate(texts):  # stage 1: exact
        key = text_hash(text)
        if key in first_by_hash:
            drops.append((i, first_by_hash[key], 1.0, "exact"))
        else:
            first_by_hash[key] = i
            kept.append(i)
    if len(kept) < 2:
        return drops
    facts = [numbers(texts[i]) for i in kept]
    if method == "minhash":
        sets = [shingles(texts[i], shingle_size) for i in kept]
        hasher = MinHasher()
        signatures = np.stack([hasher.signature(s) for s in sets])
        neighbours = _lsh_candidates(signatures, threshold)

        def candidates(pos: int) -> list[int]:
            return sorted(neighbours.get(pos, ()))

        def similarity(pos: int, other: int) -> float:
            return jaccard(sets[pos], sets[other])
    else:
        embed = embed or embed_fn([[t] for t in texts], DEFAULT_EMBEDDER)
        vectors = np.asarray(embed(kept), dtype=np.float32)
        cosines = vectors @ vectors.T

        def candidates(pos: int) -> list[int]:
            return list(range(pos))

        def similarity(pos: int, other: int) -> float:
            return float(cosines[pos, other])

    survivors: set[int] = set()
    for pos in range(len(kept)):  # stage 2: near, against earlier survivors only
        best, best_sim = None, -1.0
        for other in candidates(pos):
            if other not in survivors or (number_guard and facts[pos] != facts[other]):
                continue
            sim = similarity(pos, other)
            if sim >= threshold and sim > best_sim:
                best, best_sim = other, sim
        if best is None:
            survivors.add(pos)
        else:
            drops.append((kept[pos], kept[best], round(min(best_sim, 1.0), 4), method))
    return sorted(drops)


# --- embeddings ------------------------------------------------------------------------------------


def embed_fn(parts: list[list[str]], embedder_name: str) -> Callable[[list[int]], np.ndarray]:
    """A text's vector is the mean of its parts' vectors: a conversation is embedded turn by turn,
    since MiniLM reads only its first 256 tokens."""
    embedder = load_embedder(embedder_name)

    def embed(indices: list[int]) -> np.ndarray:
        chosen = [parts[i] or [""] for i in indices]
        vectors = embedder.embed([t for turns in chosen for t in turns])
        out, start = [], 0
        for turns in chosen:
            mean = vectors[start : start + len(turns)].mean(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            start += len(turns)
        return np.stack(out)

    return embed
