"""The vLLM command for GPU boxes.

vLLM already speaks the OpenAI API including ``response_format: json_schema`` (its default
structured-output backend is "auto"), so unlike the CPU path no compatibility layer is needed:
we only build the command line. ``--guided-decoding-backend`` is deliberately not emitted: vLLM
removed the ``--guided-decoding-*`` flags (vllm-project/vllm#22772) in favour of
``--structured-outputs-config``, and the default backend is what we want anyway.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_MODEL = "google/gemma-3-12b-it"


class VllmNotInstalledError(RuntimeError):
    """Raised when the ``vllm`` executable is missing (it is a GPU-only extra)."""


@dataclass(frozen=True)
class VllmCommand:
    """Everything needed to start ``vllm serve``; ``argv()`` is pure so it can be unit-tested."""

    model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    port: int = 8000
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.9
    dtype: str = "bfloat16"
    served_model_name: str | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)
    executable: str = "vllm"

    def argv(self) -> list[str]:
        """The full argument vector, executable first."""
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len <= 0 or not 0 < self.port < 65536:
            raise ValueError("max_model_len must be positive and port in 1..65535")
        argv = [
            self.executable, "serve", self.model,
            "--host", self.host,
            "--port", str(self.port),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
        ]  # fmt: skip
        if self.served_model_name:
            argv += ["--served-model-name", self.served_model_name]
        return argv + list(self.extra_args)

    @property
    def url(self) -> str:
        """The OpenAI base URL clients should use."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_id(self) -> str:
        """The model name clients must send (vLLM serves under the model path unless renamed)."""
        return self.served_model_name or self.model


def require_vllm(executable: str = "vllm") -> str:
    """Path of the vllm executable, or a one-line actionable error."""
    path = shutil.which(executable)
    if path is None:
        raise VllmNotInstalledError(
            f"'{executable}' not found on PATH: vLLM is GPU-only, install it with "
            "`pip install 'teacherforge[gpu]'` (or `pip install vllm`) on a CUDA machine"
        )
    return path


def exec_vllm(command: VllmCommand) -> None:
    """Replace this process with ``vllm serve`` (for CLI use: signals go straight to vLLM)."""
    argv = command.argv()
    argv[0] = require_vllm(command.executable)
    os.execv(argv[0], argv)
