"""The run dashboard: acceptance by plan field and over time, rejection reasons ranked, tokens and cost.

Why from the index: it is refreshed from the newest events only, so a dashboard that reloads every
few seconds while a run writes costs a snapshot open and a small read, not a scan of the log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from teacherforge.ui.listing import in_run, review_state
from teacherforge.ui.sample_index import CallTotals, SampleIndex, SampleRow

GROUPS = ("tier", "persona", "category", "technique")
STATUSES = ("accepted", "rejected", "failed", "running")
BUCKETS = 24


@dataclass
class GroupRow:
    value: str
    counts: Counter

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def acceptance(self) -> float | None:
        done = self.counts["accepted"] + self.counts["rejected"] + self.counts["failed"]
        return self.counts["accepted"] / done if done else None


@dataclass
class Dashboard:
    run: str | None
    running: bool
    totals: GroupRow
    groups: dict[str, list[GroupRow]]
    timeline: list[dict[str, Any]]
    reasons: list[tuple[str, int]]
    human_reasons: list[tuple[str, int]]
    review: list[tuple[str, int]]
    agents: list[tuple[str, Counter]] = field(default_factory=list)
    tokens: Counter = field(default_factory=Counter)
    cost_usd: float | None = None


def _groups(rows: list[SampleRow], name: str) -> list[GroupRow]:
    by: dict[str, Counter] = {}
    for r in rows:
        by.setdefault(getattr(r, name) or "-", Counter())[r.status] += 1
    return [GroupRow(value, counts) for value, counts in sorted(by.items())]


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _timeline(rows: list[SampleRow]) -> list[dict[str, Any]]:
    """Finished samples in equal time buckets: counts per status and the acceptance so far."""
    done = sorted((r for r in rows if r.ended_at), key=lambda r: r.ended_at)
    if not done:
        return []
    start = min(r.started_at or r.ended_at for r in rows if r.ended_at or r.started_at)
    span = max((done[-1].ended_at - start).total_seconds(), 1.0)
    buckets = [Counter() for _ in range(BUCKETS)]
    for r in done:
        buckets[min(BUCKETS - 1, int((r.ended_at - start).total_seconds() / span * BUCKETS))][r.status] += 1
    out, accepted, finished = [], 0, 0
    peak = max(sum(b.values()) for b in buckets) or 1
    for i, b in enumerate(buckets):
        accepted, finished = accepted + b["accepted"], finished + sum(b.values())
        height = sum(b.values()) / peak
        out.append({"until": _elapsed(span * (i + 1) / BUCKETS), "counts": b, "height": height,
                    "acceptance": accepted / finished if finished else None})  # fmt: skip
    return out


def build(index: SampleIndex, run: str | None, pending: set[str], prices: tuple[float, float]) -> Dashboard:
    run = run or index.latest_run()
    rows = in_run(index, run)
    info = index.runs.get(run or "")
    reasons = Counter(reason for r in rows if r.status == "rejected" for reason in dict.fromkeys(r.reasons))
    human = Counter(r.decision_reason or "(no reason)" for r in rows if r.decision == "rejected")
    board = Dashboard(
        run, bool(info and info.status == "running"), GroupRow("all", Counter(r.status for r in rows)),
        {name: _groups(rows, name) for name in GROUPS}, _timeline(rows), reasons.most_common(20),
        human.most_common(20), sorted(Counter(review_state(r, pending) for r in rows).items()),
    )  # fmt: skip
    calls: CallTotals | None = (index.calls or {}).get(run or "")
    if calls is not None:
        board.agents = sorted(calls.per_agent.items())
        for counter in calls.per_agent.values():
            board.tokens.update(counter)
        if any(prices):
            board.cost_usd = (
                board.tokens["tokens_in"] * prices[0] + board.tokens["tokens_out"] * prices[1]
            ) / 1e6
    return board
