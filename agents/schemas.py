"""Pydantic contracts of every agent's output.

They are sent to the model as JSON schemas (guided decoding on vLLM, a grammar on llama.cpp), so
string lengths are capped: a small model must never be able to run past ``max_tokens`` mid-JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Tier = Literal["direct", "reasoning", "edge"]
Technique = Literal["standard", "hard_negative", "multi_source"]
ChunkId = Annotated[str, Field(max_length=40)]


class Persona(BaseModel):
    """Who the simulated user is; the Persona-User writes in this voice."""

    name: str
    description: str


class Plan(BaseModel):
    """Everything decided about a sample before any model is called (deterministic from seed+index)."""

    sample_id: str
    index: int
    category: str | None
    tier: Tier
    persona: Persona
    technique: Technique
    user_turns: int = Field(ge=1, le=12)
    evol_operators: list[str] = Field(default_factory=list)
    edge_noise: list[str] = Field(default_factory=list)
    hard_negative_topic: str | None = None
    anchor_chunk_id: str | None = None


# The texts that become turns are stripped here, before their length checks: a reply of blanks
# (seen from the 135M model) passed ``min_length=1`` and, stripped later into the turn, was an empty
# message; now it fails validation and is asked again. The nodes take these texts as they are. The
# JSON schema sent to the server is unchanged, so recorded requests keep their hashes.
STRIPPED = ConfigDict(str_strip_whitespace=True)


class UserMessage(BaseModel):
    """The Persona-User's next message."""

    model_config = STRIPPED

    message: str = Field(
        min_length=1, max_length=600, description="The user's next message, in persona voice."
    )


MAX_QUOTE_CHARS = 300
MAX_EVIDENCE = 4


class Evidence(BaseModel):
    """One verbatim span of a retrieved chunk that the answer rests on; the verifier checks it is real."""

    chunk_id: ChunkId = Field(description="Id of the source the quote is copied from.")
    quote: str = Field(
        min_length=1, max_length=MAX_QUOTE_CHARS, description="A short span copied word for word from it."
    )


def _evidence_field() -> list[Evidence]:
    """The same ``evidence`` field for the teacher's reply and the refiner's rewrite."""
    return Field(
        default_factory=list,
        max_length=MAX_EVIDENCE,
        description="Up to 4 short quotes copied from the sources that back the reply; empty when refusing.",
    )


class TeacherReply(BaseModel):
    """The Agent-Teacher's answer: a hidden reasoning trace, the evidence it rests on, the visible reply.

    ``evidence`` comes before ``content`` so a model commits to its quotes before it writes the reply.
    """

    model_config = STRIPPED

    thought: str = Field(
        min_length=1,
        max_length=800,
        description="Private step-by-step reasoning that cites the chunk ids it uses, e.g. [c1].",
    )
    evidence: list[Evidence] = _evidence_field()
    cited_chunk_ids: list[ChunkId] = Field(
        default_factory=list, max_length=8, description="Ids of the retrieved chunks the answer relies on."
    )
    content: str = Field(min_length=1, max_length=1200, description="The reply the user sees.")


MAX_PROBLEM_CHARS = 300


class TurnProblem(BaseModel):
    """One concrete problem the critic found, tied to a conversation turn."""

    turn_index: int = Field(ge=0, le=40, description="Index of the turn in the conversation (0 = first).")
    problem: str = Field(min_length=1, max_length=MAX_PROBLEM_CHARS)


class CriticScores(BaseModel):
    """Scores 1–5; pass/fail is decided by configurable thresholds, not by the model."""

    groundedness: int = Field(ge=1, le=5)
    persona_fidelity: int = Field(ge=1, le=5)
    tier_match: int = Field(ge=1, le=5)
    refusal_correctness: int = Field(ge=1, le=5)
    naturalness: int = Field(ge=1, le=5)


class Critique(BaseModel):
    """The critic's structured verdict."""

    scores: CriticScores
    problems: list[TurnProblem] = Field(default_factory=list, max_length=8)


class RevisedTurn(BaseModel):
    """A rewritten assistant turn."""

    model_config = STRIPPED

    turn_index: int = Field(ge=0, le=40)
    thought: str = Field(min_length=1, max_length=800)
    evidence: list[Evidence] = _evidence_field()
    cited_chunk_ids: list[ChunkId] = Field(default_factory=list, max_length=8)
    content: str = Field(min_length=1, max_length=1200)


class Refinement(BaseModel):
    """The refiner's rewrite of the failing assistant turns."""

    revised_turns: list[RevisedTurn] = Field(min_length=1, max_length=4)


def cited_ids(cited: list[str], evidence: list[Evidence] | list[dict[str, str]]) -> list[str]:
    """``cited_chunk_ids`` as recorded: the model's list plus every evidence chunk, each once, in order.

    Why: the event schema keeps ``cited_chunk_ids``; making it the union means a quote's chunk is always
    a citation, so the rule that citations were retrieved also covers the evidence.
    """
    ids = [e["chunk_id"] if isinstance(e, dict) else e.chunk_id for e in evidence]
    return list(dict.fromkeys([*cited, *ids]))


# --- the small-model profile (agents/small_teacher.py): one short object per call ----------------

MAX_PICKABLE = 10  # sentences shown to the model to pick from


class SmallQuestion(BaseModel):
    """One user question, grown from one sentence of a chunk (or rewritten by an Evol operator)."""

    question: str = Field(min_length=1, max_length=200)


class SmallPick(BaseModel):
    """The numbers of the listed sentences that answer the question; the code quotes them."""

    sentences: list[Annotated[int, Field(ge=1, le=MAX_PICKABLE)]] = Field(min_length=1, max_length=2)


class SmallAnswer(BaseModel):
    """The reply the user sees, written from the picked sentences only (or a refusal)."""

    answer: str = Field(min_length=1, max_length=400)
