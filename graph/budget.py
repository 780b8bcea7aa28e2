"""Token and cost budgets and the per-call meter behind them (the `run --dry-run` estimate: estimate.py).

The meter sees every attempt that reaches a model (reused replies cost nothing) and also tells the
runner when not one call has succeeded, so a dead endpoint stops a run early instead of failing
every sample in turn. Caps apply to the whole run: a resumed run starts from the tokens recorded.

It is also the call gate of a capped run: each attempt reserves its worst case (``max_tokens`` plus
an estimate of its prompt) before it is sent, and may go out only if what is spent, what is
reserved by the calls in flight and its own reservation fit under the cap. Checking only what was
already spent let every call in flight finish over the cap.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import duckdb

from teacherforge.agents.llm import CallRefused, LLMCallRecord
from teacherforge.graph.interrupt import StopControl
from teacherforge.store.run_queries import run_tokens_spent

# A prompt's reservation before this run has seen a reply: 2 characters per token, twice the English
# average. Afterwards: the densest tokens-per-character ratio seen in the run, plus 10%.
FIRST_PROMPT_CHARS_PER_TOKEN = 2.0
PROMPT_MARGIN = 1.1


class BudgetError(ValueError):
    """A budget flag that cannot work (a cost cap without prices, a negative cap)."""


@dataclass(frozen=True)
class Budget:
    """Caps for one run; prices are USD per 1M tokens."""

    max_tokens: int | None = None
    max_cost: float | None = None
    price_in: float = 0.0
    price_out: float = 0.0

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise BudgetError(f"--max-tokens must be at least 1 (got {self.max_tokens})")
        if self.max_cost is not None and self.max_cost <= 0:
            raise BudgetError(f"--max-cost must be above 0 USD (got {self.max_cost:g})")
        if self.price_in < 0 or self.price_out < 0:
            raise BudgetError("--price-in and --price-out must not be negative (USD per 1M tokens)")
        if self.max_cost is not None and self.price_in == 0 and self.price_out == 0:
            raise BudgetError("--max-cost needs --price-in and/or --price-out (USD per 1M tokens)")

    @property
    def active(self) -> bool:
        return self.max_tokens is not None or self.max_cost is not None

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1_000_000

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class Reservation:
    """What one attempt holds while in flight: its prompt estimate and its completion cap."""

    tokens_in: int
    tokens_out: int
    chars: int

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass
class CallMeter:
    """Counts what the model was actually asked: tokens, successes, and the last error seen.

    With an active budget it is also the run's call gate (``admit``/``settle``, agents/llm.py).
    """

    budget: Budget = field(default_factory=Budget)
    tokens_in: int = 0
    tokens_out: int = 0
    ok_calls: int = 0
    failed_attempts: int = 0
    last_error: dict[str, str] | None = None
    reserved_in: int = 0
    reserved_out: int = 0
    in_flight: int = 0
    tokens_per_char: float | None = None  # the densest prompt seen so far (calibrates the estimate)
    _settled: asyncio.Event | None = field(default=None, repr=False)

    def observe(self, record: LLMCallRecord) -> None:
        self.tokens_in += record.tokens_in or 0
        self.tokens_out += record.tokens_out or 0
        if record.error:
            self.failed_attempts += 1
            self.last_error = {"endpoint": record.endpoint, "model": record.model, "error": record.error}
        else:
            self.ok_calls += 1

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def cost(self) -> float:
        return self.budget.cost(self.tokens_in, self.tokens_out)

    def over_budget(self) -> dict[str, Any] | None:
        """The cap that was reached, with the figures, or None."""
        b = self.budget
        spent = {"tokens": self.tokens, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out}
        if b.max_tokens is not None and self.tokens >= b.max_tokens:
            return {"cap": "max_tokens", "limit": b.max_tokens, **spent}
        if b.max_cost is not None and self.cost >= b.max_cost:
            return {"cap": "max_cost", "limit": b.max_cost, "cost_usd": round(self.cost, 6), **spent}
        return None

    def load_run(self, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        """Start from what a run already spent (for a resume): caps apply to the whole run."""
        self.tokens_in, self.tokens_out = run_tokens_spent(con, run_id)

    # -- the call gate ------------------------------------------------------------------------------

    def reservation(self, chars: int, max_tokens: int) -> Reservation:
        """The attempt's worst case: the completion cap plus the prompt, estimated from its characters."""
        ratio = 1 / FIRST_PROMPT_CHARS_PER_TOKEN
        if self.tokens_per_char:
            ratio = self.tokens_per_char * PROMPT_MARGIN
        return Reservation(math.ceil(chars * ratio), max_tokens, chars)

    def fits(self, r: Reservation) -> bool:
        """Spent + reserved by the calls in flight + this reservation stays within every cap."""
        b = self.budget
        tokens_in = self.tokens_in + self.reserved_in + r.tokens_in
        tokens_out = self.tokens_out + self.reserved_out + r.tokens_out
        if b.max_tokens is not None and tokens_in + tokens_out > b.max_tokens:
            return False
        return b.max_cost is None or b.cost(tokens_in, tokens_out) <= b.max_cost

    async def admit(self, messages: list[dict[str, str]], max_tokens: int) -> Reservation:
        """Reserve an attempt's worst case before it is sent (the ``CallGate`` of agents/llm.py)."""
        return await self.admit_chars(prompt_chars(messages), max_tokens)

    async def admit_chars(self, chars: int, max_tokens: int) -> Reservation:
        """Reserve a prompt of ``chars`` characters; wait while calls in flight may free room.

        Raises ``CallRefused`` when it does not fit and nothing is in flight: the cap is reached.
        """
        r = self.reservation(chars, max_tokens)
        while not self.fits(r):
            if self.in_flight == 0:
                raise CallRefused("the run's budget has no room for the next call", self.refusal(r))
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()
        self.reserved_in += r.tokens_in
        self.reserved_out += r.tokens_out
        self.in_flight += 1
        return r

    def settle(self, r: Reservation, record: LLMCallRecord) -> None:
        """Drop the attempt's reservation (``observe`` counts what it really used) and wake waiters."""
        self.release(r, record.tokens_in)

    def release(self, r: Reservation, tokens_in: int | None) -> None:
        """``settle`` given only the prompt tokens the server reported (what calibrates the estimate)."""
        self.reserved_in -= r.tokens_in
        self.reserved_out -= r.tokens_out
        self.in_flight -= 1
        if tokens_in and r.chars:
            self.tokens_per_char = max(self.tokens_per_char or 0.0, tokens_in / r.chars)
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def refusal(self, r: Reservation) -> dict[str, Any]:
        """Why the run stops: the cap, and the reservation of the call that did not fit."""
        b = self.budget
        cap = "max_tokens" if b.max_tokens is not None and not self._fits_tokens(r) else "max_cost"
        needed = {"max_tokens": r.tokens_out, "prompt_estimate": r.tokens_in, "tokens": r.tokens}
        if cap == "max_cost":
            needed["cost_usd"] = round(b.cost(r.tokens_in, r.tokens_out), 6)
        return {"cap": cap, "limit": b.max_tokens if cap == "max_tokens" else b.max_cost, "refused": needed}

    def _fits_tokens(self, r: Reservation) -> bool:
        return self.budget.max_tokens is None or self.tokens + r.tokens <= self.budget.max_tokens

    def outcome(self, cap: str | None = None) -> dict[str, Any]:
        """The run against its cap (``cap``, or max_tokens when set): spent, limit and how far under or over.

        Why: a cap is a promise about the bill, so the run says how it ended against it.
        """
        b = self.budget
        cap = cap or ("max_tokens" if b.max_tokens is not None else "max_cost")
        if cap == "max_tokens" and b.max_tokens is not None:
            gap = b.max_tokens - self.tokens
            return {"cap": cap, "limit": b.max_tokens, "tokens": self.tokens, **_under_or_over(gap)}
        if b.max_cost is None:
            return {}
        gap_usd = round(b.max_cost - self.cost, 6)
        return {
            "cap": "max_cost",
            "limit": b.max_cost,
            "cost_usd": round(self.cost, 6),
            "tokens": self.tokens,
            **_under_or_over(gap_usd),
        }


def stop_at_cap(meter: CallMeter, control: StopControl) -> None:
    """Ask the run to stop (``run.budget_reached``) once what it spent reaches a cap; a run without a
    budget never does. Called after each recorded call and when a resumed run starts."""
    if meter.budget.active and (reached := meter.over_budget()) is not None:
        control.request("budget_reached", **reached)


def prompt_chars(messages: list[dict[str, str]]) -> int:
    """The size of a prompt as the budget estimates it: its roles and contents, in characters."""
    return sum(len(str(m.get("content") or "")) + len(str(m.get("role") or "")) for m in messages)


def _under_or_over(gap: float) -> dict[str, float]:
    return {"under": gap} if gap >= 0 else {"over": -gap}


def outcome_text(outcome: dict[str, Any]) -> str:
    """``tokens 9,812 of 10,000 (188 under)`` or ``cost 0.0019 of 0.0020 USD (0.0001 under)``."""
    side = "under" if "under" in outcome else "over"
    if outcome.get("cap") == "max_tokens":
        return f"tokens {outcome['tokens']:,} of {outcome['limit']:,} ({outcome[side]:,} {side})"
    return f"cost {outcome['cost_usd']:.4f} of {outcome['limit']:.4f} USD ({outcome[side]:.4f} {side})"
