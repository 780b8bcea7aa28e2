"""The `run` command's stop paths: Ctrl-C, budgets, an endpoint that never answers, and --dry-run.

Kept apart from cli_run.py so the command itself stays a readable list of steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from teacherforge.cli.common import err, fail, out, read_only
from teacherforge.graph.budget import Budget, outcome_text
from teacherforge.graph.config import load_config
from teacherforge.graph.estimate import dry_run_report
from teacherforge.graph.interrupt import StopControl, exit_now, sigint_stops
from teacherforge.store.chunk_tables import chunk_categories

EXIT_INTERRUPTED = 130


def resume_command(run_id: str, db: Path) -> str:
    return f"teacherforge run --resume {run_id} --db {db}"


async def run_stoppable(
    work: Coroutine[Any, Any, Any], control: StopControl | None, on_hard_exit: Callable[[], None] | None
) -> Any:
    """Await ``work`` with Ctrl-C turned into a graceful stop (first) or an immediate exit (second)."""
    if control is None:
        return await work
    with sigint_stops(
        control,
        lambda m: err.print(m, highlight=False),
        on_hard_exit or (lambda: exit_now(lambda: None, EXIT_INTERRUPTED)),
    ):
        return await work


def hard_exit(log, run_id: str, db: Path) -> None:
    """Second Ctrl-C: record the interruption, flush what is queued, print the way back, leave now."""

    def last_words() -> None:
        log.append(run_id, "run.interrupted", {"signal": "SIGINT", "forced": True})
        log.append(run_id, "run.finished", {"status": "interrupted", "forced": True})
        log.flush()
        err.print(f"interrupted; continue with: {resume_command(run_id, db)}", highlight=False)

    exit_now(last_words, EXIT_INTERRUPTED)


def finish_stopped(control: StopControl, run_id: str, db: Path) -> None:
    """After the summary: say why a stopped run stopped and how to continue it."""
    detail = control.detail
    if control.reason == "interrupted":
        abandoned = len(detail.get("abandoned", []))
        note = f" ({abandoned} in-flight sample(s) abandoned after the grace period)" if abandoned else ""
        fail(f"interrupted{note}; continue with: {resume_command(run_id, db)}", code=EXIT_INTERRUPTED)
    if control.reason == "aborted":
        fail(f"{detail.get('message')}; fix it, then continue with: {resume_command(run_id, db)}")
    if control.reason == "budget_reached":
        flag = "--max-tokens" if detail.get("cap") == "max_tokens" else "--max-cost"
        refused = detail.get("refused")
        why = ""
        if refused:  # the call that did not fit: say what its reservation was made of
            why = (
                f"; the next call needed {refused['tokens']:,} tokens reserved (max_tokens "
                f"{refused['max_tokens']:,} + prompt ~{refused['prompt_estimate']:,})"
            )
        err.print(
            f"budget reached ({outcome_text(detail)}{why}): no new samples were started; "
            f"continue with: {resume_command(run_id, db)} {flag} <higher cap>",
            highlight=False,
        )


def dry_run_command(db: Path, config: Path | None, overrides: dict, budget: Budget, as_json: bool) -> None:
    """Plan a fresh run and estimate its calls and tokens, without a model and without the writer lock."""
    cfg = load_config(config, overrides)
    con = read_only(db)
    try:
        report = dry_run_report(con, cfg, chunk_categories(con), budget)
    finally:
        con.close()
    if as_json:
        print(json.dumps(report), flush=True)
        return
    out.print(f"dry run: {cfg.n} sample(s), {report['profile']} profile, nothing is sent", highlight=False)
    for key, counts in report["plan"].items():
        out.print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)
    for key in ("estimate", "recorded"):
        est = report.get(key)
        if est is None:
            continue
        cost = f", about {est['cost_usd']:.4f} USD" if "cost_usd" in est else ""
        retries = " and every attempt" if report["profile"] == "small" else ""
        upper = f" (up to {est['max_calls']} with every refine round{retries})" if "max_calls" in est else ""
        out.print(
            f"  {key}: {est['calls']} calls{upper}, {est['tokens_in']} tokens in, "
            f"{est['tokens_out']} tokens out{cost} ({est['source']})",
            highlight=False,
        )
