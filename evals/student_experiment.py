"""The full offline student experiment: documents -> RAG teacher data -> LoRA student -> measured.

    python evals/student_experiment.py --work out/student-exp [--n 30] [--max-steps 40] [--items 12]

Runs the README's command sequence with no GPU and no hub: ``ingest`` the bundled corpus, ``run``
with the embedded teacher (SmolLM2-135M on llama.cpp), ``export``, ``train`` the bundled Gemma 3
270M, and ``eval`` (teacher with retrieval and judge: the same embedded model). Each step is
timed; the results go to ``<work>/results.json`` and a Markdown table is printed for
docs/student.md. Steps whose output already exists are reused (``--fresh`` starts over), so an
interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The CLI with the student commands registered (a no-op once graph/cli.py registers them itself).
CLI = [
    sys.executable,
    "-c",
    "from teacherforge.graph.cli import app; from teacherforge.graph.cli_student import register; "
    "'train' in {c.name for c in app.registered_commands} or register(app); app()",
]
RUN_YAML = """n: {n}
seed: {seed}
concurrency: 1
max_revisions: 1
plan: {{min_user_turns: 1, max_user_turns: 2}}
"""


def tf(*args: object, log: Path) -> str:
    """Run one CLI step, stderr to the log, and return its stdout (a failed step stops the experiment)."""
    with log.open("a") as err:
        done = subprocess.run([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        sys.exit(f"step {args[0]} failed (exit {done.returncode}); see {log}")
    return done.stdout


def timed(results: dict, name: str, fn) -> object:
    started = time.perf_counter()
    value = fn()
    results.setdefault("wall_s", {})[name] = round(time.perf_counter() - started, 1)
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "student-exp")
    ap.add_argument("--n", type=int, default=30, help="conversations to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--items", type=int, default=12, help="held-out user turns to evaluate")
    ap.add_argument("--min-accepted", type=int, default=8, help="below this, train on all samples")
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
    endpoint = ["--llm-url", a.llm_url, "--model", a.model] if a.llm_url else []

    if "run_id" not in results:
        timed(results, "ingest", lambda: tf("ingest", ROOT / "examples" / "university", "--db", db, log=log))
        (a.work / "run.yaml").write_text(RUN_YAML.format(n=a.n, seed=a.seed))
        out = timed(
            results,
            "run",
            lambda: tf("run", "--db", db, "--config", a.work / "run.yaml", *endpoint, "--json", log=log),
        )
        summary = json.loads(out.strip().splitlines()[-1])
        results.update(run_id=summary["run_id"], generation=summary)
        results_path.write_text(json.dumps(results, indent=2))

    data = a.work / "data.jsonl"
    if not data.exists():
        accepted = tf("sql", f"select count(*) as n from samples where run_id = '{results['run_id']}' "
                      "and status = 'accepted'", "--db", db, "--format", "json", log=log)  # fmt: skip
        status = "accepted" if json.loads(accepted)[0]["n"] >= a.min_accepted else "all"
        results["trained_on"] = status
        export = ["export", "--db", db, "--run", results["run_id"], "--status", status, "--thought", "field"]
        timed(results, "export", lambda: tf(*export, "--out", data, log=log))

    adapter = a.work / "adapter"
    if not (adapter / "run_card.json").exists():
        out = timed(results, "train", lambda: tf("train", "--data", data, "--out", adapter, "--max-steps",
                                                 a.max_steps, "--max-len", 512, "--seed", a.seed, "--json",
                                                 log=log))  # fmt: skip
        results["train"] = json.loads(out.strip().splitlines()[-1])
        results_path.write_text(json.dumps(results, indent=2))

    summary_path = a.work / "eval.json"
    evaluate = ["eval", "--adapter", adapter, "--data", data, "--db", db, "--max-items", a.items]
    evaluate += ["--max-new-tokens", 64, *endpoint, "--out", summary_path, "--format", "json"]
    out = timed(results, "eval", lambda: tf(*evaluate, log=log))
    results["eval"] = json.loads(out.strip().splitlines()[-1])
    results_path.write_text(json.dumps(results, indent=2))
    print(markdown(results))


def markdown(results: dict) -> str:
    """The tables docs/student.md shows: student ÷ teacher per metric, and the wall time per step."""
    block = results["eval"]["metrics"]["all"]
    means, ratios = block["means"], block["ratio_to_teacher"]
    lines = ["| metric | teacher + RAG | student base | student tuned | base ÷ teacher | tuned ÷ teacher |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for key in ("judge_score", "judge_correct", "refusal_handling", "cosine", "rouge_l"):
        cells = [means[s][key] for s in ("teacher", "student_base", "student_tuned")]
        cells += [ratios["student_base"][key], ratios["student_tuned"][key]]
        lines.append(f"| {key} | " + " | ".join("—" if c is None else f"{c:.3f}" for c in cells) + " |")
    ppl = results["eval"]["perplexity"]
    lines.append(f"\nheld-out assistant-token perplexity: base {ppl['base']:.2f} -> tuned {ppl['tuned']:.2f}")
    lines.append("\n| step | wall s |\n|---|---|")
    lines += [f"| {k} | {v} |" for k, v in results["wall_s"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
