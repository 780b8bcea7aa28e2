"""The state machine of one sample (one LangGraph run, thread_id = sample_id).

plan → seed_context → user_turn ⇄ teacher_turn → rules → critic → accept     (rules = rules + verifier)
                                                  ↑   ↓ fail     ↓ fail
                                                  └─ refine ←────┘  (until max_revisions, then reject)

The small-model profile (``profile: small``, graph/small_nodes.py) branches after seed_context:
seed_context → small_exchange (user + teacher turn, round-trip checked) ⟲ → rules → small_accept
                   ↓ no consistent exchange                                  ↑   ↓ fail     (no critic)
                 small_reject                            small_revise ───────┘ ←─┘ (until max_revisions)
Any node whose model calls exhaust their retries routes to ``fail``.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from teacherforge.graph import nodes, small_nodes
from teacherforge.graph.state import RunDeps, SampleState


def _failed(state: SampleState) -> bool:
    return state.get("status") == "failed"


def _small(runtime: Runtime[RunDeps]) -> bool:
    return runtime.context.config.small_profile


def after_seed(state: SampleState, runtime: Runtime[RunDeps]) -> str:
    if _failed(state):
        return "fail"
    return "small_exchange" if _small(runtime) else "user_turn"


def after_user(state: SampleState) -> str:
    return "fail" if _failed(state) else "teacher_turn"


def after_teacher(state: SampleState) -> str:
    if _failed(state):
        return "fail"
    asked = sum(1 for t in state["turns"] if t["role"] == "user")
    return "user_turn" if asked < state["plan"]["user_turns"] else "rules"


def after_small_exchange(state: SampleState) -> str:
    """Next exchange, or the gate; an exchange that could not be made rejects (or fails) the sample."""
    if _failed(state):
        return "fail"
    if state.get("status") == "rejected":
        return "small_reject"
    asked = sum(1 for t in state["turns"] if t["role"] == "user")
    return "small_exchange" if asked < state["plan"]["user_turns"] else "rules"


def after_small_revise(state: SampleState) -> str:
    if _failed(state):
        return "fail"
    return "small_reject" if state.get("status") == "rejected" else "rules"


def after_rules(state: SampleState, runtime: Runtime[RunDeps]) -> str:
    """Rules and verifier both gate the critic: any blocking failure of either goes to the refiner.

    In the small profile they are the whole gate: a pass is accepted, a failure regenerated.
    """
    small = _small(runtime)
    if not state["rule_failures"] and not state.get("verifier_failures"):
        return "small_accept" if small else "critic"
    if state["revisions"] >= runtime.context.config.max_revisions:
        return "reject"
    return "small_revise" if small else "refine"


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
    graph.add_node("small_exchange", small_nodes.small_exchange_node)
    graph.add_node("small_revise", small_nodes.small_revise_node)
    graph.add_node("small_accept", small_nodes.small_accept_node)
    graph.add_node("small_reject", small_nodes.small_reject_node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "seed_context")
    graph.add_conditional_edges("seed_context", after_seed, ["user_turn", "small_exchange", "fail"])
    graph.add_conditional_edges("user_turn", after_user, ["teacher_turn", "fail"])
    graph.add_conditional_edges("teacher_turn", after_teacher, ["user_turn", "rules", "fail"])
    small_next = ["small_exchange", "rules", "small_reject", "fail"]
    graph.add_conditional_edges("small_exchange", after_small_exchange, small_next)
    rules_next = ["critic", "refine", "small_accept", "small_revise", "reject"]
    graph.add_conditional_edges("rules", after_rules, rules_next)
    graph.add_conditional_edges("critic", after_critic, ["accept", "refine", "reject", "fail"])
    graph.add_conditional_edges("refine", after_refine, ["rules", "fail"])
    graph.add_conditional_edges("small_revise", after_small_revise, ["rules", "small_reject", "fail"])
    for terminal in ("accept", "small_accept", "reject", "small_reject", "fail"):
        graph.add_edge(terminal, END)
    return graph.compile(checkpointer=checkpointer)
