"""Shared fixtures: an ingested copy of the example corpus and a run helper on the stub server."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from teacherforge.agents.llm import Endpoint
from teacherforge.graph.config import RunConfig
from teacherforge.graph.runner import RunSummary, generate
from teacherforge.retrieval.ingest import ingest_into
from teacherforge.store.database import connect
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "university"


@pytest.fixture(scope="session")
def ingested_template(tmp_path_factory) -> Path:
    """The example corpus ingested once per session (embedding takes seconds)."""
    path = tmp_path_factory.mktemp("corpus") / "template.duckdb"
    ingest_into(path, [EXAMPLES])
    return path


@pytest.fixture
def db_path(ingested_template, tmp_path) -> Path:
    path = tmp_path / "forge.duckdb"
    shutil.copy(ingested_template, path)
    return path


def run_generation(db: Path, url: str, **config) -> RunSummary:
    """Run the real graph against ``url`` (the stub) and close the database again."""
    cfg = RunConfig.model_validate({"concurrency": 4, **config})
    con = connect(db)
    create_views(con)
    log = EventLog(con)
    method = "json_mode" if cfg.structured_output == "json_mode" else "json_schema"
    endpoint = Endpoint(url, "stub-model", "test-key", method)
    try:
        return asyncio.run(generate(con, log, cfg, endpoint, endpoint))
    finally:
        log.close()
        con.close()


def query(db: Path, sql: str, *args) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, list(args)).fetchall()
    finally:
        con.close()
