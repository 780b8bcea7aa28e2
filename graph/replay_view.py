"""Rendering one sample's history for ``teacherforge replay`` (Rich for people, JSON for scripts)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from teacherforge.store.projection import SampleView, fold_with_snapshots

CONVERSATION_EVENTS = {"turn.added", "turn.revised"}


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
    }


def _timeline_row(event: dict[str, Any], t0) -> list[str]:
    p = event["payload"]
    latency = (
        f"{p['latency_ms']:.0f}" if event["type"] == "llm.call" and p.get("latency_ms") is not None else ""
    )
    tokens = f"{p.get('tokens_in') or 0}/{p.get('tokens_out') or 0}" if event["type"] == "llm.call" else ""
    note = p.get("error") or p.get("template") or ""
    if event["type"] == "rules.checked":
        note = "passed" if p.get("passed") else ", ".join(f["rule"] for f in p.get("failures", []))
    elif event["type"] == "critique.done":
        note = ("passed " if p.get("passed") else "failed ") + " ".join(
            f"{k[:5]}={v}" for k, v in p["scores"].items()
        )
    elif event["type"] in ("sample.rejected", "sample.failed"):
        note = "; ".join(str(r) for r in p.get("reasons", []))[:120]
    offset = (event["ts"] - t0).total_seconds()
    return [
        str(event["seq"]),
        f"+{offset:.2f}s",
        event.get("agent") or "",
        event["type"],
        latency,
        tokens,
        note,
    ]


def _conversation_panel(view: SampleView, title: str) -> Panel:
    lines = []
    for i, turn in enumerate(view.turns):
        lines.append(f"[bold]{i} {turn['role']}[/bold]: {turn['content']}")
        if turn.get("thought"):
            lines.append(f"   [dim]thought: {turn['thought']}[/dim]")
    return Panel("\n".join(lines) or "(empty)", title=title, expand=True)


def print_replay(
    console: Console, sample_id: str, events: list[dict[str, Any]], show_prompts: bool = False
) -> None:
    if not events:
        return
    t0 = events[0]["ts"]
    table = Table(title=f"timeline of {sample_id}", show_lines=False)
    for column in ("seq", "time", "agent", "event", "latency ms", "tokens in/out", "detail"):
        table.add_column(column)
    for event in events:
        table.add_row(*_timeline_row(event, t0))
    console.print(table)
    for event, view in fold_with_snapshots(sample_id, events):
        if show_prompts and event["type"] == "llm.call":
            p = event["payload"]
            prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in p["messages"])
            console.print(
                Panel(
                    f"{prompt}\n\n[reply]\n{p.get('raw')}", title=f"seq {event['seq']} {event['agent']} call"
                )
            )
        if event["type"] in CONVERSATION_EVENTS:
            console.print(_conversation_panel(view, f"after seq {event['seq']} {event['type']}"))
    final = fold_with_snapshots(sample_id, events)[-1][1]
    console.print(f"status: [bold]{final.status}[/bold]  revisions: {final.revisions}")
    for reason in final.reasons:
        console.print(f"  reason: {reason}")
