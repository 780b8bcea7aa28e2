"""Run-level queries: what a run recorded when it started, what it spent, and what resume and fork reuse.

Why one module: the ``run.started`` lookup and its neighbours used to be written out wherever they
were needed (shards, resume, fork, the feedback loop, the report, dedup), and each copy had to follow
the event schema by itself. Callers pass and get plain values; store/ imports no other package.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb

# ------------------------------------------------------------------------------------------------
# run.started: the run's config, endpoints, shard and seeds, recorded once when it began
# ------------------------------------------------------------------------------------------------

RUN_STARTED_SQL = "SELECT payload FROM events WHERE run_id = ? AND type = 'run.started' ORDER BY ts LIMIT 1"
RUN_EXISTS_SQL = "SELECT count(*) FROM events WHERE run_id = ? AND type = 'run.started'"


def run_started(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """The first ``run.started`` payload of a run, or None if this file has no such run.

    Why: resume, fork, shards, the feedback loop and the report all rebuild a run from what it
    recorded at its start (merged shards have one per shard; the earliest one answers).
    """
    rows = con.execute(RUN_STARTED_SQL, [run_id]).fetchall()
    if not rows:
        return None
    payload = rows[0][0]
    return (json.loads(payload) if isinstance(payload, str) else payload) or {}


def run_exists(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """Whether the run was started in this file, so a new run cannot reuse its id by accident."""
    return bool(con.execute(RUN_EXISTS_SQL, [run_id]).fetchall()[0][0])


# ------------------------------------------------------------------------------------------------
# What a run spent and produced
# ------------------------------------------------------------------------------------------------


def run_tokens_spent(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int, int]:
    """Tokens in and out a run sent to a model (reused replies are free), so budgets span resumes."""
    row = con.execute(
        "SELECT coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0) FROM llm_calls "
        "WHERE run_id = ? AND NOT reused",
        [run_id],
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def agent_call_rates(
    con: duckdb.DuckDBPyConnection, profile: str = "standard"
) -> list[tuple[str, float, float | None, float | None]]:
    """Per agent over earlier runs of ``profile``: (agent, calls per sample, mean tokens in, mean
    tokens out of successes).

    Why: ``run --dry-run`` estimates a new run at the rates this database has seen. Only runs of the
    same profile count (the small profile makes other calls), and calls per sample are over every
    sample with a call, so an agent called in a few samples only (the refiner) is not counted as if
    every sample called it. A run without a recorded profile ran the standard one.
    """
    return con.execute(
        """
        WITH calls AS (
            SELECT c.* FROM llm_calls c JOIN runs r USING (run_id)
            WHERE NOT c.reused AND c.sample_id IS NOT NULL AND c.run_id LIKE 'run-%'
              AND coalesce(r.config->>'profile', 'standard') = ?
        )
        SELECT agent, count(*) / (SELECT count(DISTINCT sample_id) FROM calls) AS per_sample,
               avg(tokens_in) FILTER (WHERE error IS NULL) AS tin,
               avg(tokens_out) FILTER (WHERE error IS NULL) AS tout
        FROM calls GROUP BY agent ORDER BY agent
        """,
        [profile],
    ).fetchall()


def sample_status_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Samples per status over the whole run (a resumed run includes its earlier samples), for the summary."""
    cur = con.cursor()
    return dict(
        cur.execute("SELECT status, count(*) FROM samples WHERE run_id = ? GROUP BY 1", [run_id]).fetchall()
    )


def call_counts_since(con: duckdb.DuckDBPyConnection, run_id: str, since: dt.datetime) -> tuple[int, int]:
    """(calls sent to a model, calls answered from recorded replies) since ``since``: one invocation's."""
    cur = con.cursor()
    row = cur.execute(
        "SELECT count(*) FILTER (WHERE NOT reused), count(*) FILTER (WHERE reused) FROM llm_calls "
        "WHERE run_id = ? AND ts >= ?",
        [run_id, since],
    ).fetchall()[0]
    return row[0], row[1]


# ------------------------------------------------------------------------------------------------
# Resume and fork: which samples to regenerate, and where a fork starts
# ------------------------------------------------------------------------------------------------


def sample_statuses(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, str]:
    """Each sample's status by sample id, so a resume keeps the finished ones."""
    return dict(con.execute("SELECT sample_id, status FROM samples WHERE run_id = ?", [run_id]).fetchall())


def sample_has_events(con: duckdb.DuckDBPyConnection, sample_id: str) -> bool:
    """Whether a sample recorded anything, so a resume restarts it instead of starting it fresh."""
    return bool(con.execute("SELECT count(*) FROM events WHERE sample_id = ?", [sample_id]).fetchall()[0][0])


def events_matching(con: duckdb.DuckDBPyConnection, event_id: str) -> list[tuple[str, str | None, int]]:
    """(run id, sample id, seq) of the events whose id is or starts with ``event_id``: forks take a prefix."""
    return con.execute(
        "SELECT run_id, sample_id, seq FROM events WHERE event_id = ? OR event_id LIKE ? || '%'",
        [event_id, event_id],
    ).fetchall()


def last_planned(con: duckdb.DuckDBPyConnection, sample_id: str) -> dict[str, Any]:
    """The payload of a sample's latest ``sample.planned`` event: a fork keeps its plan index and seed."""
    raw = con.execute(
        "SELECT payload FROM events WHERE sample_id = ? AND type = 'sample.planned' "
        "ORDER BY seq DESC LIMIT 1",
        [sample_id],
    ).fetchall()[0][0]
    return json.loads(raw)


def event_id_at(con: duckdb.DuckDBPyConnection, sample_id: str, seq: int) -> str:
    """The full id of a sample's event at ``seq``, so a fork records the exact event it started from."""
    return con.execute(
        "SELECT event_id FROM events WHERE sample_id = ? AND seq = ?", [sample_id, seq]
    ).fetchall()[0][0]


def failed_calls_with(con: duckdb.DuckDBPyConnection, sample_id: str, error: str) -> list[tuple[str, str]]:
    """(agent, template) of a sample's calls that failed with ``error``, in time order.

    Why: an offline fork lists the requests its change touched (refused with the offline-miss error).
    """
    rows = con.execute(
        "SELECT agent, template FROM llm_calls WHERE sample_id = ? AND error = ? ORDER BY ts",
        [sample_id, error],
    ).fetchall()
    return [(agent, template) for agent, template in rows]
