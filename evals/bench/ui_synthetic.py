"""A synthetic event log shaped like a real run, for the ``teacherforge ui`` page benchmark.

Why not evals/bench/event_log.py's log: the UI reads plans, retrievals, critiques, verdicts and
terminal events, so every sample here has them (two user turns, two teacher turns with evidence,
rules, verifier, critic, a refine step for some), padded with ``llm.call`` attempts up to the
requested events per sample. Deterministic from the sample index.
"""

from __future__ import annotations

from pathlib import Path

from teacherforge.retrieval.index import ensure_index_schema
from teacherforge.store.chunk_tables import ChunkRow, replace_document
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

RUN_ID = "run-20261201-000000-bench"
TIERS = ("direct", "reasoning", "edge")
PERSONAS = ("first-year student", "parent", "international applicant", "local villager")
TECHNIQUES = ("standard", "standard", "multi_source", "hard_negative")
CATEGORIES = ("fees", "admissions", "scholarships", "housing")
WORDS = (
    "tuition",
    "deposit",
    "dormitory",
    "bursary",
    "deadline",
    "transcript",
    "visa",
    "refund",
    "semester",
    "campus",
)
N_CHUNKS = 400
SCORES = {
    "groundedness": 5,
    "persona_fidelity": 4,
    "tier_match": 4,
    "refusal_correctness": 5,
    "naturalness": 4,
}


def chunk_id(i: int) -> str:
    return f"doc{i // 10:07d}-{i % 10}"


def add_chunks(con, n: int = N_CHUNKS) -> None:
    """``n`` chunks in ``n / 10`` documents, so the sample page can show sources."""
    ensure_index_schema(con, 384)
    for d in range(n // 10):
        text = " ".join(WORDS) * 8
        rows = [
            ChunkRow(chunk_id(d * 10 + k), f"corpus/{CATEGORIES[d % 4]}/doc{d}.md", CATEGORIES[d % 4],
                     "Fees > Deposits", k * 800, k * 800 + 700, f"Chunk {k} of doc {d}: {text}", [0.0] * 384,
                     None)
            for k in range(10)
        ]  # fmt: skip
        replace_document(con, f"corpus/{CATEGORIES[d % 4]}/doc{d}.md", f"h{d}", f"Doc {d}",
                         CATEGORIES[d % 4], "bench", rows)  # fmt: skip


Step = tuple[str, dict, str | None]  # (event type, payload, agent)


def _call(agent: str, sid: str, n: int, error: str | None = None) -> Step:
    payload = {
        "agent": agent, "endpoint": "http://127.0.0.1:8000/v1", "model": "stub-model",
        "messages": [{"role": "system", "content": "You are the teacher. " * 10},
                     {"role": "user", "content": "Answer from the sources. " * 16}],
        "params": {"temperature": 0.7, "max_tokens": 512, "seed": n}, "schema_name": "TeacherReply",
        "template": f"en/{agent}.j2", "template_hash": "abc123", "request_hash": f"{sid}-{n}",
        "attempt": 1, "latency_ms": 850.0 + n, "raw": '{"content": "' + "x" * 300 + '"}', "parsed": None,
        "tokens_in": 900, "tokens_out": 150, "error": error, "reused": False,
    }  # fmt: skip
    return "llm.call", payload, agent


def sample_events(index: int, per_sample: int) -> list[Step]:
    """One sample's events: plan, turns with retrievals, the gate and the critic, a terminal event."""
    sid = f"{RUN_ID}-{index:05d}"
    plan = {
        "sample_id": sid, "index": index, "tier": TIERS[index % 3], "technique": TECHNIQUES[index % 4],
        "persona": {"name": PERSONAS[index % 4], "description": "asks about money"},
        "category": CATEGORIES[(index // 4) % 4], "user_turns": 2, "evol_operators": [], "edge_noise": [],
    }  # fmt: skip
    steps: list[Step] = []

    def add(kind: str, payload: dict, agent: str | None = None) -> None:
        steps.append((kind, payload, agent))

    add("sample.planned", plan, "planner")
    for turn in (0, 2):
        word = WORDS[(index + turn) % len(WORDS)]
        steps.append(_call("persona_user", sid, len(steps)))
        add("turn.added", {"turn_index": turn, "role": "user",
                           "content": f"Question {index}: what about the {word} for sample {index}?"},
            "persona_user")  # fmt: skip
        ids = [chunk_id((index * 7 + turn + k) % N_CHUNKS) for k in range(4)]
        add("retrieval.done", {"purpose": "turn", "turn_index": turn + 1, "query": word, "mode": "hybrid",
                               "chunk_ids": ids, "scores": [0.9, 0.7, 0.5, 0.3]})  # fmt: skip
        steps.append(_call("teacher", sid, len(steps)))
        add("turn.added", {"turn_index": turn + 1, "role": "assistant",
                           "content": f"The {word} is described in the sources. " * 6,
                           "thought": f"[{ids[0]}] says so.", "cited_chunk_ids": ids[:1],
                           "evidence": [{"chunk_id": ids[0], "quote": f"Chunk {(index * 7 + turn) % 10}"}],
                           "retrieved_chunk_ids": ids}, "teacher")  # fmt: skip
    refine = index % 5 == 0
    add("rules.checked", {"revision": 0, "passed": True, "failures": []}, "rules")
    add("verify.checked", {"revision": 0, "passed": index % 7 != 0, "failures": []}, "verifier")
    steps.append(_call("critic", sid, len(steps)))
    scores = {**SCORES, "groundedness": 2} if refine else SCORES
    add("critique.done", {"revision": 0, "scores": scores, "problems": [], "passed": not refine,
                          "failed_dimensions": ["groundedness"] if refine else []}, "critic")  # fmt: skip
    if refine:
        problems = [{"turn_index": 1, "problem": "unsupported figure"}]
        add(
            "refine.done",
            {"revision": 1, "failing_turns": [1], "changed_turns": [1], "problems": problems},
            "refiner",
        )
    while len(steps) < per_sample - 1:
        steps.append(_call("teacher", sid, len(steps), error="timeout" if len(steps) % 9 == 0 else None))
    if index % 6 == 5:
        add("sample.rejected", {"revisions": 1, "reasons": ["critic: groundedness 2 < 4"]})
    else:
        add("sample.accepted", {"revisions": int(refine), "scores": scores})
    return steps


def build(path: Path, samples: int, per_sample: int, concurrency: int = 16) -> int:
    """Write the log into ``path`` (``concurrency`` samples interleaved, as in a run); returns its size."""
    con = connect(path)
    create_views(con)
    add_chunks(con)
    log = EventLog(con)
    log.append(RUN_ID, "run.started", {"n": samples, "config": {}, "config_hash": "bench"})
    for start in range(0, samples, concurrency):
        window = [
            (f"{RUN_ID}-{i:05d}", sample_events(i, per_sample))
            for i in range(start, min(samples, start + concurrency))
        ]
        for step in range(max(len(steps) for _, steps in window)):
            for sid, steps in window:
                if step < len(steps):
                    kind, payload, agent = steps[step]
                    log.append(RUN_ID, kind, payload, sample_id=sid, agent=agent)
    log.append(RUN_ID, "run.finished", {"status": "finished"})
    log.close()
    total = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    con.execute("CHECKPOINT")
    con.close()
    return total
