"""The nodes of the sample graph: each calls one agent or check and records what happened as events.

Nodes are the only place where agent outputs meet the event log: an agent returns a validated
object plus its call records; the node appends ``llm.call`` events for every attempt, then the
event describing the step. A call that exhausts its retries marks the sample ``failed``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from langgraph.runtime import Runtime

from teacherforge.agents import persona_user, refiner, teacher
from teacherforge.agents.llm import LLMCallFailed, LLMCallRecord
from teacherforge.agents.planner import PlanSeed, plan_sample, plan_seeded
from teacherforge.agents.schemas import Plan, TurnProblem, cited_ids
from teacherforge.graph import gate
from teacherforge.graph.state import RunDeps, SampleState
from teacherforge.retrieval.retriever import ScoredChunk


def call_seed(deps: RunDeps, index: int, *parts: Any) -> int:
    """A per-call sampling seed from (run seed, plan index, step), not the sample id: a fork of a sample
    sends the same requests as its parent, so recorded replies can be reused by content hash."""
    blob = ":".join(str(p) for p in (deps.config.seed, index, *parts))
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def record_calls(deps: RunDeps, sample_id: str, calls: list[LLMCallRecord]) -> None:
    for call in calls:
        deps.log.append(deps.run_id, "llm.call", vars(call), sample_id=sample_id, agent=call.agent)


def failed(deps: RunDeps, sample_id: str, exc: LLMCallFailed) -> SampleState:
    record_calls(deps, sample_id, exc.calls)
    return {"status": "failed", "error": str(exc)}


def record_retrieval(
    deps: RunDeps, sample_id: str, purpose: str, query: str, hits: list, turn: int | None, mode: str = ""
) -> None:
    deps.log.append(
        deps.run_id,
        "retrieval.done",
        {
            "purpose": purpose,
            "turn_index": turn,
            "query": query,
            "mode": mode or deps.config.search,
            "chunk_ids": [h.chunk_id for h in hits],
            "scores": [round(h.score, 6) for h in hits],
        },
        sample_id=sample_id,
    )


async def plan_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    deps, seed = runtime.context, state.get("plan_seed")
    if seed:  # run --from-eval: tier, turns and technique come from the failure it retries
        plan_seed = PlanSeed.model_validate(seed["plan"])
        plan = plan_seeded(
            deps.run_id, deps.config.seed, state["index"], deps.config.plan, deps.categories, plan_seed
        )
    else:
        plan = plan_sample(deps.run_id, deps.config.seed, state["index"], deps.config.plan, deps.categories)
    if state.get("sample_id"):  # a fork or a resumed sample keeps the id it was given
        plan = plan.model_copy(update={"sample_id": state["sample_id"]})
    lineage = {k: state[k] for k in ("parent_sample_id", "forked_from_event") if state.get(k)}
    if seed:
        origin = {"question": seed.get("question"), "chunk_ids": seed["chunk_ids"]}
        lineage["seeded_from"] = {**seed["lineage"], **origin}
    deps.log.append(
        deps.run_id,
        "sample.planned",
        {**plan.model_dump(), **lineage},
        sample_id=plan.sample_id,
        agent="planner",
    )
    return {
        "plan": plan.model_dump(),
        "sample_id": plan.sample_id,
        "turns": [],
        "chunk_text": {},
        "revisions": 0,
    }


async def seed_context_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """Top-k chunks the user's questions start from; multi-source spans >= 2 documents."""
    deps, plan = runtime.context, Plan.model_validate(state["plan"])
    retriever, k, mode = deps.retriever, deps.config.top_k, deps.config.search
    seed = state.get("plan_seed")
    if seed and seed.get("chunks"):  # run --from-eval: the chunks of the question the student failed
        hits = [ScoredChunk(**c) for c in seed["chunks"]]
        question = seed.get("question") or ""
        record_retrieval(deps, state["sample_id"], "seed", question, hits, None, mode="seeded")
        chunk_text = {**state["chunk_text"], **{h.chunk_id: h.text for h in hits}}
        return {"seed_chunks": [h.as_dict() for h in hits], "chunk_text": chunk_text}
    if seed:  # its chunks were re-ingested away: retrieve for the failed question instead
        hits = await asyncio.to_thread(retriever.search, seed.get("question") or "", k, mode)
        query = seed.get("question") or ""
    elif plan.technique == "hard_negative":
        query = plan.hard_negative_topic or ""
        hits = await asyncio.to_thread(retriever.search, query, k, mode)
    else:
        anchor_pool = await asyncio.to_thread(
            retriever.search, plan.category or "overview", 50, "vector", plan.category
        )
        if not anchor_pool:
            return {"status": "failed", "error": "the index has no chunks; run 'teacherforge ingest' first"}
        anchor = random.Random(f"anchor:{deps.config.seed}:{plan.index}").choice(anchor_pool)
        query = anchor.text  # the retriever has its vector from ingest: no second embedding
        hits = await asyncio.to_thread(retriever.search, query, k, mode, plan.category)
        if plan.technique == "multi_source":
            others = await asyncio.to_thread(
                retriever.search, query, max(1, k // 2), mode, None, {anchor.document}
            )
            hits = [
                anchor,
                *[h for h in hits if h.document == anchor.document][: k - len(others) - 1],
                *others,
            ]
    record_retrieval(deps, state["sample_id"], "seed", query, hits, None)
    chunk_text = {**state["chunk_text"], **{h.chunk_id: h.text for h in hits}}
    return {"seed_chunks": [h.as_dict() for h in hits], "chunk_text": chunk_text}


async def user_turn_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    deps, plan, sid = runtime.context, Plan.model_validate(state["plan"]), state["sample_id"]
    turns = state["turns"]
    try:
        result = await persona_user.next_user_message(
            deps.agents,
            plan,
            state["seed_chunks"],
            turns,
            call_seed(deps, state["index"], "user", len(turns)),
        )
    except LLMCallFailed as exc:
        return failed(deps, sid, exc)
    record_calls(deps, sid, result.calls)
    turn = {"role": "user", "content": result.output.message}
    deps.log.append(
        deps.run_id, "turn.added", {"turn_index": len(turns), **turn}, sample_id=sid, agent="persona_user"
    )
    return {"turns": [*turns, turn]}


async def teacher_turn_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """Retrieve for the last user message, then answer strictly from those chunks."""
    deps, plan, sid = runtime.context, Plan.model_validate(state["plan"]), state["sample_id"]
    turns = state["turns"]
    query = turns[-1]["content"]
    hits = await asyncio.to_thread(deps.retriever.search, query, deps.config.top_k, deps.config.search)
    record_retrieval(deps, sid, "turn", query, hits, len(turns))
    chunks = [h.as_dict() for h in hits]
    try:
        result = await teacher.answer(
            deps.agents, plan, chunks, turns, call_seed(deps, state["index"], "teacher", len(turns))
        )
    except LLMCallFailed as exc:
        return failed(deps, sid, exc)
    record_calls(deps, sid, result.calls)
    reply = result.output
    turn = {
        "role": "assistant",
        "content": reply.content,
        "thought": reply.thought,
        "evidence": [e.model_dump() for e in reply.evidence],
        "cited_chunk_ids": cited_ids(reply.cited_chunk_ids, reply.evidence),
        "retrieved_chunk_ids": [h.chunk_id for h in hits],
    }
    deps.log.append(
        deps.run_id, "turn.added", {"turn_index": len(turns), **turn}, sample_id=sid, agent="teacher"
    )
    chunk_text = {**state["chunk_text"], **{h.chunk_id: h.text for h in hits}}
    return {"turns": [*turns, turn], "chunk_text": chunk_text}


async def rules_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """The deterministic gate (graph/gate.py): the rules, then the verifier on every assistant turn.

    Each records its own event (``rules.checked``, ``verify.checked``). A blocking failure of either
    sends the sample to the refiner with the exact span to fix; advisory ones are recorded only.
    """
    deps, plan, sid = runtime.context, Plan.model_validate(state["plan"]), state["sample_id"]
    checked = gate.check(plan, state["turns"], state["chunk_text"], deps.config.rules, deps.config.verifier)
    revision = state["revisions"]
    for kind, agent, failures, blocking in (
        ("rules.checked", "rules", checked.rule_failures, checked.blocking_rules),
        ("verify.checked", "verifier", checked.verifier_failures, checked.blocking_verifier),
    ):
        dumped = [f.model_dump() for f in failures]
        payload = {"revision": revision, "passed": not blocking, "failures": dumped}
        deps.log.append(deps.run_id, kind, payload, sample_id=sid, agent=agent)
    return {
        "rule_failures": [f.model_dump() for f in checked.blocking_rules],
        "verifier_failures": [f.model_dump() for f in checked.blocking_verifier],
        "problems": checked.problems(),
    }


def _sample_chunks(state: SampleState, turn: int | None = None) -> list[dict[str, Any]]:
    """Chunks retrieved for the sample, or for one assistant turn, as the critic and refiner see them."""
    ids = list(state["chunk_text"]) if turn is None else state["turns"][turn].get("retrieved_chunk_ids", [])
    return [{"chunk_id": cid, "document": "", "section": "", "text": state["chunk_text"][cid]} for cid in ids]


async def critic_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """A critique that names missing turns is retried, then fails the sample (agents/critic.py)."""
    deps, plan, sid = runtime.context, Plan.model_validate(state["plan"]), state["sample_id"]
    try:
        verdict = await gate.review(
            deps.agents,
            plan,
            _sample_chunks(state),
            state["turns"],
            deps.config.critic_thresholds,
            call_seed(deps, state["index"], "critic", state["revisions"]),
        )
    except LLMCallFailed as exc:
        return failed(deps, sid, exc)
    record_calls(deps, sid, verdict.calls)
    payload = verdict.payload(state["revisions"])
    deps.log.append(deps.run_id, "critique.done", payload, sample_id=sid, agent="critic")
    return {"critique": payload, "problems": verdict.problems(state["turns"])}


def failing_assistant_turns(turns: list[dict[str, Any]], problems: list[dict[str, Any]]) -> list[int]:
    """Assistant turns to rewrite: the one a problem names, or the answer that follows a user turn."""
    indices = set()
    for p in problems:
        i = p["turn_index"]
        if 0 <= i < len(turns):
            indices.add(i if turns[i]["role"] == "assistant" else min(i + 1, len(turns) - 1))
    found = sorted(i for i in indices if turns[i]["role"] == "assistant")
    return found or [i for i, t in enumerate(turns) if t["role"] == "assistant"]


async def refine_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    deps, plan, sid = runtime.context, Plan.model_validate(state["plan"]), state["sample_id"]
    turns, revision = [dict(t) for t in state["turns"]], state["revisions"] + 1
    failing = failing_assistant_turns(turns, state["problems"])
    problems = [TurnProblem.model_validate(p) for p in state["problems"]][:8]
    try:
        result = await refiner.refine(
            deps.agents,
            plan,
            {i: _sample_chunks(state, i) for i in failing},
            turns,
            problems,
            call_seed(deps, state["index"], "refine", revision),
        )
    except LLMCallFailed as exc:
        return failed(deps, sid, exc)
    record_calls(deps, sid, result.calls)
    changed = []
    for revised in result.output.revised_turns:
        i = revised.turn_index
        if i not in failing or turns[i]["role"] != "assistant":
            continue  # the refiner may only touch the turns it was asked to fix
        turns[i] = {
            **turns[i],
            "content": revised.content,
            "thought": revised.thought,
            "evidence": [e.model_dump() for e in revised.evidence],
            "cited_chunk_ids": cited_ids(revised.cited_chunk_ids, revised.evidence),
        }
        changed.append(i)
        deps.log.append(
            deps.run_id,
            "turn.revised",
            {"turn_index": i, "revision": revision, **turns[i]},
            sample_id=sid,
            agent="refiner",
        )
    deps.log.append(
        deps.run_id,
        "refine.done",
        {
            "revision": revision,
            "failing_turns": failing,
            "changed_turns": changed,
            "problems": state["problems"],
        },
        sample_id=sid,
        agent="refiner",
    )
    return {"turns": turns, "revisions": revision}


async def accept_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    deps = runtime.context
    critique = state.get("critique") or {}
    payload = {"revisions": state["revisions"], "scores": critique.get("scores")}
    deps.log.append(deps.run_id, "sample.accepted", payload, sample_id=state["sample_id"])
    return {"status": "accepted", "reasons": []}


async def reject_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    deps = runtime.context
    reasons = gate.rule_reasons(state.get("rule_failures") or [])
    reasons += gate.verifier_reasons(state.get("verifier_failures") or [])
    critique = state.get("critique")
    if not reasons and critique:
        reasons = gate.critic_reasons(critique)
    payload = {"revisions": state["revisions"], "reasons": reasons}
    deps.log.append(deps.run_id, "sample.rejected", payload, sample_id=state["sample_id"])
    return {"status": "rejected", "reasons": reasons}


async def fail_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    deps = runtime.context
    payload = {
        "revisions": state.get("revisions", 0),
        "error": state.get("error"),
        "reasons": [state.get("error")],
    }
    deps.log.append(deps.run_id, "sample.failed", payload, sample_id=state["sample_id"])
    return {"status": "failed"}
