"""A kept embedded server (``run --keep-server``), found again by later runs instead of restarting.

The state file records the URL, model and GGUF path of a server left running. A later ``run``
without ``--llm-url`` reuses it if it still answers ``/v1/models`` and serves the same GGUF file;
otherwise the file is stale and a fresh server is started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx


def state_file() -> Path:
    root = Path(os.environ.get("TEACHERFORGE_CACHE", Path.home() / ".cache" / "teacherforge"))
    return root / "kept-server.json"


@dataclass(frozen=True)
class KeptServer:
    url: str
    model: str
    model_path: str
    pid: int


def remember(server: KeptServer) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(server)))


def find(model_path: str) -> KeptServer | None:
    """The kept server for ``model_path`` if it is alive, else None (and a stale file is removed)."""
    path = state_file()
    try:
        kept = KeptServer(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if kept.model_path != model_path:
        return None
    try:
        alive = httpx.get(f"{kept.url}/models", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        alive = False
    if not alive:
        path.unlink(missing_ok=True)
        return None
    return kept
