"""The `run --dry-run` report: the plan of a fresh run and an estimate of its calls and tokens.

Nothing is sent to a model. The estimate renders each agent's prompt at typical sizes and counts the
calls of the profile the run would use: the standard profile's persona-user, teacher and critic calls,
or the small profile's question, rewrite, pick, answer and refusal calls (agents/small_teacher.py),
which has no critic. Once a database holds earlier runs, their recorded per-sample rates are shown too.
"""

from __future__ import annotations

import collections
from typing import Any

import duckdb

from teacherforge.agents.planner import plan_sample
from teacherforge.agents.schemas import Plan
from teacherforge.agents.small_teacher import EVOL_REWRITES, SmallSettings
from teacherforge.graph.budget import Budget
from teacherforge.graph.config import RunConfig
from teacherforge.prompts import PromptLibrary
from teacherforge.store.chunk_tables import first_chunks
from teacherforge.store.run_queries import agent_call_rates

CHARS_PER_TOKEN = 4.0  # a rough English average; recorded averages replace it once a run exists
# Typical reply sizes in tokens when nothing is recorded yet (schema caps keep replies short).
DEFAULT_OUT_TOKENS = {"persona_user": 60, "teacher": 250, "critic": 120, "refiner": 300}
# Stand-ins of typical length for what the small profile's prompts show.
STAND_IN_SENTENCE = "Students who withdraw after the census date pay 50% of the semester fee of $4,200."
STAND_IN_QUESTION = "How much do I still pay if I withdraw from my course after the census date?"


def plan_counts(plans: list[Plan]) -> dict[str, dict[str, int]]:
    counts: dict[str, collections.Counter] = {
        "tier": collections.Counter(),
        "persona": collections.Counter(),
        "technique": collections.Counter(),
        "category": collections.Counter(),
    }
    for p in plans:
        counts["tier"][p.tier] += 1
        counts["persona"][p.persona.name] += 1
        counts["technique"][p.technique] += 1
        counts["category"][p.category or "(none)"] += 1
    return {k: dict(sorted(v.items())) for k, v in counts.items()}


def make_plans(config: RunConfig, categories: list[str], run_id: str = "dry-run") -> list[Plan]:
    return [plan_sample(run_id, config.seed, i, config.plan, categories) for i in range(config.n)]


def recorded_averages(con: duckdb.DuckDBPyConnection, profile: str) -> dict[str, dict[str, float]]:
    """Per agent, from earlier runs of ``profile``: calls per sample and mean tokens in/out of successes."""
    return {
        agent: {"calls_per_sample": float(per), "tokens_in": float(tin or 0), "tokens_out": float(tout or 0)}
        for agent, per, tin, tout in agent_call_rates(con, profile)
        if tin is not None
    }


def _prompt_tokens(prompts: PromptLibrary, role: str, **context: Any) -> int:
    text = "".join(m["content"] for m in prompts.render(role, **context).messages)
    return round(len(text) / CHARS_PER_TOKEN)


def _history(turns: int) -> list[dict[str, str]]:
    """Stand-in turns of typical length (a question, then an answer citing a source)."""
    user, assistant = "q " * 60, "a " * 300
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": user if i % 2 == 0 else assistant}
        for i in range(turns)
    ]


class _Tally:
    """Calls and prompt tokens per agent; rendered prompt sizes are cached by what changes them."""

    def __init__(self, prompts: PromptLibrary):
        self.prompts = prompts
        self.calls: collections.Counter = collections.Counter()
        self.tokens_in: collections.Counter = collections.Counter()
        self.tokens_out: collections.Counter = collections.Counter()
        self._sizes: dict[tuple, int] = {}

    def add(self, agent: str, role: str, key: tuple, out_tokens: int, **context: Any) -> None:
        if (role, *key) not in self._sizes:
            self._sizes[(role, *key)] = _prompt_tokens(self.prompts, role, **context)
        self.calls[agent] += 1
        self.tokens_in[agent] += self._sizes[(role, *key)]
        self.tokens_out[agent] += out_tokens

    def report(self, source: str, max_calls: int) -> dict[str, Any]:
        by_agent = {
            a: {"calls": self.calls[a], "tokens_in": self.tokens_in[a], "tokens_out": self.tokens_out[a]}
            for a in self.calls
        }
        return {
            "source": source,
            "calls": sum(self.calls.values()),
            "tokens_in": sum(self.tokens_in.values()),
            "tokens_out": sum(self.tokens_out.values()),
            "by_agent": by_agent,
            "max_calls": max_calls,
        }


def static_estimate(con: duckdb.DuckDBPyConnection, config: RunConfig, plans: list[Plan]) -> dict[str, Any]:
    """Calls and tokens of the standard profile when every sample passes first time."""
    tally = _Tally(PromptLibrary(config.language, config.prompt_dir))
    chunks = first_chunks(con, config.top_k)
    for plan in plans:
        key = (plan.tier, plan.technique, plan.persona.name)
        for t in range(plan.user_turns):
            history = _history(2 * t)
            tally.add("persona_user", "persona_user", (*key, t), DEFAULT_OUT_TOKENS["persona_user"],
                      plan=plan, seed_chunks=chunks, history=history)  # fmt: skip
            history = _history(2 * t + 1)
            tally.add("teacher", "teacher", (*key, t), DEFAULT_OUT_TOKENS["teacher"],
                      plan=plan, chunks=chunks, history=history)  # fmt: skip
        tally.add("critic", "critic", (*key, plan.user_turns), DEFAULT_OUT_TOKENS["critic"],
                  plan=plan, chunks=chunks, turns=_history(2 * plan.user_turns))  # fmt: skip
    # every refine round adds one refiner and one critic call per sample
    max_calls = sum(tally.calls.values()) + len(plans) * 2 * config.max_revisions
    return tally.report("rendered prompts (about 4 characters per token), no revisions", max_calls)


def _model_rewrites(plan: Plan) -> list[str]:
    """The plan's operators the small model rewrites (misspellings are done by code, some are skipped)."""
    operators = [*plan.evol_operators, *plan.edge_noise]
    return [r for r in (EVOL_REWRITES.get(op) for op in operators) if r not in (None, "code")]


def _teacher_steps(plan: Plan, small: SmallSettings) -> list[str]:
    if plan.technique == "hard_negative":
        return ["refusal"]
    return ["pick", "answer"] if small.pick == "model" else ["answer"]


def small_static_estimate(config: RunConfig, plans: list[Plan]) -> dict[str, Any]:
    """Calls and tokens of the small profile when every step passes at its first attempt.

    Per user turn: one question call and one per operator the model rewrites, then a refusal for a
    hard negative, else an answer (with a pick first when ``small.pick`` is ``model``). No critic:
    the small profile's gate is the rules and the verifier. Replies are counted at their step's
    ``max_tokens``, an upper bound (each is one short JSON object).
    """
    small: SmallSettings = config.small
    tally = _Tally(PromptLibrary(config.language, config.prompt_dir))
    shown = {
        "question": STAND_IN_QUESTION,
        "sentences": [STAND_IN_SENTENCE] * small.sentences,
        "facts": [STAND_IN_SENTENCE],
    }
    most = 0
    for plan in plans:
        negative = plan.technique == "hard_negative"
        asked = {"fact": None, "gap": False, "topic": plan.hard_negative_topic} if negative else {
            "fact": STAND_IN_SENTENCE, "gap": True, "topic": None}  # fmt: skip
        rewrites, teacher_steps = _model_rewrites(plan), _teacher_steps(plan, small)
        for _ in range(plan.user_turns):
            key = (plan.persona.name, negative)
            tally.add("persona_user", "small_question", key, small.max_tokens["question"], plan=plan, **asked)
            for rewrite in rewrites:
                tally.add("persona_user", "small_evolve", (*key, rewrite), small.max_tokens["evolve"],
                          plan=plan, operator=rewrite, question=STAND_IN_QUESTION)  # fmt: skip
            for step in teacher_steps:
                tally.add("teacher", f"small_{step}", (), small.max_tokens[step], **shown)
        steps = ["question", *(["evolve"] * len(rewrites)), *teacher_steps]
        most += plan.user_turns * sum(small.attempts[s] for s in steps)
    # every revision round may grow every exchange again, each step at its attempts
    return tally.report(
        "rendered small-profile prompts (about 4 characters per token), replies at their max_tokens, "
        "first attempts, no critic",
        most * (1 + config.max_revisions),
    )


def recorded_estimate(averages: dict[str, dict[str, float]], n: int) -> dict[str, Any]:
    """Calls and tokens at the per-sample rates recorded in earlier runs of this database."""
    by_agent = {
        agent: {
            "calls": round(a["calls_per_sample"] * n),
            "tokens_in": round(a["calls_per_sample"] * n * a["tokens_in"]),
            "tokens_out": round(a["calls_per_sample"] * n * a["tokens_out"]),
        }
        for agent, a in sorted(averages.items())
    }
    return {
        "source": "averages of earlier runs of this profile (llm_calls, incl. retries and revisions)",
        "calls": sum(a["calls"] for a in by_agent.values()),
        "tokens_in": sum(a["tokens_in"] for a in by_agent.values()),
        "tokens_out": sum(a["tokens_out"] for a in by_agent.values()),
        "by_agent": by_agent,
    }


def dry_run_report(
    con: duckdb.DuckDBPyConnection, config: RunConfig, categories: list[str], budget: Budget | None = None
) -> dict[str, Any]:
    plans = make_plans(config, categories)
    profile = "small" if config.small_profile else "standard"
    report: dict[str, Any] = {
        "n": config.n,
        "profile": profile,
        "plan": plan_counts(plans),
        "estimate": small_static_estimate(config, plans)
        if config.small_profile
        else static_estimate(con, config, plans),
    }
    averages = recorded_averages(con, profile)
    if averages:
        report["recorded"] = recorded_estimate(averages, config.n)
    if budget is not None and (budget.price_in or budget.price_out):
        for key in ("estimate", "recorded"):
            if key in report:
                est = report[key]
                est["cost_usd"] = round(budget.cost(est["tokens_in"], est["tokens_out"]), 4)
    return report
