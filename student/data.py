"""Reading an exported dataset (``teacherforge export``, OpenAI format) for training and evaluation.

The export can carry the teacher's hidden reasoning as a ``thought`` field or inline as
``<think>…</think>``; ``--thought`` decides what the student sees: ``drop`` trains on the visible
reply only, ``inline`` puts the reasoning before the reply so the student learns to write it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ThoughtMode = Literal["drop", "inline"]
THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)


class DatasetError(Exception):
    """The training file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Record:
    """One exported conversation: chat messages plus the export's metadata."""

    messages: list[dict[str, str]]
    metadata: dict[str, Any]

    @property
    def sample_id(self) -> str:
        return str(self.metadata.get("sample_id") or "")

    @property
    def tier(self) -> str:
        return str(self.metadata.get("tier") or "unknown")

    @property
    def technique(self) -> str:
        return str(self.metadata.get("technique") or "standard")


def load_records(path: Path) -> list[Record]:
    if not path.exists():
        raise DatasetError(f"{path}: no such file; write one with 'teacherforge export --out {path}'")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            messages = row["messages"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: not an OpenAI chat record ({exc})") from exc
        if not any(m.get("role") == "assistant" for m in messages):
            continue
        records.append(Record(messages=messages, metadata=row.get("metadata") or {}))
    if not records:
        raise DatasetError(f"{path}: no conversations with an assistant turn")
    return records


def split_thought(content: str) -> tuple[str | None, str]:
    """(inline thought or None, visible reply)."""
    match = THINK.match(content)
    if match is None:
        return None, content
    return match.group(1).strip(), content[match.end() :]


def training_messages(record: Record, thought: ThoughtMode) -> list[dict[str, str]]:
    """Messages as the student trains on them: only role and content, reasoning per ``thought``."""
    out = []
    for message in record.messages:
        content = message.get("content") or ""
        if message.get("role") == "assistant":
            inline, visible = split_thought(content)
            reasoning = message.get("thought") or inline
            content = (
                f"<think>{reasoning}</think>\n{visible}" if thought == "inline" and reasoning else visible
            )
        out.append({"role": message["role"], "content": content})
    return out


def visible_reply(content: str) -> str:
    """What the user sees of an assistant reply (reasoning removed) — what evaluation compares."""
    return split_thought(content)[1].strip()
