"""``teacherforge report``: a dataset card (README.md), an HTML quality page with PNG plots, report.json.

Read-only on the database: every number comes from the SQL views (the queries are in
store/report_queries.py, gathered by dataset/report_data.py), so a reader can check any of them with
``teacherforge sql``. The optional naive baseline (dataset/report_baseline.py) is the only thing that
calls a model, and its questions are saved next to the report.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from teacherforge.dataset import report_metrics as m
from teacherforge.dataset import report_plots as plots
from teacherforge.dataset.report_baseline import generate_baseline, resolve_endpoint
from teacherforge.dataset.report_data import SCORE_DIMENSIONS, RunData, collect
from teacherforge.dataset.tone import tone_reports
from teacherforge.retrieval.embedder import DEFAULT_EMBEDDER, load_embedder

TEMPLATES = Path(__file__).parent / "report_templates"
BASELINE_SKIPPED = (
    "Baseline skipped: it needs an LLM. Give --baseline-url URL (or 'run' for the run's own "
    "endpoint) to compare with one plain question-writing prompt over the same chunks."
)


@dataclass
class ReportOptions:
    license: str = "unknown"
    name: str | None = None
    baseline_url: str | None = None
    baseline_model: str | None = None
    baseline_n: int = 50
    embedder: str = DEFAULT_EMBEDDER


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() and digits == 0 else f"{value:,.{digits}f}"


def _md(value: Any) -> str:
    """A markdown table cell: no pipes or line breaks from user data."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=_pct, num=_num, md=_md)
    return env


def _teacherforge_version() -> str:
    try:
        return version("teacherforge")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _baseline(data: RunData, options: ReportOptions, embed, warn) -> dict[str, Any]:
    if not options.baseline_url:
        return {"status": "skipped", "note": BASELINE_SKIPPED, "metrics": None}
    try:
        url, model = resolve_endpoint(data, options.baseline_url, options.baseline_model)
    except ValueError as exc:
        warn(f"baseline skipped: {exc}")
        return {"status": "failed", "note": f"Baseline not run: {exc}.", "metrics": None}
    result = generate_baseline(data, url, model, options.baseline_n)
    for error in result.errors[:3]:
        warn(f"baseline: {error}")
    info: dict[str, Any] = {
        "url": url,
        "model": model,
        "questions": result.questions,
        "errors": result.errors,
        "metrics": None,
    }
    if not result.questions:
        first = result.errors[0] if result.errors else "no questions returned"
        return {**info, "status": "failed", "note": f"Baseline failed: {first}"}
    info["metrics"] = m.diversity([q["question"] for q in result.questions], embed)
    note = (
        f"Baseline: {len(result.questions)} questions from {model} with one plain prompt over the same "
        "seed chunks (no persona, tier or Evol operator)."
    )
    if result.errors:
        note += f" {len(result.errors)} request(s) failed and are left out."
    return {**info, "status": "ok", "note": note}


def build_report(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    out_dir: Path,
    options: ReportOptions | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Write README.md, index.html, plots/*.png and report.json into ``out_dir``; return the context."""
    options = options or ReportOptions()
    data = collect(con, run_id)
    dataset = data.dataset
    judged = [s for s in data.samples if s.status in ("accepted", "rejected")]
    embedder = load_embedder(options.embedder)
    diversity = m.diversity([m.first_user_turn(s) for s in dataset], embedder.embed)
    baseline = _baseline(data, options, embedder.embed, warn)
    targets = m.targets(data)
    mixes = {
        dim: {
            "target": targets.get(dim, {}),
            "planned": m.mix(data.samples, dim),
            "dataset": m.mix(dataset, dim),
        }
        for dim in ("tier", "persona", "technique")
    }
    rates = m.rates(data)
    tone = tone_reports(
        {part: [(s.persona, m.user_turns(s)) for s in samples] for part, samples in
         (("dataset", dataset), ("generated", data.samples))},
        data.personas,
        embedder.embed,
    )  # fmt: skip
    near = m.near_duplicate_rate(data)
    documents = sorted({d for s in dataset for d in s.documents})
    context: dict[str, Any] = {
        "name": options.name or f"TeacherForge dataset {run_id}",
        "run_id": run_id,
        "license": options.license,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "teacherforge_version": _teacherforge_version(),
        "size_category": _size_category(len(dataset)),
        "run": {
            "status": data.status,
            "started_at": str(data.started_at),
            "finished_at": str(data.finished_at) if data.finished_at else None,
            "config_hash": data.config_hash,
            "target": data.target,
            "seed": data.config.get("seed"),
            "max_revisions": data.config.get("max_revisions"),
            "critic_thresholds": data.config.get("critic_thresholds") or {},
            "endpoints": data.endpoints,
            "profile": data.config.get("profile") or "standard",
        },
        "rates": rates,
        "breakdowns": {dim: m.breakdown(data.samples, dim) for dim in m.DIMENSIONS},
        "mixes": mixes,
        "scores": {
            "dimensions": SCORE_DIMENSIONS,
            "dataset": m.mean_scores(dataset),
            "judged": m.mean_scores(judged),
        },
        "lengths": m.lengths(dataset),
        "tokens": m.token_usage(data),
        "llm": data.llm,
        "templates": data.templates,
        "diversity": {"dataset": diversity, "baseline": baseline},
        "near_duplicates": near,
        "tone": tone,
        "drops": data.drops,
        "documents": documents,
        "embedder": embedder.model_id,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    rate_bars = {
        "acceptance": rates["acceptance"],
        "revised (judged samples)": rates["revision_rate"],
        "hard-negative refusals": rates["hard_negative_refusal_rate"],
        "near duplicates (recorded)": near["recorded_rate"],
        "near duplicates (estimate)": near["estimated_rate"],
    }
    context["plots"] = [
        {
            "file": plots.mix_plot(plot_dir / "mix_tier.png", "Tier mix vs target", mixes["tier"]),
            "title": "Tier mix vs target",
        },
        {
            "file": plots.mix_plot(plot_dir / "mix_persona.png", "Persona mix vs target", mixes["persona"]),
            "title": "Persona mix vs target",
        },
        {
            "file": plots.mix_plot(
                plot_dir / "mix_technique.png", "Technique mix vs target", mixes["technique"]
            ),
            "title": "Technique mix vs target",
        },
        {"file": plots.score_histograms(plot_dir / "scores.png", judged), "title": "Final critic scores"},
        {
            "file": plots.revisions_plot(plot_dir / "revisions.png", m.revisions_by_tier(data.samples)),
            "title": "Revisions per tier",
        },
        {"file": plots.lengths_plot(plot_dir / "lengths.png", dataset), "title": "Length distributions"},
        {
            "file": plots.diversity_plot(plot_dir / "diversity.png", diversity, baseline["metrics"]),
            "title": "Diversity vs baseline",
        },
        {"file": plots.rates_plot(plot_dir / "rates.png", rate_bars), "title": "Rates"},
    ]
    env = _environment()
    (out_dir / "README.md").write_text(env.get_template("README.md.j2").render(**context), encoding="utf-8")
    (out_dir / "index.html").write_text(env.get_template("index.html.j2").render(**context), encoding="utf-8")
    if baseline.get("questions"):
        with (out_dir / "baseline.jsonl").open("w", encoding="utf-8") as handle:
            for row in baseline["questions"]:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out_dir / "report.json").write_text(
        json.dumps(context, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
    )
    return context
