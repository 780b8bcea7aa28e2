"""The gate: rules + verifier (+ the critic when one is given) applied to one conversation.

Why one module: a run (graph/nodes.py) and ``teacherforge check`` (cli/check.py) must judge a
conversation identically, so both call these functions and format reasons the same way. The
deterministic part (rules and verifier) always runs first; the critic only sees a conversation that
passed it, as in a run, where a rule or verifier failure goes to the refiner without a critic call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from teacherforge.agents import critic as critic_agent
from teacherforge.agents import rules, verifier
from teacherforge.agents.context import AgentContext
from teacherforge.agents.critic import CriticThresholds
from teacherforge.agents.llm import LLMCallFailed, LLMCallRecord
from teacherforge.agents.rules import RuleFailure, RuleSettings
from teacherforge.agents.schemas import MAX_PROBLEM_CHARS, Critique, Plan
from teacherforge.agents.verifier import VerifierFailure, VerifierSettings

SUPERSEDED_RULE = "ungrounded_numbers"  # the verifier's unsupported_figure judges the same figures


def retrieved_by_turn(turns: list[dict[str, Any]], chunk_text: dict[str, str]) -> dict[int, dict[str, str]]:
    """Each assistant turn's own chunks (``retrieved_chunk_ids``) with their text: what it may quote."""
    return {
        i: {c: chunk_text[c] for c in t.get("retrieved_chunk_ids") or [] if c in chunk_text}
        for i, t in enumerate(turns)
        if t.get("role") == "assistant"
    }


@dataclass
class Checked:
    """What the rules and the verifier found; advisory failures are kept but do not block."""

    rule_failures: list[RuleFailure]
    verifier_failures: list[VerifierFailure]

    @property
    def blocking_rules(self) -> list[RuleFailure]:
        return rules.blocking(self.rule_failures)

    @property
    def blocking_verifier(self) -> list[VerifierFailure]:
        return verifier.blocking(self.verifier_failures)

    @property
    def passed(self) -> bool:
        return not self.blocking_rules and not self.blocking_verifier

    def problems(self) -> list[dict[str, Any]]:
        """The refiner's problems: each rule's detail, each verifier failure with its exact span."""
        found = [
            (f.turn_index if f.turn_index is not None else 0, f"{f.rule}: {f.detail}")
            for f in self.blocking_rules
        ]
        found += [(f.turn_index, f.problem()) for f in self.blocking_verifier]
        unique = dict.fromkeys((i, text[:MAX_PROBLEM_CHARS]) for i, text in found)
        return [{"turn_index": i, "problem": text} for i, text in unique]

    def reasons(self) -> list[str]:
        """One line per blocking failure, as a rejected sample records them."""
        return rule_reasons([f.model_dump() for f in self.blocking_rules]) + verifier_reasons(
            [f.model_dump() for f in self.blocking_verifier]
        )


def check(
    plan: Plan,
    turns: list[dict[str, Any]],
    chunk_text: dict[str, str],
    rule_settings: RuleSettings | None = None,
    verifier_settings: VerifierSettings | None = None,
    structure: Literal["plan", "alternating"] = "plan",
) -> Checked:
    """Rules over the whole sample, the verifier per assistant turn against that turn's own chunks.

    While the verifier's ``unsupported_figure`` blocks, the rule ``ungrounded_numbers`` is recorded
    as advisory: both judge the figures of an answer, but the verifier tells dates and percentages
    apart ("15%" vs "15 percent", "15 March" vs "15 days") and accepts arithmetic on grounded figures
    (a total, 25% of a fee), which the rule rejects (docs/quality.md). Making ``unsupported_figure``
    advisory gives the rule its say back.
    """
    verifier_settings = verifier_settings or VerifierSettings()
    rule_failures = rules.check_conversation(plan, turns, chunk_text, rule_settings, structure)
    if "unsupported_figure" not in verifier_settings.advisory:
        for failure in rule_failures:
            failure.advisory = failure.advisory or failure.rule == SUPERSEDED_RULE
    return Checked(
        rule_failures=rule_failures,
        verifier_failures=verifier.verify_conversation(
            turns, retrieved_by_turn(turns, chunk_text), verifier_settings
        ),
    )


def rule_reasons(failures: list[dict[str, Any]]) -> list[str]:
    return [f"rule {f['rule']}: {f['detail']}" for f in failures]


def verifier_reasons(failures: list[dict[str, Any]]) -> list[str]:
    return [f"verifier {f['check']} (turn {f['turn_index']}): '{f['span']}' {f['detail']}" for f in failures]


def critic_reasons(critique: dict[str, Any]) -> list[str]:
    reasons = [f"critic: {dim} below threshold" for dim in critique.get("failed_dimensions", [])]
    return reasons + [f"critic turn {p['turn_index']}: {p['problem']}" for p in critique.get("problems", [])]


@dataclass
class CriticVerdict:
    """A validated critique, judged against the thresholds, plus the calls it took."""

    critique: Critique
    failed_dimensions: list[str]
    calls: list[LLMCallRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed_dimensions

    def payload(self, revision: int) -> dict[str, Any]:
        """The ``critique.done`` payload."""
        return {
            "revision": revision,
            **self.critique.model_dump(),
            "passed": self.passed,
            "failed_dimensions": self.failed_dimensions,
        }

    def problems(self, turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The critic's problems; a failing critique without any points at the first answer."""
        problems = [p.model_dump() for p in self.critique.problems]
        if self.failed_dimensions and not problems:
            first = next((i for i, t in enumerate(turns) if t.get("role") == "assistant"), 0)
            problem = f"scored below threshold on {', '.join(self.failed_dimensions)}"
            problems = [{"turn_index": first, "problem": problem}]
        return problems


async def review(
    ctx: AgentContext,
    plan: Plan,
    chunks: list[dict[str, Any]],
    turns: list[dict[str, Any]],
    thresholds: CriticThresholds,
    seed: int,
) -> CriticVerdict:
    """The critic's validated verdict; raises LLMCallFailed when every attempt failed or was invalid."""
    result = await critic_agent.review(ctx, plan, chunks, turns, seed)
    failed = critic_agent.failed_dimensions(result.output, thresholds)
    return CriticVerdict(result.output, failed, result.calls)


@dataclass
class Verdict:
    """The whole gate on one conversation (``teacherforge check``)."""

    checked: Checked
    critic: CriticVerdict | None = None
    critic_error: str | None = None
    calls: list[LLMCallRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        critic_ok = self.critic is None or self.critic.passed
        return self.checked.passed and critic_ok and self.critic_error is None

    def reason_codes(self) -> list[str]:
        """Short, countable reasons: ``rule:NAME``, ``verifier:CHECK``, ``critic:DIMENSION|error``."""
        codes = [f"rule:{f.rule}" for f in self.checked.blocking_rules]
        codes += [f"verifier:{f.check}" for f in self.checked.blocking_verifier]
        if self.critic is not None:
            codes += [f"critic:{dim}" for dim in self.critic.failed_dimensions]
        if self.critic_error is not None:
            codes.append("critic:error")
        return list(dict.fromkeys(codes))


async def judge(
    plan: Plan,
    turns: list[dict[str, Any]],
    chunk_text: dict[str, str],
    rule_settings: RuleSettings | None = None,
    verifier_settings: VerifierSettings | None = None,
    ctx: AgentContext | None = None,
    thresholds: CriticThresholds | None = None,
    seed: int = 0,
    structure: Literal["plan", "alternating"] = "plan",
) -> Verdict:
    """Rules and verifier, then (with ``ctx``) the critic on a conversation that passed them."""
    checked = check(plan, turns, chunk_text, rule_settings, verifier_settings, structure)
    verdict = Verdict(checked)
    if ctx is None or not checked.passed:
        return verdict
    chunks = [{"chunk_id": c, "document": "", "section": "", "text": t} for c, t in chunk_text.items()]
    try:
        verdict.critic = await review(ctx, plan, chunks, turns, thresholds or CriticThresholds(), seed)
        verdict.calls = verdict.critic.calls
    except LLMCallFailed as exc:
        verdict.critic_error = str(exc)
        verdict.calls = exc.calls
    return verdict
