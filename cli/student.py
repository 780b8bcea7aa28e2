"""``teacherforge train`` and ``teacherforge eval``: the student side of the loop (docs/student.md).

Registered on the main app by ``register(app)``. Heavy imports (torch, transformers, peft, trl)
happen inside the commands, so the rest of the CLI starts fast and works without the ``train``
extra installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True)
# Errors of the main CLI's layers, matched by name so this module imports none of them eagerly.
USER_ERROR_NAMES = ("ConfigError", "DatabaseError", "RunError", "EndpointError", "LocalServerError")
TRAIN_DEPS = ("torch", "transformers", "peft", "trl", "datasets")
METRIC_LABELS = {
    "judge_score": "judge score (1/0.5/0)",
    "judge_correct": "judge: correct",
    "refusal_handling": "refusal handling",
    "cosine": "cosine to accepted",
    "rouge_l": "ROUGE-L to accepted",
}


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _require_train_extra() -> None:
    missing = [m for m in TRAIN_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        _fail(
            f"missing {', '.join(missing)}: pip install torch==2.13.0 (the CPU wheel) first, "
            "then pip install -e '.[train]'"
        )


def _user_errors() -> tuple[type[Exception], ...]:
    from teacherforge.student.base_model import BaseModelError
    from teacherforge.student.data import DatasetError
    from teacherforge.student.evaluate import EvalError
    from teacherforge.student.settings import SettingsError
    from teacherforge.student.train import TrainError

    return (BaseModelError, DatasetError, EvalError, SettingsError, TrainError, FileNotFoundError)


def train_command(
    data: Annotated[Path, typer.Option("--data", help="Exported JSONL (teacherforge export).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the adapter, checkpoints, run card.")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML file; its 'train:' section.")] = None,
    base_model: Annotated[str | None, typer.Option(help="HF id or folder (default: bundled).")] = None,
    thought: Annotated[str | None, typer.Option(help="drop|inline")] = None,
    r: Annotated[int | None, typer.Option("--r", help="LoRA rank.")] = None,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha.")] = None,
    targets: Annotated[str | None, typer.Option(help="Comma-separated modules, e.g. q_proj,v_proj.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N steps (overrides epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    max_len: Annotated[int | None, typer.Option(help="Max tokens per conversation.")] = None,
    heldout_share: Annotated[
        float | None, typer.Option(help="Share of samples held out (by document).")
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    report_to: Annotated[str | None, typer.Option(help="none|wandb|mlflow (only if installed).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON summary line.")] = False,
) -> None:
    """LoRA-train the student on exported conversations (assistant-only loss, own chat template)."""
    _require_train_extra()
    from teacherforge.student.settings import TrainSettings, build
    from teacherforge.student.train import train

    overrides = {
        "base_model": base_model,
        "thought": thought,
        "r": r,
        "alpha": alpha,
        "lr": lr,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "max_len": max_len,
        "heldout_share": heldout_share,
        "seed": seed,
        "report_to": report_to,
        "targets": [t.strip() for t in targets.split(",") if t.strip()] if targets else None,
    }
    try:
        settings = build(TrainSettings, config, "train", overrides)
        result = train(data, out_dir, settings)
    except _user_errors() as exc:
        _fail(str(exc))
    err.print(
        f"adapter written to {result.out_dir}: {result.steps} steps on {result.train_records} conversations "
        f"in {result.wall_s:.0f}s; held-out perplexity {result.heldout_ppl_base:.2f} -> "
        f"{result.heldout_ppl_tuned:.2f} ({result.heldout_records} held-out conversations)",
        highlight=False,
    )
    if as_json:
        print(json.dumps(result.as_dict()), flush=True)


def eval_command(
    adapter: Annotated[Path, typer.Option("--adapter", help="Folder written by teacherforge train.")],
    data: Annotated[Path, typer.Option("--data", help="The JSONL the adapter was trained from.")],
    db: Annotated[Path, typer.Option("--db", help="DuckDB file with the chunk index.")] = Path(
        "teacherforge.duckdb"
    ),
    config: Annotated[Path | None, typer.Option("--config", help="YAML file; its 'eval:' section.")] = None,
    llm_url: Annotated[str | None, typer.Option(help="Teacher endpoint; default: embedded.")] = None,
    model: Annotated[str | None, typer.Option(help="Teacher model (or GGUF for the embedded one).")] = None,
    judge_url: Annotated[str | None, typer.Option(help="Judge endpoint (default: the teacher's).")] = None,
    judge_model: Annotated[str | None, typer.Option()] = None,
    structured_output: Annotated[
        str | None, typer.Option(help="auto|json_schema|json_mode (auto probes the server once).")
    ] = None,
    max_items: Annotated[int | None, typer.Option(help="Held-out user turns to evaluate.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Student reply length cap.")] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="JSON summary (default: in --adapter).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
) -> None:
    """Student (no retrieval, base and tuned) vs teacher (with retrieval) on held-out questions."""
    _require_train_extra()
    from teacherforge.graph.config import load_config
    from teacherforge.graph.runner import build_agents, build_retriever
    from teacherforge.graph.session import run_endpoints
    from teacherforge.retrieval.embedder import load_embedder
    from teacherforge.store.database import connect
    from teacherforge.store.eval_views import create_eval_views
    from teacherforge.store.events import EventLog
    from teacherforge.student.evaluate import EvalInputs, evaluate, new_eval_id
    from teacherforge.student.settings import EvalSettings, build

    eval_id = new_eval_id()
    log = None
    try:
        settings = build(
            EvalSettings, config, "eval", {"max_items": max_items, "max_new_tokens": max_new_tokens}
        )
        cfg = load_config(
            None,
            {
                "llm_url": llm_url,
                "model": model,
                "critic_url": judge_url,
                "critic_model": judge_model,
                "structured_output": structured_output,
                "critic_temperature": 0.0,
            },
        )
        con = connect(db)
        create_eval_views(con)
        log = EventLog(con)
        retriever = build_retriever(con)
        embed = load_embedder(retriever.table.embedder).embed
        with (
            run_endpoints(cfg, lambda m: err.print(m, highlight=False)) as (gen, crit),
            err.status("…") as st,
        ):
            print(eval_id, flush=True)
            inputs = EvalInputs(adapter, data, build_agents(cfg, gen, crit), retriever, settings, embed)
            summary = evaluate(inputs, log, eval_id, on_step=lambda m: st.update(m))
    except Exception as exc:  # user errors are one line; anything else is a bug and keeps its traceback
        if isinstance(exc, _user_errors()) or type(exc).__name__ in USER_ERROR_NAMES:
            _fail(str(exc))
        raise
    finally:
        if log is not None:
            log.close()
    target = out_path or adapter / f"{eval_id}.json"
    target.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if fmt == "json":
        print(json.dumps(summary), flush=True)
    else:
        print_summary(summary)
        err.print(f"summary written to {target}", highlight=False)


def print_summary(summary: dict) -> None:
    """Metric | teacher | base | tuned | base÷teacher | tuned÷teacher, then perplexity, then per tier."""
    for group, block in summary["metrics"].items():
        means, ratios = block["means"], block["ratio_to_teacher"]
        title = f"{summary['eval_id']} — {group} ({means['teacher']['items']} items)"
        table = Table(
            "metric",
            "teacher+RAG",
            "student base",
            "student tuned",
            "base ÷ teacher",
            "tuned ÷ teacher",
            title=title,
        )
        for key, label in METRIC_LABELS.items():
            table.add_row(
                label,
                *(_fmt(means[s][key]) for s in ("teacher", "student_base", "student_tuned")),
                _fmt(ratios["student_base"][key]),
                _fmt(ratios["student_tuned"][key]),
            )
        out.print(table)
    ppl = summary["perplexity"]
    out.print(f"held-out assistant-token perplexity: base {_fmt(ppl['base'])} -> tuned {_fmt(ppl['tuned'])}")


def _fmt(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``eval`` to the main CLI."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
