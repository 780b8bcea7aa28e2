"""CLI: ``teacherforge merge a.duckdb b.duckdb ... --into all.duckdb`` (shards of a run, or any runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from teacherforge.cli.common import USER_ERRORS, app, err, fail
from teacherforge.store.merge import MergeError, merge


@app.command("merge")
def merge_command(
    sources: Annotated[list[Path], typer.Argument(help="DuckDB files to merge (shards of a run, or any).")],
    into: Annotated[Path, typer.Option("--into", help="New DuckDB file to write; must not exist.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the merge report as one JSON line.")] = False,
) -> None:
    """Merge database files into one: events unioned, chunks deduplicated, views recreated."""
    try:
        report = merge(sources, into)
    except (MergeError, *USER_ERRORS) as exc:
        fail(str(exc))
    for run_id, info in report.runs.items():
        missing = f", missing shards {info['missing']}" if info["missing"] else ""
        err.print(
            f"run {run_id}: shards {info['shards']} of {info['count']} joined ({info['status']}{missing})",
            highlight=False,
        )
    err.print(
        f"merged {len(sources)} file(s) into {into}: {report.events} events "
        f"({report.duplicate_events} duplicates dropped), {report.samples} samples",
        highlight=False,
    )
    if as_json:
        print(json.dumps(report.as_dict()), flush=True)
