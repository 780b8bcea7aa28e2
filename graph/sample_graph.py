"""The state machine of one sample (one LangGraph run, thread_id = sample_id).

plan → seed_context → user_turn ⇄ teacher_turn → rules → critic → accept     (rules = rules + verifier)
                                                  ↑   ↓ fail     ↓ fail
                                                  └─ refine ←────┘  (until max_revisions, then reject)
Any node whose model calls exhaust their retries routes to ``fail``.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from teacherforge.graph import nodes
from teacherforge.graph.state import RunDeps, SampleState


def _failed(state: SampleState) -> bool:
    return state.get("status") == "failed"


def after_seed(state: SampleState) -> str:
    return "fail" if _failed(state) else "user_turn"


def after_user(state: SampleState) -> str:
    return "fail" if _failed(state) else "teacher_turn"


def after_teacher(state: SampleState) -> str:
    if _failed(state):
        return "fail"
    asked = sum(1 for t in state["turns"] if t["role"] == "user")
    return "user_turn" if asked < state["plan"]["user_turns"] else "rules"


def after_rules(state: SampleState, runtime: Runtime[RunDeps]) -> str:
    """Rules and verifier both gate the critic: any blocking failure of either goes to the refiner."""
    if not state["rule_failures"] and not state.get("verifier_failures"):
        return "critic"
    return "refine" if state["revisions"] < runtime.context.config.max_revisions else "reject"


def after_critic(state: SampleState, runtime: Runtime[RunDeps]) -> str:
    if _failed(state):
        return "fail"
    if state["critique"]["passed"]:
        return "accept"
    return "refine" if state["revisions"] < runtime.context.config.max_revisions else "reject"


def after_refine(state: SampleState) -> str:
    return "fail" if _failed(state) else "rules"


def build_sample_graph(checkpointer=None):
    graph = StateGraph(SampleState, context_schema=RunDeps)
    graph.add_node("plan", nodes.plan_node)
    graph.add_node("seed_context", nodes.seed_context_node)
    graph.add_node("user_turn", nodes.user_turn_node)
    graph.add_node("teacher_turn", nodes.teacher_turn_node)
    graph.add_node("rules", nodes.rules_node)
    graph.add_node("critic", nodes.critic_node)
    graph.add_node("refine", nodes.refine_node)
    graph.add_node("accept", nodes.accept_node)
    graph.add_node("reject", nodes.reject_node)
    graph.add_node("fail", nodes.fail_node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "seed_context")
    graph.add_conditional_edges("seed_context", after_seed, ["user_turn", "fail"])
    graph.add_conditional_edges("user_turn", after_user, ["teacher_turn", "fail"])
    graph.add_conditional_edges("teacher_turn", after_teacher, ["user_turn", "rules", "fail"])
    graph.add_conditional_edges("rules", after_rules, ["critic", "refine", "reject"])
    graph.add_conditional_edges("critic", after_critic, ["accept", "refine", "reject", "fail"])
    graph.add_conditional_edges("refine", after_refine, ["rules", "fail"])
    for terminal in ("accept", "reject", "fail"):
        graph.add_edge(terminal, END)
    return graph.compile(checkpointer=checkpointer)
