"""``teacherforge export``: select, split by document, optionally redact, and write one training format.

The steps live in store/ (export_select → export.build_records → export_formats / export_hf); this
module only turns flags into those calls and prints what happened, including what the filters and
the split left out, so a small dataset is never a mystery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from teacherforge.cli.common import DEFAULT_DB, USER_ERRORS, DbOption, app, err, fail, out, read_only

FORMATS = ("openai", "sharegpt", "alpaca", "hf")
SHARES = "0.8,0.1,0.1"
OUT_HELP = "FILE.jsonl (one file, split in metadata) or a folder (a file per split; hf: always a folder)."
Many = Annotated[list[str] | None, typer.Option(help="Keep samples planned with this value; repeatable.")]
Since = Annotated[str | None, typer.Option(help="Samples whose last event is at/after this ISO time (UTC).")]
Until = Annotated[str | None, typer.Option(help="... and before this (a bare date includes that day).")]


@app.command()
def export(
    out_path: Annotated[Path, typer.Option("--out", help=OUT_HELP)],
    db: DbOption = DEFAULT_DB,
    run_ids: Annotated[
        list[str] | None, typer.Option("--run", help="Run id, repeatable, or 'all' (default: latest run).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="openai|sharegpt|alpaca|hf")] = "openai",
    thought: Annotated[str, typer.Option(help="drop|field|inline")] = "drop",
    system: Annotated[str | None, typer.Option(help="System prompt for every record.")] = None,
    status: Annotated[
        str, typer.Option(help="accepted (training data) | rejected | all (for inspection)")
    ] = "accepted",
    split: Annotated[str, typer.Option(help="train,validation,test shares, by source document.")] = SHARES,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    min_score: Annotated[
        list[str] | None, typer.Option(help="N (every critic score) or DIMENSION=N; repeatable.")
    ] = None,
    tier: Many = None,
    technique: Many = None,
    persona: Many = None,
    category: Many = None,
    since: Since = None,
    until: Until = None,
    redact_pii: Annotated[
        bool,
        typer.Option("--redact-pii", help="Mask e-mails, phones, card/IBAN/ID numbers, names, addresses."),
    ] = False,
    approved_only: Annotated[
        bool, typer.Option("--approved-only", help="Only samples a person approved in 'teacherforge ui'.")
    ] = False,
) -> None:
    """Write a run's accepted conversations (or, for inspection, rejected/all) as training data."""
    from teacherforge.dataset.export import DEFAULT_SYSTEM, build_records, redacted
    from teacherforge.dataset.export_formats import FormatError, check_options, convert, write_jsonl_export
    from teacherforge.dataset.export_hf import HfExportError, write_hf
    from teacherforge.dataset.export_select import (
        ExportFilters,
        SelectionError,
        parse_min_scores,
        parse_when,
        resolve_runs,
        select_records,
    )
    from teacherforge.dataset.splits import SplitError, parse_ratios

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)} (got '{fmt}')")
    if thought not in ("drop", "field", "inline"):
        fail(f"--thought must be drop, field or inline (got '{thought}')")
    if fmt != "hf" and out_path.suffix not in ("", ".jsonl") and not out_path.is_dir():
        fail(f"--out {out_path}: give a .jsonl file (one file) or a folder (one file per split)")
    errors = (*USER_ERRORS, SelectionError, SplitError, FormatError, HfExportError)
    try:
        check_options(fmt, thought)
        ratios = parse_ratios(split)
        overall, per_dimension = parse_min_scores(min_score or [])
        filters = ExportFilters(
            status=status, min_score=overall, min_scores=per_dimension, tiers=tier or [],
            techniques=technique or [], personas=persona or [], categories=category or [],
            since=parse_when(since, "--since"), until=parse_when(until, "--until", end_of_day=True),
            approved_only=approved_only,
        )  # fmt: skip
        redact = _redactor() if redact_pii else None
        con = read_only(db)
        runs = resolve_runs(con, run_ids or [])
        selection = select_records(con, runs, filters)
        built = build_records(con, selection.views, system or DEFAULT_SYSTEM, ratios, seed)
        con.close()
        records = redacted(built.records, redact) if redact else built.records
        if fmt == "hf" and not records:
            fail(f"no conversations to write ({_left_out(selection) or 'the run has none'}); "
                 "datasets cannot load an empty hf export, so nothing was written")  # fmt: skip
        if fmt == "hf":
            files, skipped = write_hf(records, out_path, thought), []  # type: ignore[arg-type]
        else:
            rows, skipped = convert(records, fmt, thought)  # type: ignore[arg-type]
            files = write_jsonl_export(rows, fmt, out_path)
    except errors as exc:
        fail(str(exc))
    label = "" if status == "all" else f" {status}"
    written = len(records) - len(skipped)
    say(f"wrote {written}{label} conversation(s) of {', '.join(runs)} to {out_path} ({fmt})")
    _report_split(built, split, seed)
    if skipped:
        warn(f"skipped {len(skipped)} conversation(s) that do not fit {fmt}: {', '.join(skipped)}")
    if selection.excluded:
        warn(_left_out(selection))
    if redact:
        warn("personal data redacted (--redact-pii)")
    _warn_queued_reviews(db)
    for path in files:
        if path.name == "dataset_info.json":
            say(f"LLaMA-Factory entries: {path}")


def say(line: str) -> None:
    out.print(line, highlight=False)


def warn(line: str) -> None:
    err.print(line, highlight=False)


def _report_split(built: Any, split: str, seed: int) -> None:
    counts, docs, targets = built.plan.counts(), built.plan.documents, built.plan.targets
    parts = ", ".join(f"{name} {counts[name]} ({len(docs.get(name, []))} documents)" for name in counts)
    say(f"split by source document (seed {seed}, {split}): {parts}")
    for name in built.plan.short():
        warn(
            f"{name} got {counts[name]} of the {targets[name]} conversation(s) its share asks for: the "
            "others share documents with the rest (docs/export.md, Splits)"
        )
    if built.dropped:
        warn(f"left out {len(built.dropped)} conversation(s) whose documents fall in two splits: "
             + ", ".join(built.dropped))  # fmt: skip


def _left_out(selection: Any) -> str:
    if not selection.excluded:
        return ""
    reasons = ", ".join(f"{n} by {reason}" for reason, n in sorted(selection.excluded.items()))
    return f"filtered out {sum(selection.excluded.values())} of {selection.considered}: {reasons}"


def _warn_queued_reviews(db: Path) -> None:
    """Decisions made in 'teacherforge ui' while a run wrote are not in the log yet, so not in this export."""
    from teacherforge.store.review_queue import pending

    queued = pending(db)
    if queued:
        warn(f"{len(queued)} review decision(s) are still queued in {db.name}.reviews.jsonl and not in this "
             "export; they land when 'teacherforge ui' or the next writer opens the database")  # fmt: skip


def _redactor():
    try:
        from teacherforge.retrieval.redact import redact_messages
    except ImportError as exc:
        fail(f"--redact-pii is not available in this install ({exc})")
    return redact_messages
