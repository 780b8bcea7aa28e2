"""Stopping a run on purpose: Ctrl-C, a budget cap, or an endpoint that never answers.

A stop is a request, not an exception: the runner stops taking new samples and lets the ones in
flight end, so every sample is either finished or cleanly unfinished (restarted by ``--resume``).
Only Ctrl-C has a grace period after which in-flight samples are abandoned; a second Ctrl-C leaves
at once, which is safe because the event log is consistent at every moment (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_EVENTS = {
    "interrupted": "run.interrupted",
    "budget_reached": "run.budget_reached",
    "aborted": "run.aborted",
}


class StopControl:
    """Why the run should stop taking samples; the first request wins, later ones are ignored."""

    def __init__(self, grace_s: float | None = 60.0):
        self.reason: str | None = None
        self.detail: dict[str, Any] = {}
        self.grace_s = grace_s  # Ctrl-C only: how long in-flight samples may still run
        self._event: asyncio.Event | None = None

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def request(self, reason: str, **detail: Any) -> None:
        if reason not in STOP_EVENTS:
            raise ValueError(f"unknown stop reason {reason!r}")
        if self.reason is None:
            self.reason, self.detail = reason, detail
            if self._event is not None:
                self._event.set()

    async def wait(self) -> str:
        if self._event is None:
            self._event = asyncio.Event()
        if self.reason is not None:
            self._event.set()
        await self._event.wait()
        return self.reason or ""


@contextmanager
def sigint_stops(
    control: StopControl, notify: Callable[[str], None], hard_exit: Callable[[], None]
) -> Iterator[None]:
    """First SIGINT: ask the running loop to stop taking samples. Second: ``hard_exit()`` at once.

    Installed with ``signal.signal`` (not ``loop.add_signal_handler``) so the second Ctrl-C works even
    while the loop is busy; the first only schedules the request on the loop, thread-safely.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    count = 0

    def handler(signum, frame) -> None:
        nonlocal count
        count += 1
        if count == 1:
            loop.call_soon_threadsafe(lambda: control.request("interrupted", signal="SIGINT"))
            grace = f"up to {control.grace_s:g}s" if control.grace_s is not None else "no time limit"
            notify(f"stopping: no new samples; in-flight ones may finish ({grace}); Ctrl-C again to quit now")
        else:
            hard_exit()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_now(last_words: Callable[[], None], code: int = 130, timeout_s: float = 3.0) -> None:
    """Run ``last_words`` (record and flush) on a helper thread for at most ``timeout_s``, then leave.

    A thread, because a signal handler may interrupt the main thread while it holds the event log's
    lock; ``os._exit`` because the asyncio loop and its worker threads must not be waited for.
    """
    import os

    worker = threading.Thread(target=last_words, name="last-words", daemon=True)
    worker.start()
    worker.join(timeout_s)
    os._exit(code)
