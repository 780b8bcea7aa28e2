"""Serving the UI with uvicorn: in the foreground for the CLI, or in a thread for tests and benchmarks.

Why a thread helper here: the tests and ``evals/bench/ui_pages.py`` must drive the real server (real
sockets, the real middleware), started on a free port and stopped cleanly afterwards.
"""

from __future__ import annotations

import threading
import time

import uvicorn

from teacherforge.ui.app import create_app
from teacherforge.ui.settings import UiSettings


def make_server(settings: UiSettings, land_in_background: bool = True) -> uvicorn.Server:
    app = create_app(settings, land_in_background)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="on", server_header=False)  # fmt: skip
    return uvicorn.Server(config)


def serve(settings: UiSettings) -> None:
    make_server(settings).run()


class BackgroundServer:
    """``with BackgroundServer(settings) as url:`` serves (port 0: on a free port) until the block ends."""

    def __init__(self, settings: UiSettings, land_in_background: bool = True, timeout_s: float = 30.0):
        self.server = make_server(settings, land_in_background)
        self.thread = threading.Thread(target=self.server.run, name="ui-server", daemon=True)
        self.timeout_s = timeout_s
        self.url = ""

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the UI server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout_s)
