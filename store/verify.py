"""Integrity checks of the event log (``teacherforge verify``): each finding is one line."""

from __future__ import annotations

import duckdb

from teacherforge.store.projection import fold, load_events

CHECKS = {
    "seq gap": """
        SELECT coalesce(sample_id, 'run ' || run_id), count(*), min(seq), max(seq)
        FROM events GROUP BY run_id, sample_id HAVING min(seq) <> 0 OR max(seq) <> count(*) - 1""",
    "duplicate seq": """
        SELECT coalesce(sample_id, 'run ' || run_id), seq, count(*) FROM events
        GROUP BY run_id, sample_id, seq HAVING count(*) > 1""",
    "orphan event": """
        SELECT e.event_id, e.type, e.parent_event_id FROM events e
        LEFT JOIN events p ON p.event_id = e.parent_event_id
        WHERE e.parent_event_id IS NOT NULL AND p.event_id IS NULL""",
    "unfinished sample in a finished run": """
        SELECT s.sample_id, r.run_id FROM samples s JOIN runs r USING (run_id)
        WHERE r.status = 'finished' AND s.status = 'running'""",
    "run without run.started": """
        SELECT DISTINCT run_id FROM events WHERE run_id LIKE 'run-%'
        AND run_id NOT IN (SELECT run_id FROM events WHERE type = 'run.started')""",
    "review of an unknown sample": """
        SELECT event_id, type, sample_id FROM events WHERE type LIKE 'review.%'
        AND (sample_id IS NULL
             OR sample_id NOT IN (SELECT sample_id FROM events WHERE type = 'sample.planned'))""",
    "edit of a missing turn": """
        SELECT e.event_id, e.sample_id, e.payload->>'turn_index' FROM live_events e
        LEFT JOIN turns t
          ON t.sample_id = e.sample_id AND t.turn_index = CAST(e.payload->>'turn_index' AS INTEGER)
        WHERE e.type = 'review.edited' AND t.sample_id IS NULL""",
}
# The turns as the fold (and so export) sees them: a person's latest edit after a turn's last version wins.
REVIEWED_TURNS_SQL = """
    SELECT t.sample_id,
           list(struct_pack(r := t.role, c := coalesce(e.after, t.content)) ORDER BY t.turn_index)
    FROM turns t
    LEFT JOIN (SELECT sample_id, CAST(payload->>'turn_index' AS INTEGER) AS turn_index,
                      payload->>'after' AS after, seq
               FROM live_events WHERE type = 'review.edited'
               QUALIFY row_number() OVER (PARTITION BY sample_id, payload->>'turn_index'
                                          ORDER BY seq DESC) = 1) e
      ON e.sample_id = t.sample_id AND e.turn_index = t.turn_index AND e.seq > t.seq
    GROUP BY 1"""


def verify(con: duckdb.DuckDBPyConnection) -> list[str]:
    """All problems found; an empty list means the log is consistent."""
    problems = []
    for name, sql in CHECKS.items():
        for row in con.execute(sql).fetchall():
            problems.append(f"{name}: {', '.join(str(v) for v in row)}")
    problems.extend(_projection_mismatches(con))
    return problems


def _projection_mismatches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The SQL ``turns`` view (with review edits) and the Python fold (which export uses) must agree."""
    found = []
    rows = con.execute(REVIEWED_TURNS_SQL).fetchall()
    for sample_id, turns in rows:
        view = fold(sample_id, load_events(con, sample_id=sample_id))
        if [(t["role"], t["content"]) for t in view.turns] != [(t["r"], t["c"]) for t in turns]:
            found.append(f"projection mismatch: {sample_id} (turns view vs folded events)")
    return found
