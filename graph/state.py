"""The LangGraph state of one sample and the dependencies injected into its nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from teacherforge.agents.context import AgentContext
from teacherforge.graph.config import RunConfig
from teacherforge.retrieval.retriever import Retriever
from teacherforge.store.events import EventLog


class SampleState(TypedDict, total=False):
    index: int
    sample_id: str
    parent_sample_id: str
    forked_from_event: str
    plan_seed: dict[str, Any]  # run --from-eval: PlanSeed fields, chunk ids and texts, lineage
    plan: dict[str, Any]
    seed_chunks: list[dict[str, Any]]
    turns: list[dict[str, Any]]
    chunk_text: dict[str, str]
    used_facts: list[str]  # small profile: sentences already asked about or quoted (no repeats)
    revisions: int
    rule_failures: list[dict[str, Any]]  # blocking ones only; all are in the rules.checked event
    verifier_failures: list[dict[str, Any]]  # blocking ones only; all are in the verify.checked event
    critique: dict[str, Any] | None
    problems: list[dict[str, Any]]
    status: str
    reasons: list[str]
    error: str | None


@dataclass
class RunDeps:
    """Run-wide dependencies (LangGraph runtime context): agents, retrieval, the event log."""

    run_id: str
    config: RunConfig
    agents: AgentContext
    retriever: Retriever
    log: EventLog
    categories: list[str]
