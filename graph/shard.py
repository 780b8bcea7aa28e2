"""Sharded runs: ``run --shard i/n`` generates a disjoint slice of one run's plan into its own file.

Why: past one machine, n processes (each with its own DuckDB file, since DuckDB allows one writer)
share one run. Shard i owns the plan indexes ``k`` with ``k % n == i``; the sample ids stay
``<run_id>-<k>``, so they are globally unique and the same as in an unsharded run with that run id,
and the plans are the same because a plan depends only on (seed, index). All shards must therefore
agree on the run id: ``--run-id`` or, by default, one derived from the plan hash (the config
without the fields that only say where and how fast to run). ``teacherforge merge`` joins the files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import duckdb

from teacherforge.graph.config import ConfigError, RunConfig
from teacherforge.graph.runner import SampleJob, fresh_jobs
from teacherforge.store.run_queries import run_started

# Settings that may differ between shards of one run: where the model is and how hard to push it.
RUNTIME_FIELDS = frozenset(
    {"llm_url", "critic_url", "api_key_env", "concurrency", "adaptive", "timeout_s", "call_deadline_s"}
)
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, index: int) -> bool:
        return index % self.count == self.index

    def payload(self) -> dict:
        return {"index": self.index, "count": self.count}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--shard: expected I/N such as 0/4 (got '{text}')")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ConfigError(f"--shard {text}: I must be in 0..N-1 and N >= 1 (e.g. 0/{max(count, 2)})")
    return Shard(index, count)


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise ConfigError(f"--run-id '{run_id}': use letters, digits, '.', '_' and '-' (at most 100)")
    return run_id


def plan_hash(config: RunConfig) -> str:
    """Hash of everything that decides what is generated; equal on every shard of one run."""
    data = {k: v for k, v in config.model_dump(mode="json").items() if k not in RUNTIME_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def shared_run_id(config: RunConfig) -> str:
    """The run id every shard derives by itself when ``--run-id`` is not given."""
    return f"run-{plan_hash(config)[:12]}"


def shard_jobs(run_id: str, n: int, shard: Shard) -> list[SampleJob]:
    return [job for job in fresh_jobs(run_id, n) if shard.owns(job.index)]


def keep_shard(jobs: list[SampleJob], shard: Shard | None) -> list[SampleJob]:
    return jobs if shard is None else [job for job in jobs if shard.owns(job.index)]


def run_shard(con: duckdb.DuckDBPyConnection, run_id: str) -> Shard | None:
    """The shard a run in this file was started as (for ``--resume``), or None if unsharded."""
    data = (run_started(con, run_id) or {}).get("shard")
    if data is None:
        return None
    return Shard(int(data["index"]), int(data["count"]))
