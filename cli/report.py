"""CLI commands for the dataset as a product: ``dedup`` (drop duplicates as events) and ``report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from teacherforge.cli.common import (
    DEFAULT_DB,
    USER_ERRORS,
    DbOption,
    app,
    err,
    fail,
    open_writer,
    out,
    read_only,
)

RunIdArgument = Annotated[str, typer.Argument(help="Run id (see: teacherforge runs).")]


@app.command()
def dedup(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_DB,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Similarity at or above which a sample is a near duplicate "
            "(default: minhash 0.85 Jaccard, embedding 0.95 cosine)."
        ),
    ] = None,
    on: Annotated[str, typer.Option("--on", help="first-turn|conversation")] = "first-turn",
    method: Annotated[
        str, typer.Option(help="minhash (word shingles) | embedding (MiniLM cosine)")
    ] = "minhash",
    shingle: Annotated[int, typer.Option(min=1, max=10, help="Words per shingle (minhash).")] = 3,
    number_guard: Annotated[
        bool, typer.Option(help="Texts whose numbers differ are never near duplicates (different facts).")
    ] = True,
    dry_run: Annotated[bool, typer.Option(help="Show what would be dropped; write nothing.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
) -> None:
    """Drop exact and near-duplicate accepted samples of a run; each drop is a dedup.dropped event.

    The earliest sample (by plan index) of each group is kept. Export leaves dropped samples out.
    """
    from teacherforge.dataset.dedup import DedupError
    from teacherforge.dataset.dedup_run import record, run_dedup

    if fmt not in ("table", "json"):
        fail(f"--format must be table or json (got '{fmt}')")
    try:
        con, log = (read_only(db), None) if dry_run else open_writer(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    try:
        result = run_dedup(con, run_id, on, method, threshold, shingle, number_guard)
        if log is not None:
            record(log, result, shingle, number_guard)
    except (DedupError, *USER_ERRORS) as exc:
        fail(str(exc))
    finally:
        if log is not None:
            log.close()
    summary = result.summary() | {"dry_run": dry_run}
    if fmt == "json":
        drops = [d.__dict__ for d in result.drops]
        print(json.dumps({**summary, "drops": drops}, ensure_ascii=False))
        return
    for d in result.drops:  # plain lines: full ids even on a narrow terminal, easy to grep
        out.print(f"{d.sample_id}  kept {d.kept_sample_id}  {d.method} {d.similarity:.3f}", highlight=False)
    verb = "would drop" if dry_run else "dropped"
    out.print(
        f"{verb} {len(result.drops)} of {result.candidates} accepted sample(s) of {run_id} "
        f"({summary['exact']} exact, {summary['near']} near; {method} on {on}, threshold "
        f"{result.threshold:g}){'' if dry_run else f' [{result.dedup_id}]'}",
        highlight=False,
    )


@app.command()
def report(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_DB,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for README.md, index.html, plots/.")] = Path(
        "report"
    ),
    license_id: Annotated[
        str,
        typer.Option("--license", help="Licence of the dataset for the card (an SPDX id, e.g. cc-by-4.0)."),
    ] = "unknown",
    name: Annotated[str | None, typer.Option(help="Dataset name for the card's title.")] = None,
    baseline_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible URL for the naive diversity baseline; 'run' = the run's endpoint."
        ),
    ] = None,
    baseline_model: Annotated[
        str | None, typer.Option(help="Model for the baseline (default: the run's).")
    ] = None,
    baseline_n: Annotated[int, typer.Option(min=1, help="Baseline questions to generate (at most).")] = 50,
) -> None:
    """Write a dataset card (README.md) and an HTML quality report with plots for a run."""
    from teacherforge.dataset.report import ReportOptions, build_report
    from teacherforge.dataset.report_data import ReportError

    options = ReportOptions(license_id, name, baseline_url, baseline_model, baseline_n)
    try:
        con = read_only(db)
        context = build_report(
            con, run_id, out_dir, options, lambda m: err.print(f"warning: {m}", highlight=False)
        )
    except (ReportError, *USER_ERRORS) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out_dir}: cannot write the report ({exc.strerror or exc}); pick another --out")
    rates = context["rates"]
    out.print(
        f"wrote {out_dir / 'README.md'} and {out_dir / 'index.html'} ({len(context['plots'])} plots): "
        f"{rates['dataset']} sample(s) in the dataset, acceptance {_pct(rates['acceptance'])}",
        highlight=False,
    )
    if context["diversity"]["baseline"]["status"] != "ok":
        err.print(context["diversity"]["baseline"]["note"], highlight=False)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
