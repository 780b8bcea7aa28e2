"""CPU per LangGraph node step with nothing in the node: the floor LangGraph puts under every call.

    python -m evals.bench.graph_overhead [--samples 400] [--steps 11] [--concurrency 8]

Issue #19 asked for <= 3 ms of TeacherForge's CPU per LLM call. The design card keeps LangGraph for
the sample's state machine and langchain-openai's ``ChatOpenAI`` for every call; this measures what
the first costs on its own, so the target can be compared with the floor of the stack it must run
on (``client_overhead`` measures the second). The graph has the shape of ours: a typed state with a
growing list of turns, a run context (``context_schema``, read through ``Runtime``), a conditional
edge after each step, one thread id per sample, ``--concurrency`` samples in flight at once.
A standard sample with T user turns takes 2T + 5 steps for 2T + 1 calls (graph/sample_graph.py).
It prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime


class _State(TypedDict, total=False):
    steps: int
    turns: list[dict]


@dataclass
class _Context:
    limit: int


async def _step(state: _State, runtime: Runtime[_Context]) -> _State:
    turn = {"role": "assistant", "content": "a" * 300}
    return {"steps": state.get("steps", 0) + 1, "turns": [*state.get("turns", []), turn]}


def _route(state: _State, runtime: Runtime[_Context]) -> str:
    return "step" if state["steps"] < runtime.context.limit else END


def _graph():
    graph = StateGraph(_State, context_schema=_Context)
    graph.add_node("step", _step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", _route, ["step", END])
    return graph.compile()


async def measure(samples: int, steps: int, concurrency: int = 8) -> dict:
    graph, context = _graph(), _Context(limit=steps)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        config = {"configurable": {"thread_id": f"s{i}"}}
        async with gate:
            await graph.ainvoke({"steps": 0, "turns": []}, config=config, context=context)

    await asyncio.gather(*(one(i) for i in range(20)))  # warm-up
    rounds = []
    for _ in range(3):
        cpu = time.process_time()
        await asyncio.gather(*(one(i) for i in range(samples)))
        rounds.append((time.process_time() - cpu) * 1000 / (samples * steps))
    return {
        "bench": "graph_overhead",
        "langgraph_ms_per_step_best": round(min(rounds), 3),
        "langgraph_ms_per_step_rounds": [round(r, 3) for r in rounds],
        "samples": samples,
        "steps_per_sample": steps,
        "concurrency": concurrency,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--steps", type=int, default=11, help="11: a standard sample of 3 user turns")
    p.add_argument("--concurrency", type=int, default=8, help="samples in flight (the overhead run's C)")
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.samples, args.steps, args.concurrency))), flush=True)


if __name__ == "__main__":
    main()
