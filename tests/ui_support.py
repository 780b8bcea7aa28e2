"""Shared by the UI tests: one stub run with accepted, revised and rejected samples, and a served UI."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
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


def _critique_script() -> Callable[[dict, int], dict | None]:
    """Villagers always fail (rejected); the first critique of any other sample fails once (a revision,
    then accepted). Counting only non-villager critiques keeps that true whichever sample the stub
    happens to see first when samples run concurrently."""
    lock = threading.Lock()
    failed_once = False

    def critique(body: dict, n: int) -> dict | None:
        nonlocal failed_once
        if "local villager" in " ".join(m["content"] for m in body["messages"]):
            return failing_critique(1)
        with lock:
            first, failed_once = not failed_once, True
        return failing_critique(1) if first else None

    return critique


def make_run(db: Path) -> str:
    """Generate 6 samples on the stub into ``db``; returns the run id."""
    with StubServer(GoodModel({"Critique": _critique_script()})) as stub:
        summary = run_generation(db, stub.url, n=6, seed=5, max_revisions=1, plan=PLAN)
    assert summary.accepted >= 2 and summary.rejected >= 1, summary
    revised = query(db, "SELECT count(*) FROM samples WHERE status = 'accepted' AND revisions > 0")[0][0]
    assert revised >= 1, "the stub run should leave one accepted sample that was revised once"
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
