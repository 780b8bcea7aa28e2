"""SQL views over the human review events (``review.*``), for ``teacherforge sql`` (docs/provenance.md).

Why separate views: the generation views (``samples``, ``turns``) keep telling what the pipeline
made; these say what a person decided about it, so both stay queryable and neither hides the other.
"""

from __future__ import annotations

REVIEW_TYPES = ("review.approved", "review.rejected", "review.edited", "review.tagged")

REVIEW_VIEWS: dict[str, str] = {
    "reviews": """
        SELECT event_id, sample_id, run_id, replace(type, 'review.', '') AS action,
               payload->>'reviewer' AS reviewer, CAST(payload->>'decided_at' AS TIMESTAMP) AS decided_at,
               payload->>'reason' AS reason, CAST(payload->>'turn_index' AS INTEGER) AS turn_index,
               payload->>'before' AS before, payload->>'after' AS after, payload->>'tag' AS tag,
               payload->>'review_id' AS review_id, seq, ts
        FROM live_events WHERE type LIKE 'review.%'""",
    # The latest approve/reject wins; tags and edited turns accumulate.
    "review_state": """
        SELECT sample_id, any_value(run_id) AS run_id,
               arg_max(CASE WHEN action IN ('approved', 'rejected') THEN action END,
                       CASE WHEN action IN ('approved', 'rejected') THEN seq END) AS decision,
               nullif(arg_max(CASE WHEN action IN ('approved', 'rejected') THEN coalesce(reason, '') END,
                              CASE WHEN action IN ('approved', 'rejected') THEN seq END), '') AS reason,
               list(DISTINCT tag ORDER BY tag) FILTER (WHERE tag IS NOT NULL) AS tags,
               list(DISTINCT turn_index ORDER BY turn_index) FILTER (WHERE action = 'edited') AS edited_turns,
               arg_max(reviewer, seq) AS reviewer, max(ts) AS reviewed_at, count(*) AS review_events
        FROM reviews GROUP BY sample_id""",
}
