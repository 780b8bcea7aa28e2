"""The processes the quality eval runs: ingest, read chunks, ``teacherforge check``. Each is the CLI.

The CLI runs as ``python -m teacherforge.cli.app`` with this interpreter, so the eval uses the same
installation it is run from and never needs ``teacherforge`` on PATH.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SET_PATH = HERE / "conversations.jsonl"
CORPUS = ROOT / "examples" / "university"


class RunnerError(RuntimeError):
    """A CLI step failed; the message carries the command's own error output."""


def teacherforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "teacherforge.cli.app", *args]


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RunnerError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def ingest(db: Path, corpus: Path = CORPUS) -> None:
    _run(teacherforge("ingest", str(corpus), "--db", str(db)), f"teacherforge ingest {corpus}")


@contextmanager
def database(db: Path | None, corpus: Path = CORPUS) -> Iterator[Path]:
    """The given database, or a temporary one with the corpus ingested (removed afterwards)."""
    if db is not None:
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="tf-quality-") as tmp:
        path = Path(tmp) / "quality.duckdb"
        print(f"ingesting {corpus.relative_to(ROOT)} into a temporary database ...", file=sys.stderr)
        ingest(path, corpus)
        yield path


def chunk_texts(db: Path) -> dict[str, str]:
    proc = _run(
        teacherforge("sql", "select chunk_id, text from chunks", "--db", str(db), "--format", "json"),
        "teacherforge sql (reading chunks)",
    )
    lines = proc.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), None)
    if start is None:
        raise RunnerError(f"teacherforge sql printed no JSON: {proc.stdout[:200]!r}")
    return {row["chunk_id"]: row["text"] for row in json.loads("\n".join(lines[start:]))}


@dataclass
class CheckRun:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_check(set_path: Path, db: Path, llm_url: str | None = None, model: str | None = None) -> CheckRun:
    """``teacherforge check SET --db DB --format json [--llm-url URL --model M]``.

    A non-zero exit alone is not an error: a checker may exit 1 when some conversations fail. The
    caller decides from the verdicts it can parse.
    """
    cmd = teacherforge("check", str(set_path), "--db", str(db), "--format", "json")
    if llm_url:
        cmd += ["--llm-url", llm_url]
    if model:
        cmd += ["--model", model]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return CheckRun(cmd, proc.returncode, proc.stdout, proc.stderr)
