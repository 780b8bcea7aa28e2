"""Shared by the UI tests: one stub run with accepted, revised and rejected samples, and a served UI."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import query, run_generation
from scripted import GoodModel, failing_critique
from stub_server import StubServer

pytest.importorskip("fastapi", reason="teacherforge ui needs FastAPI")
from teacherforge.ui.server import BackgroundServer  # noqa: E402
from teacherforge.ui.settings import UiSettings  # noqa: E402

PLAN = {"min_user_turns": 2, "max_user_turns": 2, "hard_negative_rate": 0.0, "multi_source_rate": 0.0}


def _critique(body: dict, n: int) -> dict | None:
    """The first critique fails once (a revision, then accepted); villagers always fail (rejected)."""
    text = " ".join(m["content"] for m in body["messages"])
    return failing_critique(1) if n == 0 or "local villager" in text else None


def make_run(db: Path) -> str:
    """Generate 6 samples on the stub into ``db``; returns the run id."""
    with StubServer(GoodModel({"Critique": _critique})) as stub:
        summary = run_generation(db, stub.url, n=6, seed=5, max_revisions=1, plan=PLAN)
    assert summary.accepted >= 2 and summary.rejected >= 1, summary
    return summary.run_id


def sample_ids(db: Path, status: str) -> list[str]:
    return [r[0] for r in query(db, "SELECT sample_id FROM samples WHERE status = ? ORDER BY 1", status)]


@contextlib.contextmanager
def served(db: Path, **options) -> Iterator[httpx.Client]:
    """The real server on a free loopback port, and a client for it; stopped afterwards."""
    settings = UiSettings(db=db, port=0, reviewer="tester", land_interval_s=0.2, **options)
    with BackgroundServer(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.settings = settings  # type: ignore[attr-defined]
        yield client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)
