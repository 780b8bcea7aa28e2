"""The small-model profile's nodes (agents/small_teacher.py): grow a question, extract its answer, check.

Why a branch of its own: the standard nodes ask one agent for a whole turn and repair failures with
the JSON refiner; a 135M model can do neither. Here one node makes an *exchange*, a user turn and
the assistant turn that answers it:

1. the code picks a sentence of the seed with a figure (later: of the chunks the previous answer
   retrieved, same document first) and cuts the figure out; the persona-user asks for it, then the
   tier's operators rewrite the question where a 135M model can follow them;
2. the teacher retrieves for that question, as in the standard profile; the best-ranked sentence of
   those chunks is the evidence (quoted verbatim by the code) and the model answers from it;
3. round-trip consistency: the answer must state the figure the question asked for. A pair that
   fails is discarded (``exchange.discarded``, with why), answered again without that evidence,
   then grown again from another sentence, up to ``PAIR_TRIES``; then the sample is rejected.

The gate is the rules and the verifier, without a critic (the 135M critic grades at random,
docs/student.md). A failing gate regenerates the exchanges with a failing turn, with new seeds, up
to ``max_revisions``, instead of the JSON refiner. Plan, seed context, rules and reject are the
standard nodes.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime

from teacherforge.agents import small_teacher
from teacherforge.agents.llm import LLMCallFailed
from teacherforge.agents.schemas import Plan
from teacherforge.agents.sentences import Fact, Sentence, gaps
from teacherforge.agents.small_checks import roundtrip_problem
from teacherforge.agents.small_teacher import SMALL_CRITIC, fact_candidates
from teacherforge.graph.nodes import call_seed, failed, record_calls, record_retrieval
from teacherforge.graph.state import RunDeps, SampleState

PAIR_TRIES = 3  # questions grown (each from its own sentence) before the sample is rejected
ANSWER_TRIES = 2  # answers to one question (each without the sentences the last one rested on)


@dataclass
class Exchange:
    """A user turn and its answer, with what their events record besides the turns."""

    user: dict[str, Any]
    assistant: dict[str, Any]
    grown_from: dict[str, Any]
    extraction: dict[str, Any]
    chunk_text: dict[str, str]
    used: list[str] = field(default_factory=list)


def _facts_for(state: SampleState, turns: list[dict[str, Any]], used: list[str]) -> list[Sentence]:
    """Where the next question grows from: the seed's anchor chunk first; later exchanges the chunks
    the previous answer retrieved (then the other seed chunks). A multi-source sample's follow-up
    prefers a document the conversation has not used yet."""
    seed_chunks = state.get("seed_chunks") or []
    if not turns:  # the anchor's sentences, unless none has a figure to ask for and another seed chunk has
        anchor = fact_candidates(seed_chunks[:1], used)
        if any(gaps(s) for s in anchor):
            return anchor
        return fact_candidates(seed_chunks, used) or anchor
    text = state["chunk_text"]
    last = [{"chunk_id": c, "text": text[c]} for c in turns[-1].get("retrieved_chunk_ids") or [] if c in text]
    pool = fact_candidates([*last, *seed_chunks], used)
    cited = {_document(e["chunk_id"]) for t in turns for e in t.get("evidence") or []}
    if Plan.model_validate(state["plan"]).technique == "multi_source":
        preferred = [s for s in pool if _document(s.chunk_id) not in cited]
    else:  # a follow-up about the same document: a coherent conversation, and one an export can split
        preferred = [s for s in pool if _document(s.chunk_id) in cited]
    return preferred if any(gaps(s) for s in preferred) else pool


def _model_said_no(exc: LLMCallFailed) -> bool:
    """Did the call fail on the model's replies (unparsable or refused by a check), not on the server?

    Why: a reply the checks refuse is the small model's limit and rejects the sample; a server that
    stopped answering fails it, as in the standard profile, so the runner can stop a dead run early.
    """
    last = exc.calls[-1].error if exc.calls else None
    return bool(last) and last.startswith(("invalid:", "parse:"))


def _give_up(deps: RunDeps, sid: str, exc: LLMCallFailed, why: list[str], what: str) -> SampleState | None:
    """After a failed call: the failed state when the server failed; else None, with the calls
    recorded and ``what`` added to ``why``, so the caller tries its next sentence or answer."""
    if not _model_said_no(exc):
        return failed(deps, sid, exc)
    record_calls(deps, sid, exc.calls)
    why.append(f"{what} ({exc})")
    return None


def _document(chunk_id: str) -> str:
    """A chunk's document: chunk ids are ``<document hash>-<position>``."""
    return chunk_id.rsplit("-", 1)[0]


def _draw_facts(
    state: SampleState, turns: list[dict[str, Any]], used: list[str], rng: random.Random
) -> list[Fact | None]:
    """Up to PAIR_TRIES different sentences to grow from (a hard negative grows from its topic)."""
    if Plan.model_validate(state["plan"]).technique == "hard_negative":
        return [None] * PAIR_TRIES
    pool: list[Sentence] = _facts_for(state, turns, used)
    facts: list[Fact | None] = []
    while len(facts) < PAIR_TRIES:
        fact = small_teacher.choose_fact(pool, rng)
        if fact is None:
            break
        facts.append(fact)
        pool = [s for s in pool if s is not fact.sentence]
    return facts


async def _more_seed_chunks(deps: RunDeps, state: SampleState, plan: Plan, used: list[str]) -> SampleState:
    """When no seed chunk has a sentence with a figure, the nearest chunks of the category that do
    (at most top_k, recorded as a second seed retrieval) join the seed chunks."""
    seed_chunks = state.get("seed_chunks") or []
    # the first seed chunk's whole text: the retriever has its vector from ingest (no embedding)
    query = seed_chunks[0]["text"] if seed_chunks else plan.category or "overview"
    hits = await asyncio.to_thread(deps.retriever.search, query, 10, deps.config.search, plan.category)
    have = {c["chunk_id"] for c in seed_chunks}
    useful = [
        h
        for h in hits
        if h.chunk_id not in have and any(gaps(x) for x in fact_candidates([h.as_dict()], used))
    ]
    useful = useful[: deps.config.top_k]
    if not useful:
        return state
    record_retrieval(deps, state["sample_id"], "seed", query, useful, None)
    return {
        **state,
        "seed_chunks": [*seed_chunks, *(h.as_dict() for h in useful)],
        "chunk_text": {**state["chunk_text"], **{h.chunk_id: h.text for h in useful}},
    }


async def _answer(
    deps: RunDeps, state: SampleState, turns: list[dict[str, Any]], seed: int, exclude: list[str]
) -> tuple[small_teacher.SmallTurn, list]:
    """Retrieve for the last user turn and answer it; raises LLMCallFailed or ValueError.

    The retrieval is recorded (``retrieval.done``) only for an exchange that is kept, so a sample's
    source chunks are those of its turns; a discarded exchange lists its chunks in its own event.
    """
    plan = Plan.model_validate(state["plan"])
    query = turns[-1]["content"]
    hits = await asyncio.to_thread(deps.retriever.search, query, deps.config.top_k, deps.config.search)
    chunks = [h.as_dict() for h in hits]
    user_text = "\n".join(t["content"] for t in turns if t["role"] == "user")
    quotes = [e["quote"] for t in turns if t["role"] == "assistant" for e in t.get("evidence") or []]
    reply = await small_teacher.answer_turn(
        deps.agents,
        plan,
        query,
        chunks,
        user_text,
        quotes,
        seed,
        deps.config.small,
        deps.config.verifier,
        exclude,
    )
    return reply, hits


async def make_exchange(
    deps: RunDeps, state: SampleState, turns: list[dict[str, Any]], revision: int, others: list[str]
) -> Exchange | SampleState:
    """A round-trip-consistent exchange after ``turns``, or a rejected/failed state.

    Up to PAIR_TRIES questions, each grown from its own sentence; each gets up to ANSWER_TRIES
    answers. ``others`` are the other user questions of the conversation (a new one must differ).
    """
    plan, sid = Plan.model_validate(state["plan"]), state["sample_id"]
    used = list(state.get("used_facts") or [])
    index = len(turns)
    rng = random.Random(f"small-fact:{deps.config.seed}:{plan.index}:{index}:{revision}")
    facts = _draw_facts(state, turns, used, rng)
    if not facts and not turns:
        state = await _more_seed_chunks(deps, state, plan, used)
        facts = _draw_facts(state, turns, used, rng)
    if not facts:
        reason = "small profile: no sentence with a figure to ask about in the chunks for this turn"
        return {"status": "rejected", "reasons": [reason]}
    why: list[str] = []
    for k, fact in enumerate(facts):
        seed = call_seed(deps, state["index"], "small", index, revision, k)
        try:
            grown = await small_teacher.grow_question(
                deps.agents, plan, fact, others, seed, deps.config.small
            )
        except LLMCallFailed as exc:
            if (ended := _give_up(deps, sid, exc, why, "no usable question")) is not None:
                return ended
            continue
        record_calls(deps, sid, grown.calls)
        if fact is not None:
            used.append(fact.sentence.quote)
        user = {"role": "user", "content": grown.question}
        exclude: list[str] = []
        for attempt in range(ANSWER_TRIES):
            try:
                reply, hits = await _answer(deps, state, [*turns, user], seed + 7 + 13 * attempt, exclude)
            except LLMCallFailed as exc:
                what = f"no usable answer to '{grown.question}'"
                if (ended := _give_up(deps, sid, exc, why, what)) is not None:
                    return ended
                break
            except ValueError as exc:
                why.append(str(exc))
                break
            record_calls(deps, sid, reply.calls)
            problem = roundtrip_problem(fact, reply.content, reply.evidence) if fact is not None else None
            if problem is None:
                return _kept(deps, sid, index, grown, user, reply, hits, used)
            discarded = {"turn_index": index, "question": grown.question, "answer": reply.content}
            discarded |= {"grown_from": grown.origin(), "why": f"round-trip: {problem}"}
            discarded |= {"evidence": reply.evidence, "retrieved_chunk_ids": [h.chunk_id for h in hits]}
            deps.log.append(deps.run_id, "exchange.discarded", discarded, sample_id=sid, agent="teacher")
            why.append(f"round-trip: {problem}")
            exclude += [e["quote"] for e in reply.evidence]
    last = why[-1] if why else "?"
    reason = f"small profile: no exchange for turn {index} from {len(facts)} sentence(s); last: {last}"
    return {"status": "rejected", "reasons": [reason[:400]]}


def _kept(
    deps: RunDeps,
    sid: str,
    index: int,
    grown: small_teacher.Grown,
    user: dict[str, Any],
    reply: small_teacher.SmallTurn,
    hits: list,
    used: list[str],
) -> Exchange:
    """The exchange that passed: its retrieval is recorded now (a discarded one's is not)."""
    record_retrieval(deps, sid, "turn", grown.question, hits, index + 1)
    assistant = {
        "role": "assistant",
        "content": reply.content,
        "thought": reply.thought,
        "evidence": reply.evidence,
        "cited_chunk_ids": list(dict.fromkeys(e["chunk_id"] for e in reply.evidence)),
        "retrieved_chunk_ids": [h.chunk_id for h in hits],
    }
    picked = [e["quote"] for e in reply.evidence]
    chunks = {h.chunk_id: h.text for h in hits}
    return Exchange(user, assistant, grown.origin(), reply.extraction(), chunks, [*used, *picked])


def _record_exchange(deps: RunDeps, sid: str, index: int, ex: Exchange, revision: int | None) -> None:
    """Two ``turn.added`` events (or ``turn.revised`` with the revision) for an exchange at ``index``."""
    kind = "turn.added" if revision is None else "turn.revised"
    extra = {} if revision is None else {"revision": revision}
    user = {"turn_index": index, **extra, **ex.user, "grown_from": ex.grown_from}
    deps.log.append(deps.run_id, kind, user, sample_id=sid, agent="persona_user")
    answer = {"turn_index": index + 1, **extra, **ex.assistant, "extraction": ex.extraction}
    deps.log.append(deps.run_id, kind, answer, sample_id=sid, agent="teacher")


async def small_exchange_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """The next user turn and its answer (a new exchange)."""
    deps, sid, turns = runtime.context, state["sample_id"], state["turns"]
    others = [t["content"] for t in turns if t["role"] == "user"]
    made = await make_exchange(deps, state, turns, 0, others)
    if isinstance(made, dict):
        return made
    _record_exchange(deps, sid, len(turns), made, None)
    return {
        "turns": [*turns, made.user, made.assistant],
        "chunk_text": {**state["chunk_text"], **made.chunk_text},
        "used_facts": made.used,
    }


def failing_exchanges(state: SampleState) -> list[int]:
    """Index of the user turn of every exchange the gate failed; a failure without a turn (structure)
    fails them all."""
    found = [*(state.get("rule_failures") or []), *(state.get("verifier_failures") or [])]
    turns = state["turns"]
    if any(f.get("turn_index") is None for f in found):
        return [i for i, t in enumerate(turns) if t["role"] == "user"]
    indices = {f["turn_index"] for f in found if 0 <= f["turn_index"] < len(turns)}
    return sorted({i if turns[i]["role"] == "user" else i - 1 for i in indices if i >= 0} - {-1})


async def small_revise_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """Regenerate every exchange with a turn the gate failed, with new seeds (not the JSON refiner).

    The whole exchange is grown again: a new question needs a new answer, and a new answer must
    still say what its question was grown from. Other exchanges stay as they were. Each new turn is
    a ``turn.revised`` event; ``refine.done`` records the round.
    """
    deps, sid = runtime.context, state["sample_id"]
    turns, revision = [dict(t) for t in state["turns"]], state["revisions"] + 1
    starts = failing_exchanges(state)
    chunk_text, used = dict(state["chunk_text"]), list(state.get("used_facts") or [])
    for u in starts:
        others = [t["content"] for i, t in enumerate(turns) if t["role"] == "user" and i != u]
        sub = {**state, "turns": turns[:u], "chunk_text": chunk_text, "used_facts": used}
        made = await make_exchange(deps, sub, turns[:u], revision, others)
        if isinstance(made, dict):
            return {**made, "revisions": revision}
        turns[u : u + 2] = [made.user, made.assistant]
        chunk_text.update(made.chunk_text)
        used = made.used
        _record_exchange(deps, sid, u, made, revision)
    payload = {
        "revision": revision,
        "failing_turns": starts,
        "changed_turns": sorted({i for u in starts for i in (u, u + 1)}),
        "problems": state.get("problems") or [],
        "method": "regenerate (small profile): the failing exchanges grown again with new seeds",
    }
    deps.log.append(deps.run_id, "refine.done", payload, sample_id=sid, agent="teacher")
    return {"turns": turns, "revisions": revision, "chunk_text": chunk_text, "used_facts": used}


async def small_accept_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """Accepted by the rules and the verifier alone: no critic judged it, and the event says so."""
    deps = runtime.context
    payload = {"revisions": state["revisions"], "scores": None, "critic": SMALL_CRITIC}
    deps.log.append(deps.run_id, "sample.accepted", payload, sample_id=state["sample_id"])
    return {"status": "accepted", "reasons": []}


async def small_reject_node(state: SampleState, runtime: Runtime[RunDeps]) -> SampleState:
    """Rejected before the gate: no exchange passed round-trip consistency (or was usable at all)."""
    deps = runtime.context
    payload = {"revisions": state.get("revisions", 0), "reasons": state.get("reasons") or []}
    deps.log.append(deps.run_id, "sample.rejected", payload, sample_id=state["sample_id"])
    return {"status": "rejected"}
