"""The full offline student experiment: documents -> RAG teacher data -> LoRA student -> measured.

    python evals/student_experiment.py --work out/student-exp [--gen-minutes 12] [--max-steps 16]
                                       [--items 8] [--feedback-n 0]

Runs the README's command sequence with no GPU and no hub: ``ingest`` the bundled corpus, ``run``
with the embedded teacher (SmolLM2-135M on llama.cpp), ``export``, ``train`` the bundled Gemma 3
270M, ``eval`` (teacher with retrieval and judge: the same embedded model), and optionally one
feedback round (``run --from-eval``). Generation is time-boxed: after ``--gen-minutes`` the run
gets a Ctrl-C (it stops taking samples and lets in-flight ones finish), so the experiment fits a
time budget on any machine. Each step records its wall time, the CPU seconds its processes used
and the load average before and after; results go to ``<work>/results.json`` and the Markdown
tables for docs/student.md are printed. Steps whose output exists are reused (``--fresh`` starts
over), so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from teacherforge.evals.paths import checkout_root

ROOT = checkout_root()
CLI = [sys.executable, "-m", "teacherforge.cli.app"]
RUN_YAML = """n: {n}
seed: {seed}
concurrency: 1
max_revisions: {max_revisions}
plan: {{min_user_turns: 1, max_user_turns: {max_user_turns}}}
"""
METRICS = ("judge_score", "judge_correct", "refusal_handling", "cosine", "rouge_l")
SYSTEMS = ("teacher", "student_base", "student_tuned")


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tf(*args: object, log: Path, limit_s: float | None = None) -> str:
    """Run one CLI step, stderr to the log, and return its stdout.

    With ``limit_s`` the step gets SIGINT when the time is up (a ``run`` then stops taking samples
    and finishes the ones in flight) and exit code 130 counts as done. Any other failure stops the
    experiment.
    """
    with log.open("a") as err:
        err.write(f"\n$ teacherforge {' '.join(map(str, args))}\n")
        err.flush()
        proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            stdout, _ = proc.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                stdout, _ = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)  # second Ctrl-C: leave now, the log is flushed
                stdout, _ = proc.communicate()
    if proc.returncode != 0 and not (limit_s and proc.returncode == 130):
        sys.exit(f"step {args[0]} failed (exit {proc.returncode}); see {log}")
    return stdout


def timed(results: dict, name: str, fn) -> object:
    """Run ``fn`` and record wall seconds, CPU seconds of the child processes and the load average."""
    load_before, cpu_before = os.getloadavg()[0], _cpu_children()
    started = time.perf_counter()
    value = fn()
    results.setdefault("stages", {})[name] = {
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(_cpu_children() - cpu_before, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    return value


def sql(db: Path, query: str, log: Path) -> list[dict]:
    return json.loads(tf("sql", query, "--db", db, "--format", "json", log=log))


def generation_summary(db: Path, run_id: str, log: Path) -> dict:
    rows = sql(db, f"select status, count(*) as n from samples where run_id = '{run_id}' group by 1", log)
    calls = sql(db, "select count(*) as calls, round(avg(latency_ms) / 1000, 1) as avg_s, "
                f"count(error) as errors from llm_calls where run_id = '{run_id}'", log)[0]  # fmt: skip
    return {"run_id": run_id, "status": {r["status"]: r["n"] for r in rows}, "llm_calls": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "student-exp")
    ap.add_argument("--n", type=int, default=60, help="conversations to plan (the time box ends it first)")
    ap.add_argument("--gen-minutes", type=float, default=12.0, help="time box of the generation step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-user-turns", type=int, default=2)
    ap.add_argument("--max-revisions", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=16)
    ap.add_argument("--items", type=int, default=8, help="held-out user turns to evaluate")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="student answer length")
    split_help = "export split (validation+test are held out), or 'student': train's own split by document"
    ap.add_argument("--split", default="student", help=split_help)
    ap.add_argument("--min-accepted", type=int, default=8, help="below this, train on all samples")
    ap.add_argument("--feedback-n", type=int, default=0, help="samples of one run --from-eval round")
    ap.add_argument("--feedback-minutes", type=float, default=5.0)
    ap.add_argument("--llm-url", help="teacher/judge endpoint (default: the embedded model)")
    ap.add_argument("--model", help="model at --llm-url")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    if a.fresh and a.work.exists():
        shutil.rmtree(a.work)
    a.work.mkdir(parents=True, exist_ok=True)
    db, log, results_path = a.work / "forge.duckdb", a.work / "steps.log", a.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["settings"] = vars(a) | {"work": str(a.work)}
    results["machine"] = {"cores": os.cpu_count(), "load_at_start": [round(x, 2) for x in os.getloadavg()]}
    endpoint = ["--llm-url", a.llm_url, "--model", a.model] if a.llm_url else []

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=2))

    if "generation" not in results:
        timed(results, "ingest", lambda: tf("ingest", ROOT / "examples" / "university", "--db", db, log=log))
        turns = {"max_revisions": a.max_revisions, "max_user_turns": a.max_user_turns}
        (a.work / "run.yaml").write_text(RUN_YAML.format(n=a.n, seed=a.seed, **turns))
        run = ["run", "--db", db, "--config", a.work / "run.yaml", *endpoint]
        out = timed(results, "run", lambda: tf(*run, log=log, limit_s=a.gen_minutes * 60))
        results["generation"] = generation_summary(db, out.strip().splitlines()[0], log)
        save()
    run_id = results["generation"]["run_id"]

    data = a.work / "data.jsonl"
    if not data.exists():
        status = "accepted" if results["generation"]["status"].get("accepted", 0) >= a.min_accepted else "all"
        results["trained_on"] = status
        export = ["export", "--db", db, "--run", run_id, "--status", status, "--thought", "field"]
        export += ["--split", "1,0,0" if a.split == "student" else a.split, "--seed", a.seed, "--out", data]
        timed(results, "export", lambda: tf(*export, log=log))
        if a.split == "student":  # no split in the file: train picks its own held-out documents
            rows = [json.loads(line) for line in data.open()]
            for row in rows:
                row["metadata"].pop("split", None)
            data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        results["records"] = sum(1 for _ in data.open())
        save()

    adapter = a.work / "adapter"
    if not (adapter / "run_card.json").exists():
        out = timed(results, "train", lambda: tf("train", "--data", data, "--out", adapter, "--max-steps",
                                                 a.max_steps, "--max-len", 512, "--seed", a.seed, "--json",
                                                 log=log))  # fmt: skip
        results["train"] = json.loads(out.strip().splitlines()[-1])
        save()

    if "eval" not in results:
        summary_path = a.work / "eval.json"
        evaluate = ["eval", "--adapter", adapter, "--data", data, "--db", db, "--max-items", a.items]
        evaluate += ["--max-new-tokens", a.max_new_tokens, *endpoint]
        evaluate += ["--out", summary_path, "--format", "json"]
        out = timed(results, "eval", lambda: tf(*evaluate, log=log))
        results["eval"] = json.loads(out.strip().splitlines()[-1])
        save()

    if a.feedback_n and "feedback" not in results:
        eval_id = results["eval"]["eval_id"]
        seeded = ["run", "--from-eval", eval_id, "--n", a.feedback_n, "--db", db]
        seeded += ["--config", a.work / "run.yaml"]
        limit = a.feedback_minutes * 60
        out = timed(results, "feedback", lambda: tf(*seeded, *endpoint, log=log, limit_s=limit))
        feedback_run = out.strip().splitlines()[0]
        results["feedback"] = generation_summary(db, feedback_run, log)
        results["feedback"]["lineage"] = sql(
            db,
            "select s.sample_id, s.status, s.tier, p.payload->'seeded_from'->>'eval_item_id' as eval_item_id "
            "from samples s join events p on p.sample_id = s.sample_id and p.type = 'sample.planned' "
            f"where s.run_id = '{feedback_run}' order by 1",
            log,
        )
        save()
    results["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(markdown(results))


def _fmt(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.3f}"


def markdown(results: dict) -> str:
    """The tables docs/student.md shows: student ÷ teacher per metric and tier, and each stage's cost."""
    lines = []
    for group, block in results["eval"]["metrics"].items():
        means, ratios = block["means"], block["ratio_to_teacher"]
        lines += [
            f"\n**{group}** ({means['teacher']['items']} items)\n",
            "| metric | teacher + RAG | student base | student tuned | base ÷ teacher | tuned ÷ teacher |",
            "|---|---|---|---|---|---|",
        ]
        for key in METRICS:
            cells = [means[s][key] for s in SYSTEMS]
            cells += [ratios["student_base"][key], ratios["student_tuned"][key]]
            lines.append(f"| {key} | " + " | ".join(_fmt(c) for c in cells) + " |")
    ppl, train = results["eval"]["perplexity"], results.get("train", {})
    lines.append(f"\nheld-out perplexity (eval): base {_fmt(ppl['base'])} -> tuned {_fmt(ppl['tuned'])}")
    if train:
        lines.append(f"train: {train.get('steps')} steps on {train.get('train_records')} conversations, "
                     f"{train.get('heldout_records')} held out")  # fmt: skip
    gen = results["generation"]
    trained_on = results.get("trained_on")
    lines.append(f"generation: {gen['status']}, calls {gen['llm_calls']}; trained on {trained_on}")
    if "feedback" in results:
        fb = results["feedback"]
        lines.append(f"feedback round: {fb['status']}, LLM calls {fb['llm_calls']}")
    lines += ["\n| stage | wall s | CPU s (children) | load before | load after |", "|---|---|---|---|---|"]
    for name, st in results["stages"].items():
        cells = (st["wall_s"], st["cpu_s"], st["load_before"], st["load_after"])
        lines.append(f"| {name} | " + " | ".join(map(str, cells)) + " |")
    lines.append(f"\nmachine: {results['machine']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
