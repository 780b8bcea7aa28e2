"""Reading the conversations ``teacherforge check`` scores: JSONL of OpenAI ``{"messages": [...]}``.

Kept apart from the command so the format rules are in one place: a line may carry an ``id``
(else ``metadata.sample_id`` as ``export`` writes it, else ``line-N``); ``system`` messages are
ignored; an assistant message may carry ``thought``, ``evidence`` and ``cited_chunk_ids``. Every
problem is one line that names the file, the line and the field, because a 10 000-line file with
"invalid input" somewhere in it cannot be fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
SHAPE = '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'


class CheckInputError(Exception):
    """The file cannot be checked as given; the message names file, line and field."""


@dataclass
class Conversation:
    """One line of the file: its id, its line number and its user/assistant turns."""

    id: str
    line: int
    turns: list[dict[str, Any]] = field(default_factory=list)


def load_conversations(path: Path) -> list[Conversation]:
    """Every conversation in ``path``, or CheckInputError at the first line that is not one."""
    if not path.exists():
        raise CheckInputError(f"{path}: no such file")
    if path.is_dir():
        raise CheckInputError(f"{path}: is a folder; give a .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CheckInputError(f"{path}: not UTF-8 text; check reads JSONL, one {SHAPE} per line") from exc
    conversations = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            conversations.append(_conversation(path, number, line))
    if not conversations:
        raise CheckInputError(f"{path}: no conversations (the file is empty); write one {SHAPE} per line")
    return conversations


def _conversation(path: Path, number: int, line: str) -> Conversation:
    where = f"{path}: line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        if number == 1 and line.lstrip().startswith("["):
            raise CheckInputError(
                f"{where}: a JSON array, not JSONL; write one {SHAPE} object per line"
            ) from exc
        raise CheckInputError(
            f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); check reads JSONL: one object a line"
        ) from exc
    if isinstance(record, list):
        raise CheckInputError(f"{where}: a JSON array, not JSONL; write one {SHAPE} object per line")
    if not isinstance(record, dict):
        raise CheckInputError(f"{where}: expected a JSON object like {SHAPE}, got a {type(record).__name__}")
    if "messages" not in record:
        keys = ", ".join(sorted(record)[:6]) or "none"
        raise CheckInputError(f"{where}: no 'messages' field (keys: {keys}); each line needs {SHAPE}")
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise CheckInputError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    turns = [t for i, m in enumerate(messages) if (t := _turn(where, i, m)) is not None]
    if not turns:
        raise CheckInputError(f"{where}: 'messages' has no user or assistant message")
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    ident = record.get("id") or metadata.get("sample_id") or f"line-{number}"
    return Conversation(id=str(ident), line=number, turns=turns)


def _turn(where: str, i: int, message: Any) -> dict[str, Any] | None:
    """A user or assistant turn in the shape the gate reads; None for a system message."""
    name = f"messages[{i}]"
    if not isinstance(message, dict):
        raise CheckInputError(f"{where}: {name}: expected an object with 'role' and 'content'")
    role = message.get("role")
    if role not in ROLES:
        raise CheckInputError(f"{where}: {name}.role: {role!r} is not one of {', '.join(ROLES)}")
    content = _text(message.get("content"))
    if content is None:
        raise CheckInputError(f"{where}: {name}.content: expected a string (or a list of text parts)")
    if role == "system":
        return None
    turn: dict[str, Any] = {"role": role, "content": content}
    if role == "assistant":
        thought = message.get("thought")
        if thought is not None and not isinstance(thought, str):
            raise CheckInputError(f"{where}: {name}.thought: expected a string")
        turn["thought"] = thought or ""
        turn["evidence"] = _evidence(f"{where}: {name}", message.get("evidence"))
        cited = message.get("cited_chunk_ids") or []
        if not isinstance(cited, list) or not all(isinstance(c, str) for c in cited):
            raise CheckInputError(f"{where}: {name}.cited_chunk_ids: expected a list of chunk id strings")
        turn["cited_chunk_ids"] = cited
    return turn


def _text(content: Any) -> str | None:
    """A string, or the OpenAI list-of-parts form joined; None when it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text") or "") for p in content if p.get("type", "text") == "text")
    return None


def _evidence(where: str, items: Any) -> list[dict[str, str]]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise CheckInputError(f"{where}.evidence: expected a list of {{chunk_id, quote}} objects")
    out = []
    for j, item in enumerate(items):
        ok = isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("chunk_id", "quote"))
        if not ok:
            raise CheckInputError(
                f'{where}.evidence[{j}]: expected {{"chunk_id": "...", "quote": "..."}} with string values'
            )
        out.append({"chunk_id": item["chunk_id"], "quote": item["quote"]})
    return out
