"""Why a child process died, in words a user can act on.

A bare ``exited with code -4`` says nothing to someone who has never read signal(7). Every place
that reports a dead child (the embedded llama.cpp server, ``teacherforge doctor``'s import probe)
names the signal, what it usually means for this project, what to do, and the last lines the
child printed.
"""

from __future__ import annotations

import signal
from pathlib import Path

DOCTOR = "run 'teacherforge doctor'"

# signal -> (short name, what it usually means here, what to do); "" when there is nothing to add
MEANINGS: dict[int, tuple[str, str, str]] = {
    signal.SIGILL: (
        "illegal instruction",
        "this llama.cpp build uses CPU instructions this machine lacks",
        DOCTOR,
    ),
    signal.SIGKILL: (
        "killed, usually out of memory",
        "the kernel's OOM killer ends the biggest process when RAM runs out (`dmesg | tail` says so)",
        "free memory, or use a smaller model or a smaller --max-model-len",
    ),
    signal.SIGSEGV: ("segmentation fault", "a crash inside llama.cpp", DOCTOR),
    signal.SIGABRT: (
        "aborted",
        "llama.cpp stopped on a failed internal check, often an unsupported or damaged GGUF file",
        "check the model file; the log below names the failed check",
    ),
    signal.SIGBUS: (
        "bus error",
        "the model file was changed or truncated while in use, or its disk is full",
        "check the model file",
    ),
    signal.SIGFPE: ("arithmetic error", "a crash inside llama.cpp", DOCTOR),
    signal.SIGTERM: ("terminated", "stopped from outside (kill, a service manager or a shutdown)", ""),
    signal.SIGINT: ("interrupted", "stopped from outside (Ctrl-C or kill -INT)", ""),
}


def signal_name(number: int) -> str:
    """``SIGILL`` for 4; ``signal 99`` for a number this platform has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_reason(returncode: int) -> tuple[str, str]:
    """(what happened, what to do) for a ``Popen.returncode``: negative numbers are signals."""
    if returncode >= 0:
        return f"exited with code {returncode}", ""
    number = -returncode
    name = signal_name(number)
    if number in MEANINGS:
        short, meaning, advice = MEANINGS[number]
        return f"died with {name} ({short}): {meaning}", advice
    try:
        description = signal.strsignal(number)
    except ValueError:
        description = None
    return (f"died with {name} ({description.lower()})" if description else f"died with {name}"), ""


def describe_exit(
    returncode: int, log_tail: str = "", what: str = "local model server", log_path: Path | None = None
) -> str:
    """The full message: ``<what> died with SIGILL (...): ...; run '...'. Last lines of its log: ...``."""
    reason, advice = exit_reason(returncode)
    message = f"{what} {reason}" + (f"; {advice}" if advice else "")
    return f"{message}. {log_excerpt(log_tail, log_path)}"


def log_excerpt(log_tail: str, log_path: Path | None = None) -> str:
    """``Last lines of its log (path):`` and the lines, or a note that the child printed nothing."""
    where = f" ({log_path})" if log_path is not None else ""
    if not log_tail.strip():
        return f"Its log{where} is empty."
    return f"Last lines of its log{where}:\n{log_tail.rstrip()}"
