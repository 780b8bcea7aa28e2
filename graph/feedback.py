"""The feedback loop: the held-out questions the tuned student got wrong become new plan seeds.

A seed keeps the item's chunks (so the next round covers the same facts) and asks for a harder
tier, or one more user turn when the tier is already the hardest, and carries its lineage (which
eval item seeded it, and why) so the next run's samples can be traced back to the failure behind
them. ``teacherforge run --from-eval EVAL_ID`` turns the seeds into sample jobs here: the graph
reads the database, the planner only applies the seed it is handed (agents never touch the DB).
"""

from __future__ import annotations

from typing import Any

import duckdb

from teacherforge.agents.planner import PlanSeed
from teacherforge.graph.runner import RunError, SampleJob
from teacherforge.store.chunk_tables import chunks_by_id
from teacherforge.store.eval_queries import eval_item_payloads
from teacherforge.store.run_queries import run_started

HARDER = {"direct": "reasoning", "reasoning": "edge", "edge": "edge"}
MAX_USER_TURNS = 12
TECHNIQUES = ("standard", "hard_negative", "multi_source")


class FeedbackError(RunError):
    """The eval id is unknown, has no failures, or its chunks are gone; the message says what to do."""


def is_failure(system: dict[str, Any], should_refuse: bool) -> bool:
    """Wrong or partial on an answerable question, or a refusal mishandled either way."""
    if not system.get("handled", True):
        return True
    return not should_refuse and system.get("verdict") in ("wrong", "partially", "refused", None)


def _why(system: str, mine: dict[str, Any], should_refuse: bool, tier: str, harder: str, turns: int) -> str:
    if should_refuse:
        failed = "answered a question the documents do not cover"
    elif mine.get("refused") and mine.get("verdict") != "refused":
        failed = "refused an answerable question"
    else:
        failed = f"judged {mine.get('verdict') or 'ungraded'}"
    reason = f" ({mine['reason'][:120]})" if mine.get("reason") else ""
    step = f"tier {tier} -> {harder}" if harder != tier else f"user turns {turns} -> {min(turns + 1, 12)}"
    return f"{system} {failed}{reason}; retry with {step}"[:400]


def seeds_from_eval(
    con: duckdb.DuckDBPyConnection, eval_id: str, system: str = "student_tuned"
) -> list[dict]:
    """Plan seeds for the items ``system`` failed in eval ``eval_id``, in item order."""
    items = eval_item_payloads(con, eval_id)
    if not items:
        raise FeedbackError(
            f"no eval items for '{eval_id}'; list evals with: teacherforge sql 'select eval_id from evals'"
        )
    seeds = []
    for item in items:
        mine = next((s for s in item.get("systems", []) if s.get("system") == system), None)
        should_refuse = bool(item.get("should_refuse"))
        if mine is None or not is_failure(mine, should_refuse):
            continue
        tier = item.get("tier") if item.get("tier") in HARDER else "direct"
        turns = int(item.get("user_turns") or 1)
        harder = HARDER[tier]
        seeds.append(
            {
                "chunk_ids": item.get("retrieved_chunk_ids") or item.get("source_chunk_ids") or [],
                "source_chunk_ids": item.get("source_chunk_ids") or [],
                "category": item.get("category"),
                "technique": item.get("technique") if item.get("technique") in TECHNIQUES else "standard",
                "tier": harder,
                "user_turns": turns if harder != tier else min(turns + 1, MAX_USER_TURNS),
                "question": item.get("question"),
                "lineage": {
                    "eval_id": eval_id,
                    "eval_item_id": item.get("item_id"),
                    "source_sample_id": item.get("source_sample_id"),
                    "system": system,
                    "verdict": mine.get("verdict"),
                    "why": _why(system, mine, should_refuse, tier, harder, turns),
                },
            }
        )
    return seeds


def job_seed(seed: dict) -> dict:
    """The compact, JSON-able form a job carries (and ``run.started`` records for resume)."""
    plan = PlanSeed(
        tier=seed["tier"],
        user_turns=seed["user_turns"],
        technique=seed["technique"],
        category=seed.get("category"),
        anchor_chunk_id=seed["chunk_ids"][0] if seed["chunk_ids"] else None,
    )
    return {
        "plan": plan.model_dump(),
        "chunk_ids": list(seed["chunk_ids"]),
        "question": seed.get("question"),
        "lineage": seed["lineage"],
    }


def with_chunks(con: duckdb.DuckDBPyConnection, seed: dict) -> dict:
    """The seed plus its chunks' text, in the seed's order (ids re-ingested away are skipped)."""
    ids = seed["chunk_ids"]
    found = chunks_by_id(con, ids)
    chunks = [
        {
            "chunk_id": cid,
            "score": 1.0,
            "document": found[cid]["document"],
            "category": found[cid]["category"],
            "section": found[cid]["section"] or "",
            "text": found[cid]["text"],
            "page": found[cid].get("page"),
        }
        for cid in ids
        if cid in found
    ]
    return {**seed, "chunks": chunks}


def seeds_for_run(
    con: duckdb.DuckDBPyConnection, eval_id: str, n: int | None = None, system: str = "student_tuned"
) -> list[dict]:
    """One compact seed per sample index: the failures in item order, round-robin up to ``n``."""
    seeds = seeds_from_eval(con, eval_id, system)
    if not seeds:
        raise FeedbackError(
            f"the {system} student failed no item of '{eval_id}'; nothing to seed a new round with"
        )
    compact = [job_seed(s) for s in seeds]
    return [compact[i % len(compact)] for i in range(n or len(compact))]


def seeded_jobs(con: duckdb.DuckDBPyConnection, run_id: str, seeds: list[dict]) -> list[SampleJob]:
    """Fresh jobs for a seeded run: index i gets ``seeds[i]`` and its chunks from the index."""
    return [SampleJob(i, f"{run_id}-{i:05d}", seed=with_chunks(con, s)) for i, s in enumerate(seeds)]


def run_seeds(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict] | None:
    """The per-index seeds a ``--from-eval`` run recorded in ``run.started`` (None for other runs)."""
    return (run_started(con, run_id) or {}).get("plan_seeds")


def seed_of_planned(planned: dict) -> dict | None:
    """Rebuild a sample's compact seed from its ``sample.planned`` payload (fork of a seeded sample)."""
    origin = planned.get("seeded_from")
    if not origin:
        return None
    plan = PlanSeed(
        tier=planned["tier"],
        user_turns=planned["user_turns"],
        technique=planned["technique"],
        category=planned.get("category"),
        anchor_chunk_id=planned.get("anchor_chunk_id"),
    )
    lineage = {k: v for k, v in origin.items() if k not in ("chunk_ids", "question")}
    return {
        "plan": plan.model_dump(),
        "chunk_ids": origin.get("chunk_ids") or [],
        "question": origin.get("question"),
        "lineage": lineage,
    }
