"""How well does ``teacherforge check`` separate good conversations from bad ones? "fail" is the positive.

    python -m evals.quality                                  # ingest examples/university into a temp DB
    python -m evals.quality --db forge.duckdb                # a database that already holds the corpus
    python -m evals.quality --llm-url URL --model M          # the checker also runs the critic
    python -m evals.quality --check-output saved.jsonl       # score a saved checker output, run nothing
    python -m evals.quality --json                           # one JSON object instead of the text report

Runs ``teacherforge check evals/quality/conversations.jsonl --db DB --format json``, joins its verdicts
with the labels by id, and prints precision and recall of "fail" overall, a confusion matrix, recall per
defect, the false positives with the checker's reasons, and precision/recall on the defects visible to
the deterministic gate (target: recall >= 0.9, precision >= 0.95). Before scoring, the set's evidence is
checked against the database; stale chunk ids or quotes are reported, since they would make the verdicts
meaningless. The labels are what a careful reviewer says; they are never adjusted to a checker.

Last it prints the tone match of the report's nearest-persona classifier on evals/quality/tone.jsonl
(persona-labelled user turns), per persona and beside chance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from teacherforge.evals.quality import runner
from teacherforge.evals.quality.score import DEFECTS, QualitySetError, evaluate, read_conversations
from teacherforge.evals.quality.tone import TONE_SET, evaluate_tone, read_tone_set, render_tone
from teacherforge.evals.quality.validate import validate
from teacherforge.retrieval.embedder import DEFAULT_EMBEDDER, EmbedderUnavailable, load_embedder

TARGET = {"recall": 0.9, "precision": 0.95}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _line(name: str, c: dict[str, Any]) -> str:
    return (
        f"{name:<34} precision {_fmt(c['precision'])}  recall {_fmt(c['recall'])}  "
        f"(tp {c['tp']}, fp {c['fp']}, fn {c['fn']}, tn {c['tn']})"
    )


def render(report: dict[str, Any]) -> str:
    o = report["overall"]
    out = [
        f"quality set: {report['n']} conversations ({report['labels']['good']} good, "
        f"{report['labels']['bad']} bad); checker: {report.get('checker', 'teacherforge check')}",
        "positive class: verdict 'fail' on a conversation labelled bad",
        "",
        _line("overall", o),
        _line("visible to the deterministic gate", report["visible"]),
        _line("needs a judge", report["judge"]),
    ]
    v = report["visible"]
    met = (
        v["recall"] is not None
        and v["precision"] is not None
        and (v["recall"] >= TARGET["recall"] and v["precision"] >= TARGET["precision"])
    )
    out.append(
        f"  target on the visible group: recall >= {TARGET['recall']}, precision >= "
        f"{TARGET['precision']}: {'met' if met else 'NOT met'}"
    )
    out += [
        "",
        "confusion matrix          verdict fail  verdict pass",
        f"  labelled bad            {o['tp']:>12}  {o['fn']:>12}",
        f"  labelled good           {o['fp']:>12}  {o['tn']:>12}",
        "",
        "recall per defect         n  failed  recall  group          missed",
    ]
    for defect in DEFECTS:
        d = report["per_defect"].get(defect)
        if d:
            missed = " ".join(d["missed"]) or "-"
            out.append(
                f"  {defect:<22}{d['n']:>3}  {d['failed']:>6}  {_fmt(d['recall']):>6}  "
                f"{d['group']:<13}  {missed}"
            )
    out += ["", f"false positives (good conversations failed): {len(report['false_positives'])}"]
    for fp in report["false_positives"]:
        out.append(f"  {fp['id']}: {'; '.join(fp['reasons']) or '(no reasons given)'}")
        out += [f"      {d[:150]}" for d in fp.get("details", [])[:6]]
    if report["missing_verdicts"]:
        missing = " ".join(report["missing_verdicts"])
        out += ["", f"no verdict from the checker (counted as not failed): {missing}"]
    if report["unlabelled_verdicts"]:
        out.append(f"verdicts for ids not in the set (ignored): {' '.join(report['unlabelled_verdicts'])}")
    if report.get("stale"):
        out += [
            "",
            f"WARNING: {len(report['stale'])} problem(s) with the set's evidence in this database "
            "(chunk ids or quotes moved; verdicts on these conversations are not meaningful):",
        ]
        out += [f"  {p}" for p in report["stale"][:20]]
    if report.get("ignored_lines"):
        out += ["", f"{len(report['ignored_lines'])} non-verdict line(s) in the checker output were ignored"]
    if report.get("tone"):
        out += render_tone(report["tone"], report["tone_embedder"])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.quality", description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, help="a database holding the ingested examples/university corpus")
    parser.add_argument("--llm-url", help="also run the critic on this OpenAI-compatible endpoint")
    parser.add_argument("--model", help="the critic's model name (with --llm-url)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--set", type=Path, default=runner.SET_PATH, help="the labelled conversations")
    parser.add_argument("--tone-set", type=Path, default=TONE_SET, help="the persona-labelled user turns")
    parser.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, help="the tone classifier's sentence embedder"
    )
    parser.add_argument(
        "--check-output",
        type=Path,
        help="score a saved 'teacherforge check --format json' output; run nothing",
    )
    args = parser.parse_args(argv)
    if args.model and not args.llm_url:
        parser.error("--model needs --llm-url")

    conversations = read_conversations(args.set)
    stale: list[str] = []
    if args.check_output:
        lines = args.check_output.read_text(encoding="utf-8").splitlines()
        checker = f"saved output {args.check_output}"
    else:
        with runner.database(args.db) as db:
            stale = validate(conversations, runner.chunk_texts(db))
            run = runner.run_check(args.set, db, args.llm_url, args.model)
        lines = run.stdout.splitlines()
        critic = f" + critic {args.model or ''} at {args.llm_url}" if args.llm_url else ""
        checker = "teacherforge check" + critic
        if not any('"verdict"' in line for line in lines):
            print(
                f"{' '.join(run.command[1:])} printed no verdicts (exit {run.returncode}):\n"
                f"{run.stderr.strip()[-3000:]}",
                file=sys.stderr,
            )
            return 2

    report = evaluate(conversations, lines)
    report["checker"] = checker
    report["stale"] = stale
    report["tone"] = evaluate_tone(read_tone_set(args.tone_set), load_embedder(args.embedder).embed)
    report["tone_embedder"] = args.embedder
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (runner.RunnerError, QualitySetError, EmbedderUnavailable) as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
