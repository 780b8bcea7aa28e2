"""Pipeline tokens/s on the embedded model vs the same server's raw tokens/s on the same requests.

Why: the teacher server is the expensive part; TeacherForge should add close to nothing. This runs
the real pipeline (ingest examples, generate N samples) against one embedded server, then replays
the exact requests the pipeline recorded (messages, params, schema) straight to that server, one
after another like the pipeline did, and compares completion tokens per wall second.
Prints one JSON line. Run from the repo root:
    python -m evals.bench.pipeline_vs_raw [--n 2] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from teacherforge.agents.llm import Endpoint
from teacherforge.evals.paths import checkout_root
from teacherforge.graph.config import RunConfig
from teacherforge.graph.runner import generate
from teacherforge.retrieval.ingest import ingest
from teacherforge.serve.local import LocalServer
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

EXAMPLES = checkout_root() / "examples" / "university"


def recorded_requests(con, run_id: str) -> list[dict]:
    rows = con.execute(
        "SELECT payload FROM events WHERE run_id = ? AND type = 'llm.call' "
        "AND (payload->>'error') IS NULL ORDER BY ts",
        [run_id],
    ).fetchall()
    return [json.loads(r[0]) for r in rows]


def replay_raw(server: LocalServer, calls: list[dict], schemas: dict[str, dict]) -> tuple[int, float]:
    """Send the recorded requests directly; returns (completion tokens, wall seconds)."""
    tokens, started = 0, time.perf_counter()
    with httpx.Client(timeout=900, trust_env=False) as client:
        for call in calls:
            body = {
                "model": server.model,
                "messages": call["messages"],
                "temperature": call["params"]["temperature"],
                "max_tokens": call["params"]["max_tokens"],
                "seed": call["params"]["seed"],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": call["schema_name"], "schema": schemas[call["schema_name"]]},
                },
            }
            reply = client.post(f"{server.url}/chat/completions", json=body)
            reply.raise_for_status()
            tokens += reply.json()["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    from teacherforge.agents import schemas as agent_schemas

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=1)
    args = p.parse_args(argv)
    schemas = {
        name: getattr(agent_schemas, name).model_json_schema()
        for name in ("UserMessage", "TeacherReply", "Critique", "Refinement")
    }
    with tempfile.TemporaryDirectory() as tmp, LocalServer() as server:
        con = connect(Path(tmp) / "bench.duckdb")
        create_views(con)
        log = EventLog(con)
        ingest(con, log, [EXAMPLES])
        config = RunConfig(n=args.n, concurrency=args.concurrency, max_revisions=1, seed=1)
        endpoint = Endpoint(server.url, server.model)
        summary = asyncio.run(generate(con, log, config, endpoint, endpoint))
        log.close()
        calls = recorded_requests(con, summary.run_id)
        pipeline_tokens = sum(c["tokens_out"] or 0 for c in calls)
        raw_tokens, raw_s = replay_raw(server, calls, schemas)
    pipeline_tps = pipeline_tokens / summary.wall_s
    raw_tps = raw_tokens / raw_s
    print(
        json.dumps(
            {
                "bench": "pipeline_vs_raw",
                "model": server.model,
                "n": args.n,
                "concurrency": args.concurrency,
                "llm_calls": len(calls),
                "pipeline_completion_tokens": pipeline_tokens,
                "pipeline_wall_s": summary.wall_s,
                "pipeline_tokens_per_s": round(pipeline_tps, 2),
                "raw_completion_tokens": raw_tokens,
                "raw_wall_s": round(raw_s, 2),
                "raw_tokens_per_s": round(raw_tps, 2),
                "real_model_ratio": round(pipeline_tps / raw_tps, 3),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
