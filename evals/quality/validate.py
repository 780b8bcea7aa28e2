"""Check the labelled set itself against a database: format, chunk ids, and verbatim quotes.

    python -m evals.quality.validate [--db DB]      # without --db: ingests examples/university first

The set cites chunk ids, which depend on the documents and on the chunker. If either changes, ids or
quote spans move and the checker's verdicts on the set stop meaning anything; this says which
conversations went stale. Rules (they keep each bad conversation down to the one defect it names):

- every conversation has 1-3 user turns, each followed by an assistant turn with content, thought and
  an evidence list of ``{chunk_id, quote}``;
- every cited chunk id exists;
- every quote is a verbatim span of its chunk (whitespace may differ), except in conversations labelled
  ``quote_not_in_chunk``, where at least one quote must not be.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from teacherforge.evals.quality import runner
from teacherforge.evals.quality.score import QualitySetError, labelled, read_conversations


def squash(text: str) -> str:
    return " ".join(text.split())


def structure_problems(conversation: dict[str, Any]) -> list[str]:
    cid = conversation.get("id", "?")
    messages = conversation.get("messages")
    if not isinstance(messages, list) or not messages:
        return [f"{cid}: no messages"]
    roles = [m.get("role") for m in messages]
    users = roles.count("user")
    problems = []
    if roles != ["user", "assistant"] * users or not 1 <= users <= 3:
        problems.append(f"{cid}: roles must be 1-3 user/assistant pairs, got {roles}")
    for i, m in enumerate(messages):
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            problems.append(f"{cid}: message {i} has no content")
        if m.get("role") == "assistant":
            if not isinstance(m.get("thought"), str):
                problems.append(f"{cid}: assistant message {i} has no thought")
            evidence = m.get("evidence")
            if not isinstance(evidence, list) or not all(
                isinstance(e, dict) and isinstance(e.get("chunk_id"), str) and isinstance(e.get("quote"), str)
                for e in evidence
            ):
                problems.append(f"{cid}: message {i}: evidence must be a list of {{chunk_id, quote}}")
    return problems


def evidence_problems(conversation: dict[str, Any], chunks: dict[str, str]) -> list[str]:
    cid = conversation.get("id", "?")
    problems, off = [], []
    for m in conversation.get("messages") or []:
        if m.get("role") != "assistant":
            continue
        for e in m.get("evidence") or []:
            if e["chunk_id"] not in chunks:
                problems.append(f"{cid}: cites unknown chunk {e['chunk_id']}")
            elif squash(e["quote"]) not in squash(chunks[e["chunk_id"]]):
                off.append(e)
    if conversation.get("defect") == "quote_not_in_chunk":
        if not off and not problems:
            problems.append(f"{cid}: labelled quote_not_in_chunk, but every quote is in its chunk")
    else:
        problems += [f"{cid}: quote not in {e['chunk_id']}: {e['quote'][:70]!r}" for e in off]
    return problems


def validate(conversations: list[dict[str, Any]], chunks: dict[str, str]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for conv in conversations:
        try:
            item = labelled(conv)
        except QualitySetError as exc:
            problems.append(str(exc))
            continue
        if item.id in seen:
            problems.append(f"{item.id}: duplicate id")
        seen.add(item.id)
        found = structure_problems(conv)
        problems += found or evidence_problems(conv, chunks)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.quality.validate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--db", type=Path, help="an ingested database (default: ingest into a temp one)")
    parser.add_argument("--set", type=Path, default=runner.SET_PATH, help="the labelled conversations")
    args = parser.parse_args(argv)
    conversations = read_conversations(args.set)
    with runner.database(args.db) as db:
        problems = validate(conversations, runner.chunk_texts(db))
    for line in problems:
        print(line)
    print(f"{len(conversations)} conversations, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
