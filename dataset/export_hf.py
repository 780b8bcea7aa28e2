"""The ``hf`` format: a ``datasets.DatasetDict`` saved with ``save_to_disk`` and as Parquet per split.

Why explicit features: left to inference, a column that is empty or None in every row (no critic
scores, no thoughts, no documents) becomes Arrow type ``null`` and later casts fail ("Couldn't cast
array of type list<item: string> to null"); a split with other rows then disagrees with its siblings.
Declaring the schema up front makes every split, and every export of every run, the same table.

Layout of ``--out DIR``: ``dataset_dict.json`` + one folder per split (``load_from_disk(DIR)``) and
``DIR/parquet/<split>.parquet`` (``load_dataset("parquet", data_dir=DIR/"parquet")``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from teacherforge.dataset.export import ThoughtMode, with_thought
from teacherforge.dataset.splits import SPLITS

# The critic's dimensions (agents/critic.py); used only so the column keeps a type when no record
# of the export has been critiqued. Scores of any other dimension found in the records are added.
CRITIC_DIMENSIONS = ("groundedness", "persona_fidelity", "tier_match", "refusal_correctness", "naturalness")
STRING_FIELDS = ("run_id", "sample_id", "status", "persona", "tier", "technique", "category", "teacher_model",
                 "split")  # fmt: skip
LIST_FIELDS = ("source_chunk_ids", "source_documents")


class HfExportError(Exception):
    """The hf export cannot be written; the message says what to install or where to write."""


def features(thought: ThoughtMode, score_names: list[str], extra: list[str]) -> Any:
    """The schema of every split. ``extra`` metadata keys (unknown here) are kept as JSON strings."""
    from datasets import Features, Value

    try:
        from datasets import List
    except ImportError:  # datasets < 4
        from datasets import Sequence as List
    message = {"role": Value("string"), "content": Value("string")}
    if thought == "field":
        message["thought"] = Value("string")
        message["evidence"] = List({"chunk_id": Value("string"), "quote": Value("string")})
    metadata: dict[str, Any] = {name: Value("string") for name in STRING_FIELDS}
    metadata.update({name: List(Value("string")) for name in LIST_FIELDS})
    metadata["revisions"] = Value("int32")
    metadata["critic_scores"] = {name: Value("int32") for name in score_names}
    metadata.update({name: Value("string") for name in extra})
    return Features({"messages": List(message), "metadata": metadata})


def hf_rows(records: list[dict], thought: ThoughtMode) -> tuple[list[dict], Any]:
    """Rows normalised to one schema (every key present, None where absent) and that schema."""
    known = {*STRING_FIELDS, *LIST_FIELDS, "revisions", "critic_scores"}
    scores = sorted({k for r in records for k in (r["metadata"].get("critic_scores") or {})})
    score_names = sorted(set(scores) | set(CRITIC_DIMENSIONS)) if scores else list(CRITIC_DIMENSIONS)
    extra = sorted({k for r in records for k in r["metadata"]} - known)
    rows = []
    for record in records:
        meta = record["metadata"]
        messages = with_thought(record["messages"], thought)
        if thought == "field":
            messages = [
                {**m, "thought": m.get("thought"), "evidence": m.get("evidence") or []} for m in messages
            ]
        scored = meta.get("critic_scores")
        row_meta = {name: meta.get(name) for name in STRING_FIELDS}
        row_meta.update({name: list(meta.get(name) or []) for name in LIST_FIELDS})
        row_meta["revisions"] = meta.get("revisions")
        row_meta["critic_scores"] = {n: scored.get(n) for n in score_names} if scored else None
        row_meta.update({name: _as_text(meta.get(name)) for name in extra})
        rows.append({"messages": messages, "metadata": row_meta})
    return rows, features(thought, score_names, extra)


def _as_text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def write_hf(records: list[dict], out: Path, thought: ThoughtMode) -> list[Path]:
    """Save the splits (``metadata.split``) to ``out`` and ``out/parquet``; returns what was written.

    Written to a sibling temp folder and swapped in, so a failed export never leaves half a dataset,
    and a re-export never keeps a split the new one does not have.
    """
    try:
        import datasets
        from datasets import Dataset, DatasetDict
    except ImportError as exc:
        raise HfExportError("--format hf needs the datasets library: pip install 'datasets>=4'") from exc
    if out.suffix in (".jsonl", ".json", ".parquet"):
        raise HfExportError(f"--out {out}: the hf format writes a folder; pass a folder name")
    if out.exists() and any(out.iterdir()) and not (out / "dataset_dict.json").exists():
        raise HfExportError(f"--out {out}: folder exists and is not an earlier hf export; pick a new folder")
    rows, schema = hf_rows(records, thought)
    parts = {name: [r for r in rows if r["metadata"]["split"] == name] for name in SPLITS}
    parts = {name: part for name, part in parts.items() if part} or {"train": []}
    dataset = DatasetDict(
        {  # from_dict, not from_list: an empty split still gets its columns
            name: Dataset.from_dict({key: [r[key] for r in part] for key in schema}, features=schema)
            for name, part in parts.items()
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the CLI prints one summary line instead
    try:
        dataset.save_to_disk(str(tmp))
        (tmp / "parquet").mkdir()
        for name, split in dataset.items():
            split.to_parquet(str(tmp / "parquet" / f"{name}.parquet"))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    return [out / "dataset_dict.json", *sorted((out / "parquet").glob("*.parquet"))]
