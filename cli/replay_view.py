"""Rendering one sample's history for ``teacherforge replay`` (Rich for people, JSON for scripts).

Revisions are shown as what they are: the problems the critic (or the rules) raised, then a unified
diff of each assistant turn the refiner rewrote, so "why did it change" and "what changed" sit
together. Content is printed as plain text, never as Rich markup: a turn may contain brackets.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from teacherforge.store.projection import SampleView, fold_with_snapshots

CONVERSATION_EVENTS = {"turn.added", "turn.revised"}
NARROW = 100  # below this many columns the timeline is stacked: a table would cut event names
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

# Called after each event in --step mode with (event, position, total); False stops the replay.
Pause = Callable[[dict[str, Any], int, int], bool]


def replay_json(sample_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    snapshots = fold_with_snapshots(sample_id, events)
    final = snapshots[-1][1] if snapshots else SampleView(sample_id)
    return {
        "sample_id": sample_id,
        "status": final.status,
        "reasons": final.reasons,
        "plan": final.plan,
        "events": [{**e, "ts": e["ts"].isoformat()} for e in events],
        "conversation": final.turns,
        "revisions": revisions(snapshots),
    }


def revisions(snapshots: list[tuple[dict[str, Any], SampleView]]) -> list[dict[str, Any]]:
    """Each refine step: the problems it was given, the critique before it, and the turns it changed."""
    found, changes = [], []
    previous = SampleView("")
    for event, view in snapshots:
        if event["type"] == "turn.revised":
            index = event["payload"]["turn_index"]
            before = previous.turns[index] if index < len(previous.turns) else {}
            after = view.turns[index] if index < len(view.turns) else {}
            changes.append(_change(index, before, after))
        elif event["type"] == "refine.done":
            p = event["payload"]
            critique = next(
                (c for c in reversed(view.critiques) if c.get("revision") == p.get("revision", 1) - 1), None
            )
            found.append(
                {
                    "revision": p.get("revision"),
                    "seq": event["seq"],
                    "failed_dimensions": (critique or {}).get("failed_dimensions", []),
                    "problems": p.get("problems", []),
                    "failing_turns": p.get("failing_turns", []),
                    "changes": changes,
                }
            )
            changes = []
        previous = view
    if changes:  # rewritten turns without their refine.done: the sample stopped in between
        found.append({"revision": None, "seq": None, "failed_dimensions": [], "problems": [],
                      "failing_turns": [], "changes": changes})  # fmt: skip
    return found


def _change(index: int, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    old, new = before.get("content", ""), after.get("content", "")
    diff = difflib.unified_diff(
        _lines(old), _lines(new), f"turn {index} before", f"turn {index} after", lineterm="", n=1
    )
    return {
        "turn_index": index,
        "before": old,
        "after": new,
        "diff": list(diff),
        "citations_before": before.get("cited_chunk_ids", []),
        "citations_after": after.get("cited_chunk_ids", []),
    }


def _lines(text: str) -> list[str]:
    """One sentence per line: a one-paragraph answer still diffs to the sentences that changed."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def revision_panel(revision: dict[str, Any]) -> Panel:
    parts: list[Any] = []
    if revision["failed_dimensions"]:
        parts.append(Text(f"critic: below threshold on {', '.join(revision['failed_dimensions'])}", "yellow"))
    for problem in revision["problems"]:
        parts.append(Text(f"problem (turn {problem.get('turn_index')}): {problem.get('problem')}", "yellow"))
    if not revision["changes"]:
        parts.append(Text("the refiner changed no turn", "dim"))
    for change in revision["changes"]:
        diff = Text()
        for line in change["diff"] or [f"  turn {change['turn_index']}: content unchanged"]:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            style = "cyan" if line.startswith("@@") else style
            diff.append(line + "\n", style)
        if change["citations_before"] != change["citations_after"]:
            diff.append(f"citations: {change['citations_before']} -> {change['citations_after']}\n", "cyan")
        parts.append(diff)
    title = (
        f"revision {revision['revision']} (seq {revision['seq']}): problems -> what the refiner changed"
        if revision["revision"] is not None
        else "unfinished revision: turns rewritten, no refine.done"
    )
    return Panel(Group(*parts), title=title, expand=True)


def _timeline_row(event: dict[str, Any], t0) -> list[str]:
    p = event["payload"]
    latency = (
        f"{p['latency_ms']:.0f}" if event["type"] == "llm.call" and p.get("latency_ms") is not None else ""
    )
    tokens = f"{p.get('tokens_in') or 0}/{p.get('tokens_out') or 0}" if event["type"] == "llm.call" else ""
    note = p.get("error") or p.get("template") or ""
    if event["type"] == "rules.checked":
        note = "passed" if p.get("passed") else ", ".join(f["rule"] for f in p.get("failures", []))
    elif event["type"] == "verify.checked":
        spans = (f"{f['check']} '{f['span']}'" for f in p.get("failures", []))
        note = "passed" if p.get("passed") else ", ".join(spans)
    elif event["type"] == "critique.done":
        note = ("passed " if p.get("passed") else "failed ") + " ".join(
            f"{k[:5]}={v}" for k, v in p["scores"].items()
        )
    elif event["type"] == "refine.done":
        note = f"revision {p.get('revision')}: rewrote turns {p.get('changed_turns', [])}"
    elif event["type"] in ("sample.rejected", "sample.failed"):
        note = "\n".join(dict.fromkeys(str(r) for r in p.get("reasons", []))) or (p.get("error") or "")
    elif event["type"].startswith("review."):
        detail = p.get("reason") or p.get("tag") or (f"turn {p['turn_index']}" if "turn_index" in p else "")
        note = f"{p.get('reviewer')}: {detail}" if detail else str(p.get("reviewer"))
    offset = (event["ts"] - t0).total_seconds()
    return [
        str(event["seq"]),
        f"+{offset:.2f}s",
        event.get("agent") or "",
        event["type"],
        latency,
        tokens,
        str(note),
    ]


def print_timeline(console: Console, sample_id: str, events: list[dict[str, Any]]) -> None:
    """A table on a wide terminal; on a narrow one each event on its own line with its details below,
    so event names are never cut and reasons are never squeezed into one word per line."""
    t0 = events[0]["ts"]
    rows = [_timeline_row(event, t0) for event in events]
    if console.width >= NARROW:
        table = Table(title=f"timeline of {sample_id}", show_lines=False)
        for column in ("seq", "time", "agent"):
            table.add_column(column, no_wrap=True, justify="right" if column == "seq" else "left")
        table.add_column("event", no_wrap=True, min_width=max(len(r[3]) for r in rows))
        table.add_column("latency ms", no_wrap=True, justify="right")
        table.add_column("tokens in/out", no_wrap=True)
        table.add_column("detail", overflow="fold", ratio=1)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table, soft_wrap=False)  # wrap inside cells (the console soft-wraps by default)
        return
    console.print(Text(f"timeline of {sample_id}", "bold"))
    for seq, when, agent, kind, latency, tokens, note in rows:
        facts = [f"{seq:>3}", when, kind, f"({agent})" if agent else "",
                 f"{latency} ms" if latency else "", f"tokens {tokens}" if tokens else ""]  # fmt: skip
        console.print(Text(" ".join(x for x in facts if x)), overflow="fold")
        for line in str(note).splitlines():
            console.print(Text(f"      {line}", "dim"), overflow="fold")


def _conversation_panel(view: SampleView, title: str) -> Panel:
    lines = []
    for i, turn in enumerate(view.turns):
        lines.append(f"[bold]{i} {turn['role']}[/bold]: {escape(str(turn['content']))}")
        if turn.get("thought"):
            lines.append(f"   [dim]thought: {escape(str(turn['thought']))}[/dim]")
    return Panel("\n".join(lines) or "(empty)", title=title, expand=True)


def _prompt_panel(event: dict[str, Any]) -> Panel:
    p = event["payload"]
    prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in p.get("messages", []))
    title = f"seq {event['seq']} {event['agent']} call"
    return Panel(Text(f"{prompt}\n\n[reply]\n{p.get('raw')}"), title=title)


def print_replay(
    console: Console,
    sample_id: str,
    events: list[dict[str, Any]],
    show_prompts: bool = False,
    pause: Pause | None = None,
) -> None:
    """The timeline, then the story: conversations after each turn, a diff panel per revision.

    With ``pause`` (``--step``) every event is shown with the conversation as it stood after it,
    and ``pause`` decides whether to go on.
    """
    if not events:
        return
    t0 = events[0]["ts"]
    print_timeline(console, sample_id, events)
    snapshots = fold_with_snapshots(sample_id, events)
    found = revisions(snapshots)
    by_seq = {r["seq"]: r for r in found if r["seq"] is not None}
    for position, (event, view) in enumerate(snapshots, start=1):
        if pause is not None:
            seq, when, agent, kind, latency, tokens, note = _timeline_row(event, t0)
            facts = " ".join(x for x in (agent, kind, f"{latency} ms" if latency else "", tokens, note) if x)
            console.print(Text(f"[{position}/{len(snapshots)}] seq {seq} {when} {facts}", "bold"))
        if show_prompts and event["type"] == "llm.call":
            console.print(_prompt_panel(event), soft_wrap=False)
        if event["seq"] in by_seq and event["type"] == "refine.done":
            console.print(revision_panel(by_seq[event["seq"]]), soft_wrap=False)
        if pause is not None:
            console.print(
                _conversation_panel(view, f"conversation after seq {event['seq']}"), soft_wrap=False
            )
            if not pause(event, position, len(snapshots)):
                console.print(f"stopped at seq {event['seq']} ({position} of {len(snapshots)} events)")
                return
        elif event["type"] == "turn.added" or event["type"] == "refine.done":
            console.print(
                _conversation_panel(view, f"after seq {event['seq']} {event['type']}"), soft_wrap=False
            )
    for revision in (r for r in found if r["seq"] is None):
        console.print(revision_panel(revision), soft_wrap=False)
    final = snapshots[-1][1]
    console.print(f"status: [bold]{final.status}[/bold]  revisions: {final.revisions}")
    for reason in dict.fromkeys(final.reasons):
        console.print(Text(f"  reason: {reason}"))
    if final.review:
        review = final.review
        decided = review.get("decision") and f"{review['decision']} by {review.get('reviewer')}"
        why = f" ({review['reason']})" if review.get("reason") else ""
        extra = [f"tags {', '.join(review['tags'])}"] if review.get("tags") else []
        extra += [f"edited turns {review['edited_turns']}"] if review.get("edited_turns") else []
        console.print(Text(f"review: {decided or 'not decided'}{why}" + "".join(f"; {x}" for x in extra)))
