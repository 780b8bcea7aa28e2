"""All the performance figures of the GPU-saturation issue, printed as ONE JSON object.

    python -m evals.bench --quick --json     # small sizes, < 2 minutes on 2 cores
    python -m evals.bench --json             # the full set (1M-event log, C up to 128, real model)

Keys: overhead_ms_per_call, concurrency_efficiency, workers_2_efficiency, events_per_s,
replay_ms_1m, rss_mb_1k, rss_mb_10k, real_model_ratio, distilabel_ratio; the floor that LangGraph and
ChatOpenAI set under each call in the same run (stack_floor_ms_per_call); plus the sizes actually
used (a quick run says so: replay_events, rss_samples, ...) and the machine's load. A part that
fails gives null and a ``<key>_error`` line instead of losing the rest. Timings never go into tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from teacherforge.evals.bench import client_overhead, event_log, graph_overhead, pipeline_bench
from teacherforge.evals.paths import checkout_root

ROOT = checkout_root()
KEYS = (
    "overhead_ms_per_call",
    "concurrency_efficiency",
    "workers_2_efficiency",
    "events_per_s",
    "replay_ms_1m",
    "rss_mb_1k",
    "rss_mb_10k",
    "real_model_ratio",
    "distilabel_ratio",
)
PEER_CONCURRENCY = 8  # the overhead run's C, and distilabel's batch size in the peer part
QUICK = {
    "overhead_n": 12,
    "floor_samples": 100,
    "levels": [1, 8, 32],
    "per_level": 1,
    "slow_levels": [],
    "log_samples": 300,
    "rss_sizes": [25, 100],
    "peer_calls": 300,  # distilabel_ratio: at least this many calls per side (the full run: 2,000)
    "workers": {"n": 128, "concurrency": 64},  # workers_2_efficiency: --workers 2 at C=64, 200 ms calls
    "ray_scaling": None,  # the full run adds the scaling curve (evals/bench/ray_scaling.py)
}
FULL = {
    "overhead_n": 48,
    "floor_samples": 400,
    "levels": [1, 8, 32, 128],
    "per_level": 2,
    "slow_levels": [32, 128],  # again at 2 s per call, closer to a real generation's latency
    "log_samples": 10_000,
    "rss_sizes": [1_000, 10_000],
    "peer_calls": 2_000,
    "workers": {"n": 128, "concurrency": 64},
    "ray_scaling": ["--n", "400", "--concurrency", "64", "--workers", "1,2", "--nodes", "4", "--slots", "16"],
}


def _json_line(fn, argv: list[str]) -> dict:
    """Run a bench ``main(argv)`` that prints one JSON line and return that line parsed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        fn(argv)
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def _guard(result: dict, keys: tuple[str, ...], part: str, fn) -> None:
    """Fill ``result`` from ``fn()``; on failure the part's keys are null with the reason."""
    started = time.perf_counter()
    try:
        result.update(fn())
    except Exception as exc:  # one broken part must not lose the other figures
        for key in keys:
            result.setdefault(key, None)
        result[f"{part}_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    result.setdefault("part_s", {})[part] = round(time.perf_counter() - started, 1)


FLOOR_KEYS = ("langgraph_ms_per_step", "chat_openai_ms_per_call", "stack_floor_ms_per_call")
# A standard sample of 3 user turns: plan, seed_context, 3 x (user_turn, teacher_turn), rules, critic,
# accept = 11 LangGraph steps for 7 calls (graph/sample_graph.py).
STEPS_PER_SAMPLE, CALLS_PER_SAMPLE = 11, 7
STEPS_PER_CALL = STEPS_PER_SAMPLE / CALLS_PER_SAMPLE


def stack_floor(samples: int, concurrency: int) -> dict:
    """What LangGraph and ``ChatOpenAI`` on our transport cost per call with nothing of ours around
    them: the floor under ``overhead_ms_per_call`` that the design card's stack sets, in the same run."""
    graph = asyncio.run(graph_overhead.measure(samples, STEPS_PER_SAMPLE, concurrency))
    with pipeline_bench.stub_process(0.0) as url:
        chat = asyncio.run(client_overhead.chat_openai_ours(url, max(400, samples), concurrency))
    step, call = graph["langgraph_ms_per_step_best"], chat["cpu_ms_per_call"]
    return {
        "langgraph_ms_per_step": step,
        "chat_openai_ms_per_call": call,
        "stack_floor_ms_per_call": round(step * STEPS_PER_CALL + call, 2),
        "floor_note": f"LangGraph's best of 3 rounds x {STEPS_PER_CALL:.2f} steps per call + ChatOpenAI "
        f"on our transport at C={concurrency}; no prompt, validation, event, retrieval or rule of ours",
    }


def machine() -> dict:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "uptime": uptime}


def ray_parts(template: Path, quick: dict | None, scaling: list[str] | None) -> dict:
    """``workers_2_efficiency`` (and, in the full run, the scaling curve) in child processes of their own:
    each starts and stops a local Ray cluster, and this process's CPU figures stay the pipeline's."""
    if quick is None:
        return {"workers_2_efficiency": None, "workers_note": "skipped: no workers size in this run"}
    if importlib.util.find_spec("ray") is None:
        missing = 'not installed (pip install "teacherforge[ray]")'
        return {"workers_2_efficiency": None, "workers_note": missing}
    base = [sys.executable, "-m", "evals.bench.ray_scaling", "--template", str(template)]
    sized = ["--n", str(quick["n"]), "--concurrency", str(quick["concurrency"])]
    out = _child_json([*base, "--quick", *sized])
    if scaling:
        out["ray_scaling"] = _child_json([*base, *scaling])
    return out


def _child_json(argv: list[str]) -> dict:
    """The child's JSON line; its machine keys are prefixed so they do not pass for the whole bench's."""
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True, timeout=3600)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out.pop("bench", None)
    for key in ("cpus", "load_avg_1m_before", "load_avg_1m_after", "elapsed_s"):
        if key in out:
            out[f"workers_{key}"] = out.pop(key)
    return out


def run(quick: bool, real: bool, sizes: dict) -> dict:
    started = time.perf_counter()
    result: dict = {"quick": quick, "machine_before": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = pipeline_bench.corpus_template(work)

        def overhead() -> dict:
            return pipeline_bench.overhead(template, work, sizes["overhead_n"], concurrency=PEER_CONCURRENCY)

        _guard(result, ("overhead_ms_per_call",), "overhead", overhead)

        def floor() -> dict:
            return stack_floor(sizes["floor_samples"], PEER_CONCURRENCY)

        _guard(result, FLOOR_KEYS, "floor", floor)

        def concurrency() -> dict:
            out = pipeline_bench.concurrency(template, work, sizes["levels"], 0.2, sizes["per_level"])
            out |= {"concurrency_levels": sizes["levels"]}
            if sizes.get("slow_levels"):
                slow = pipeline_bench.concurrency(template, work, sizes.get("slow_levels"), 2.0, 1)
                out |= {
                    "concurrency_efficiency_2s": slow["concurrency_efficiency"],
                    "samples_per_s_2s": slow["samples_per_s"],
                    "concurrency_failed_samples_2s": slow["concurrency_failed_samples"],
                }
            return out

        _guard(result, ("concurrency_efficiency",), "concurrency", concurrency)

        def workers() -> dict:
            return ray_parts(template, sizes.get("workers"), sizes.get("ray_scaling"))

        _guard(result, ("workers_2_efficiency",), "workers", workers)

        def events() -> dict:
            out = _json_line(event_log.main, ["--samples", str(sizes["log_samples"])])
            return {
                "events_per_s": out.get("events_per_s"),
                "replay_ms_1m": out.get("replay_ms"),
                "replay_events": out.get("events"),
                "recipe_ms_max": out.get("recipe_ms_max"),
            }

        _guard(result, ("events_per_s", "replay_ms_1m"), "event_log", events)

        def rss() -> dict:
            small, large = sizes["rss_sizes"]
            got = pipeline_bench.rss_fresh_process(template, work, [small, large], concurrency_level=16)
            note = "peak RSS of one fresh process after a run of N1 samples, then after a run of N2 more"
            return {
                "rss_mb_1k": got[small],
                "rss_mb_10k": got[large],
                "rss_samples": [small, large],
                "rss_note": note,
            }

        _guard(result, ("rss_mb_1k", "rss_mb_10k"), "rss", rss)

        def peer() -> dict:
            calls = sizes["peer_calls"]
            note = f" (--quick: fewer than the full run's {FULL['peer_calls']:,})" if quick else ""
            return pipeline_bench.peer(template, work, calls, PEER_CONCURRENCY, note)

        _guard(result, ("distilabel_ratio",), "distilabel", peer)

    def real_model() -> dict:
        if quick and not real:
            return {"real_model_ratio": None, "real_model_note": "skipped in --quick (add --real; 5-15 min)"}
        done = subprocess.run(
            [sys.executable, "-m", "evals.bench.pipeline_vs_raw", "--n", "1"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=1800,
        )  # fmt: skip
        out = json.loads(done.stdout.strip().splitlines()[-1])
        return {"real_model_ratio": out["real_model_ratio"], "real_model": out}

    _guard(result, ("real_model_ratio",), "real_model", real_model)

    result["machine_after"] = machine()
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    for key in KEYS:
        result.setdefault(key, None)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes; under 2 minutes on 2 cores")
    p.add_argument("--json", action="store_true", help="print only the JSON object (the default output)")
    p.add_argument("--real", action="store_true", help="with --quick: also run the real-model ratio")
    p.add_argument("--rss-sizes", help="two sample counts for rss_mb_1k/rss_mb_10k, e.g. 1000,4000")
    p.add_argument("--log-samples", type=int, help="samples x 100 events for the event-log figures")
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.rss_sizes:
        sizes["rss_sizes"] = [int(x) for x in args.rss_sizes.split(",")][:2]
    if args.log_samples:
        sizes["log_samples"] = args.log_samples
    result = run(args.quick, args.real, sizes)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
