"""Reads about human review decisions: which queued decisions already landed in the log.

Why here: landing a queued decision must be idempotent (store/review_queue.py), and the SQL that
checks it lives in store/ with the other statements over ``events``.
"""

from __future__ import annotations

import duckdb

LANDED_SQL = (
    "SELECT DISTINCT json_extract_string(payload, 'review_id') FROM events "
    "WHERE type LIKE 'review.%' AND list_contains(?, json_extract_string(payload, 'review_id'))"
)


def landed_review_ids(con: duckdb.DuckDBPyConnection, review_ids: list[str]) -> set[str]:
    """The ``review_id``s among ``review_ids`` that some ``review.*`` event already carries."""
    if not review_ids:
        return set()
    return {r[0] for r in con.execute(LANDED_SQL, [review_ids]).fetchall()}
