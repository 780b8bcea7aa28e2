"""JSON Lines training formats: OpenAI messages, ShareGPT and Alpaca, plus LLaMA-Factory's registry.

Each converter takes a neutral record (dataset/export.py) and returns the row its trainer expects,
with the record's ``metadata`` carried along (trainers ignore unknown columns). Layout: ``--out
FILE.jsonl`` writes one file with ``metadata.split`` on every row (what ``teacherforge train`` reads);
``--out DIR`` writes ``DIR/train.jsonl``, ``DIR/validation.jsonl`` and ``DIR/test.jsonl`` (the
non-empty ones), which is what LLaMA-Factory and ``datasets.load_dataset("json")`` want.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from teacherforge.dataset.export import ThoughtMode, with_thought, write_jsonl
from teacherforge.dataset.splits import SPLITS

JSONL_FORMATS = ("openai", "sharegpt", "alpaca")
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


class FormatError(ValueError):
    """A record or option does not fit the format; the message says which and what to do."""


def to_openai(record: dict, thought: ThoughtMode) -> dict:
    return {"messages": with_thought(record["messages"], thought), "metadata": record["metadata"]}


def to_sharegpt(record: dict, thought: ThoughtMode) -> dict:
    """``conversations`` of ``{from: system|human|gpt, value}``; a kept thought stays a ``thought`` key."""
    conversations = []
    for message in with_thought(record["messages"], thought):
        turn = {"from": SHAREGPT_ROLES[message["role"]], "value": message["content"]}
        if "thought" in message:
            turn["thought"] = message["thought"]
        if "evidence" in message:
            turn["evidence"] = message["evidence"]
        conversations.append(turn)
    return {"conversations": conversations, "metadata": record["metadata"]}


def to_alpaca(record: dict, thought: ThoughtMode) -> dict:
    """Last exchange as instruction/output, earlier exchanges as ``history`` [[user, assistant], ...].

    Needs strictly alternating user/assistant turns ending with the assistant, as LLaMA-Factory does.
    """
    messages = with_thought(record["messages"], thought)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    turns = messages[1:] if system else messages
    roles = [m["role"] for m in turns]
    if not turns or len(turns) % 2 or roles != ["user", "assistant"] * (len(turns) // 2):
        raise FormatError(
            f"{record['metadata'].get('sample_id')}: alpaca needs alternating user/assistant turns ending "
            "with the assistant; export it as openai or sharegpt"
        )
    pairs = [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns), 2)]
    return {
        "instruction": pairs[-1][0],
        "input": "",
        "output": pairs[-1][1],
        "system": system,
        "history": pairs[:-1],
        "metadata": record["metadata"],
    }


CONVERTERS: dict[str, Callable[[dict, ThoughtMode], dict]] = {
    "openai": to_openai,
    "sharegpt": to_sharegpt,
    "alpaca": to_alpaca,
}


def check_options(fmt: str, thought: ThoughtMode) -> None:
    if fmt == "alpaca" and thought == "field":
        raise FormatError("alpaca has no place for a per-turn thought; use --thought drop or inline")


def convert(records: list[dict], fmt: str, thought: ThoughtMode) -> tuple[list[dict], list[str]]:
    """(rows, sample ids skipped because they do not fit the format)."""
    check_options(fmt, thought)
    rows, skipped = [], []
    for record in records:
        try:
            rows.append(CONVERTERS[fmt](record, thought))
        except FormatError:
            skipped.append(record["metadata"].get("sample_id"))
    return rows, skipped


def dataset_info_entry(fmt: str, file_name: str) -> dict:
    """LLaMA-Factory's ``dataset_info.json`` entry for a file of this format."""
    if fmt == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                   "history": "history"}  # fmt: skip
        return {"file_name": file_name, "formatting": "alpaca", "columns": columns}
    if fmt == "sharegpt":
        tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "system_tag": "system"}  # fmt: skip
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "conversations"},
                "tags": tags}  # fmt: skip
    raise FormatError(f"no LLaMA-Factory entry for format {fmt}")


def write_dataset_info(folder: Path, entries: dict[str, dict]) -> Path:
    """Add (or replace) entries in ``folder/dataset_info.json``, keeping any other datasets listed there."""
    path = folder / "dataset_info.json"
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    current.update(entries)
    path.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_jsonl_export(rows: list[dict], fmt: str, out: Path) -> list[Path]:
    """One file (``out`` ends in .jsonl) or one file per non-empty split in the folder ``out``."""
    if out.suffix == ".jsonl":
        write_jsonl(rows, out)
        files = [out]
        entries = {out.stem: dataset_info_entry(fmt, out.name)} if fmt != "openai" else {}
        folder = out.parent
    else:
        out.mkdir(parents=True, exist_ok=True)
        files, entries, folder = [], {}, out
        for name in SPLITS:
            path = out / f"{name}.jsonl"
            part = [r for r in rows if r["metadata"].get("split") == name]
            if part:
                write_jsonl(part, path)
                files.append(path)
                if fmt != "openai":
                    entries[f"{out.name}_{name}"] = dataset_info_entry(fmt, path.name)
            elif path.exists():
                path.unlink()  # a stale split from an earlier export into the same folder
    if entries:
        files.append(write_dataset_info(folder, entries))
    return files
