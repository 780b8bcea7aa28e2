"""SQL views over student-evaluation events (``eval.started``, ``eval.item``, ``eval.finished``).

Kept apart from ``views.py`` while student evaluation is new; ``create_eval_views`` is called by
``teacherforge eval`` and the dict can be merged into ``views.VIEWS``. ``eval_items`` has one row
per (item, system): the teacher with retrieval, the base student and the tuned student.
"""

from __future__ import annotations

import duckdb

from teacherforge.store.events import ensure_schema

EVAL_VIEWS: dict[str, str] = {
    "evals": """
        SELECT s.run_id AS eval_id, s.ts AS started_at, f.ts AS finished_at,
               coalesce(f.payload->>'status', 'running') AS status,
               s.payload->>'adapter' AS adapter, s.payload->>'base_model' AS base_model,
               s.payload->'teacher'->>'model' AS teacher_model, s.payload->'judge'->>'model' AS judge_model,
               CAST(s.payload->>'items' AS INTEGER) AS items,
               CAST(f.payload->'summary'->'perplexity'->>'base' AS DOUBLE) AS ppl_base,
               CAST(f.payload->'summary'->'perplexity'->>'tuned' AS DOUBLE) AS ppl_tuned,
               f.payload->'summary' AS summary
        FROM events s
        LEFT JOIN (SELECT * FROM events WHERE type = 'eval.finished') f ON f.run_id = s.run_id
        WHERE s.type = 'eval.started'""",
    "eval_items": """
        SELECT run_id AS eval_id, payload->>'item_id' AS item_id,
               payload->>'source_sample_id' AS sample_id,
               CAST(payload->>'turn_index' AS INTEGER) AS turn_index,
               payload->>'tier' AS tier, payload->>'technique' AS technique, payload->>'category' AS category,
               CAST(payload->>'should_refuse' AS BOOLEAN) AS should_refuse,
               payload->>'question' AS question, payload->>'reference' AS reference,
               CAST(payload->'retrieved_chunk_ids' AS VARCHAR[]) AS retrieved_chunk_ids,
               s->>'system' AS system, s->>'verdict' AS verdict, CAST(s->>'score' AS DOUBLE) AS score,
               CAST(s->>'refused' AS BOOLEAN) AS refused, CAST(s->>'handled' AS BOOLEAN) AS handled,
               CAST(s->>'cosine' AS DOUBLE) AS cosine, CAST(s->>'rouge_l' AS DOUBLE) AS rouge_l,
               s->>'answer' AS answer, s->>'reason' AS reason, ts
        FROM (SELECT *, unnest(CAST(payload->'systems' AS JSON[])) AS s
              FROM events WHERE type = 'eval.item')""",
}


def create_eval_views(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(con)
    for name, sql in EVAL_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
