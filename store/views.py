"""SQL views over the event log: the projections ``sql`` users query (docs/provenance.md).

Views are recreated on every open, so a database written by an older version gets current views.
"""

from __future__ import annotations

import duckdb

from teacherforge.store.eval_views import EVAL_VIEWS
from teacherforge.store.events import ensure_schema
from teacherforge.store.review_views import REVIEW_VIEWS

TERMINAL = "('sample.accepted', 'sample.rejected', 'sample.failed')"

VIEWS: dict[str, str] = {
    # A resumed sample restarts its stream: everything before its last sample.restarted is history.
    "live_events": """
        SELECT e.* FROM events e
        LEFT JOIN (SELECT sample_id, max(seq) AS restart_seq FROM events
                   WHERE type = 'sample.restarted' GROUP BY sample_id) r ON r.sample_id = e.sample_id
        WHERE r.restart_seq IS NULL OR e.seq > r.restart_seq""",
    "runs": """
        SELECT s.run_id, s.ts AS started_at, f.ts AS finished_at,
               coalesce(f.payload->>'status', 'running') AS status,
               s.payload->>'config_hash' AS config_hash,
               CAST(s.payload->>'n' AS INTEGER) AS target,
               CAST(f.payload->>'accepted' AS INTEGER) AS accepted,
               CAST(f.payload->>'rejected' AS INTEGER) AS rejected,
               CAST(f.payload->>'failed' AS INTEGER) AS failed,
               s.payload->'config' AS config
        FROM events s
        LEFT JOIN (SELECT * FROM events WHERE type = 'run.finished'
                   QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY ts DESC) = 1) f
          ON f.run_id = s.run_id
        WHERE s.type = 'run.started'
        QUALIFY row_number() OVER (PARTITION BY s.run_id ORDER BY s.ts) = 1""",
    "samples": f"""
        SELECT p.sample_id, p.run_id,
               coalesce(replace(t.type, 'sample.', ''), 'running') AS status,
               p.payload->>'tier' AS tier,
               p.payload->'persona'->>'name' AS persona,
               p.payload->>'technique' AS technique,
               p.payload->>'category' AS category,
               CAST(p.payload->>'user_turns' AS INTEGER) AS user_turns,
               coalesce(CAST(t.payload->>'revisions' AS INTEGER), 0) AS revisions,
               t.payload->'reasons' AS reasons,
               p.payload->>'parent_sample_id' AS parent_sample_id,
               p.ts AS started_at, t.ts AS ended_at
        FROM live_events p
        LEFT JOIN (SELECT * FROM live_events WHERE type IN {TERMINAL}) t ON t.sample_id = p.sample_id
        WHERE p.type = 'sample.planned'""",
    "turns": """
        SELECT sample_id, run_id, CAST(payload->>'turn_index' AS INTEGER) AS turn_index,
               payload->>'role' AS role, payload->>'content' AS content, payload->>'thought' AS thought,
               CAST(payload->'cited_chunk_ids' AS VARCHAR[]) AS cited_chunk_ids,
               CAST(payload->'retrieved_chunk_ids' AS VARCHAR[]) AS retrieved_chunk_ids,
               coalesce(CAST(payload->>'revision' AS INTEGER), 0) AS revision, seq, ts,
               payload->'evidence' AS evidence
        FROM live_events WHERE type IN ('turn.added', 'turn.revised')
        QUALIFY row_number() OVER (PARTITION BY sample_id, payload->>'turn_index' ORDER BY seq DESC) = 1""",
    "llm_calls": """
        SELECT event_id, sample_id, run_id, agent, payload->>'model' AS model,
               payload->>'endpoint' AS endpoint, payload->>'template' AS template,
               payload->>'template_hash' AS template_hash, payload->>'request_hash' AS request_hash,
               CAST(payload->>'tokens_in' AS INTEGER) AS tokens_in,
               CAST(payload->>'tokens_out' AS INTEGER) AS tokens_out,
               CAST(payload->>'latency_ms' AS DOUBLE) AS latency_ms,
               CAST(payload->>'attempt' AS INTEGER) AS attempt,
               payload->>'error' AS error,
               coalesce(CAST(payload->>'reused' AS BOOLEAN), false) AS reused, ts
        FROM events WHERE type = 'llm.call'""",  # every attempt, also before a restart: all were paid for
    "critiques": """
        SELECT sample_id, run_id, CAST(payload->>'revision' AS INTEGER) AS revision,
               CAST(payload->'scores'->>'groundedness' AS INTEGER) AS groundedness,
               CAST(payload->'scores'->>'persona_fidelity' AS INTEGER) AS persona_fidelity,
               CAST(payload->'scores'->>'tier_match' AS INTEGER) AS tier_match,
               CAST(payload->'scores'->>'refusal_correctness' AS INTEGER) AS refusal_correctness,
               CAST(payload->'scores'->>'naturalness' AS INTEGER) AS naturalness,
               CAST(payload->>'passed' AS BOOLEAN) AS passed,
               CAST(payload->'failed_dimensions' AS VARCHAR[]) AS failed_dimensions,
               payload->'problems' AS problems, ts
        FROM live_events WHERE type = 'critique.done'""",
    "revisions": """
        SELECT sample_id, run_id, CAST(payload->>'revision' AS INTEGER) AS revision,
               CAST(payload->'failing_turns' AS INTEGER[]) AS failing_turns,
               payload->'problems' AS problems, ts
        FROM live_events WHERE type = 'refine.done'""",
    "retrievals": """
        SELECT sample_id, run_id, CAST(payload->>'turn_index' AS INTEGER) AS turn_index,
               payload->>'purpose' AS purpose, payload->>'query' AS query, payload->>'mode' AS mode,
               CAST(payload->'chunk_ids' AS VARCHAR[]) AS chunk_ids,
               CAST(payload->'scores' AS DOUBLE[]) AS scores, ts
        FROM live_events WHERE type = 'retrieval.done'""",
    "rule_failures": """
        SELECT sample_id, run_id, CAST(payload->>'revision' AS INTEGER) AS revision,
               f->>'rule' AS rule, CAST(f->>'turn_index' AS INTEGER) AS turn_index, f->>'detail' AS detail,
               coalesce(CAST(f->>'advisory' AS BOOLEAN), false) AS advisory, ts
        FROM (SELECT *, unnest(CAST(payload->'failures' AS JSON[])) AS f
              FROM live_events WHERE type = 'rules.checked')""",
    "verifier_failures": """
        SELECT sample_id, run_id, CAST(payload->>'revision' AS INTEGER) AS revision,
               f->>'check' AS check_name, CAST(f->>'turn_index' AS INTEGER) AS turn_index,
               f->>'span' AS span, f->>'detail' AS detail,
               coalesce(CAST(f->>'advisory' AS BOOLEAN), false) AS advisory, ts
        FROM (SELECT *, unnest(CAST(payload->'failures' AS JSON[])) AS f
              FROM live_events WHERE type = 'verify.checked')""",
    "dedup_drops": """
        SELECT sample_id, run_id, payload->>'kept_sample_id' AS kept_sample_id, payload->>'method' AS method,
               payload->>'field' AS field, CAST(payload->>'similarity' AS DOUBLE) AS similarity,
               CAST(payload->>'threshold' AS DOUBLE) AS threshold, payload->>'dedup_id' AS dedup_id, ts
        FROM events WHERE type = 'dedup.dropped'""",
}

VIEWS.update(EVAL_VIEWS)
VIEWS.update(REVIEW_VIEWS)  # human review decisions (teacherforge ui): reviews, review_state


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(con)
    for name, sql in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
