"""The WHERE clause of a read over ``events``: one builder for every reader that filters by run, sample
or position, so the column names and placeholders are written once."""

from __future__ import annotations

from typing import Any


def event_filter(
    *fixed: str, run_id: str | None = None, sample_id: str | None = None, up_to_seq: int | None = None
) -> tuple[str, list[Any]]:
    """``(clause, args)`` for ``WHERE clause``: the ``fixed`` conditions plus each filter that is set."""
    clauses, args = list(fixed), []
    for condition, value in (("run_id = ?", run_id), ("sample_id = ?", sample_id), ("seq <= ?", up_to_seq)):
        if value is not None:
            clauses.append(condition)
            args.append(value)
    return " AND ".join(clauses) or "TRUE", args
