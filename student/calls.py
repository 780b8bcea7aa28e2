"""Eval-side model calls: a per-(eval, item, system) sampling seed and the ``llm.call`` events."""

from __future__ import annotations

import hashlib
from typing import Any

from teacherforge.agents.llm import LLMCallRecord
from teacherforge.store.events import EventLog


def call_seed(eval_id: str, *parts: Any) -> int:
    """Stable per call, so a re-run of the same eval sends the same requests."""
    blob = ":".join(str(p) for p in (eval_id, *parts))
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def record_calls(log: EventLog, eval_id: str, calls: list[LLMCallRecord]) -> None:
    for call in calls:
        log.append(eval_id, "llm.call", vars(call), agent=call.agent)
