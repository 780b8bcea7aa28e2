"""Can this CPU run the installed llama.cpp build? Read from the record scripts/llama_build.sh leaves.

Why: a llama.cpp compiled for other CPU features does not fail with an error, it dies with SIGILL
the moment it reaches an instruction this CPU lacks. scripts/llama_build.sh writes
``$VENV/share/teacherforge/llama-build.json`` (``variant``, ``requires_cpu_flags``); comparing it
with /proc/cpuinfo tells the user before the server starts (``LocalServer.start``) and in
``teacherforge doctor``, with the one command that fixes it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CPUINFO = Path("/proc/cpuinfo")
REBUILD = "bash scripts/install.sh"

Verdict = Literal["fits", "unknown", "maybe", "unfit"]


@dataclass(frozen=True)
class LlamaBuild:
    """What scripts/llama_build.sh recorded about the llama.cpp wheel it installed."""

    variant: str
    requires_cpu_flags: tuple[str, ...]


@dataclass(frozen=True)
class BuildFit:
    """``unfit`` means it will die with SIGILL here; ``maybe``/``unknown`` that nobody can tell."""

    verdict: Verdict
    detail: str
    missing: tuple[str, ...] = ()


def record_path(prefix: str | Path | None = None) -> Path:
    """Where scripts/llama_build.sh writes the record: ``<venv>/share/teacherforge/llama-build.json``."""
    return Path(prefix if prefix is not None else sys.prefix) / "share" / "teacherforge" / "llama-build.json"


def read_record(path: Path | None = None) -> LlamaBuild | None:
    """The record, or None when there is none (llama.cpp installed some other way); ValueError if garbled."""
    path = path or record_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("variant"), str):
        raise ValueError(f"{path}: no 'variant' in it")
    return LlamaBuild(data["variant"], tuple(str(data.get("requires_cpu_flags") or "").split()))


def cpu_flags_text(cpuinfo: Path = CPUINFO) -> str | None:
    """The text after ``flags:`` on the first flags line, exactly as llama_build.sh reads it."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.rstrip("\n").split(":", 2)[1] if ":" in line else ""
    except OSError:
        return None
    return None


def native_variant(flags_text: str) -> str:
    """``native-<12 hex>``: llama_build.sh's key for a build made for exactly these CPU flags.

    The script hashes ``printf '%s' "$flags" | tr ' ' '\\n' | sort`` (every line newline-ended);
    the C locale's byte order is assumed, so under another locale a match can be missed (``maybe``).
    """
    lines = sorted(flags_text.split(" "))
    return "native-" + hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()[:12]


def assess(build: LlamaBuild | None, flags_text: str | None, machine: str | None = None) -> BuildFit:
    """Whether this CPU (``flags_text`` from /proc/cpuinfo, ``machine`` as uname -m) runs ``build``."""
    machine = machine or platform.machine()
    if build is None:
        return BuildFit("unknown", "no llama-build.json: built outside scripts/install.sh; flags unknown")
    variant = build.variant
    if variant.endswith("-native") and not variant.startswith("native-"):  # e.g. aarch64-native
        arch = variant.removesuffix("-native")
        if arch != machine:
            return BuildFit("unfit", f"build {variant} was made for {arch}, this machine is {machine}")
        return BuildFit("fits", f"build {variant} (made on this architecture; CPU features not recorded)")
    if machine != "x86_64":
        return BuildFit("unfit", f"build {variant} is for x86-64, this machine is {machine}")
    if flags_text is None:
        return BuildFit("unknown", f"build {variant}; cannot read {CPUINFO} to compare CPU flags")
    have = set(flags_text.split())
    missing = tuple(f for f in build.requires_cpu_flags if f not in have)
    if missing:
        return BuildFit(
            "unfit",
            f"build {variant} needs CPU flags this CPU lacks: {' '.join(missing)} (it would die with SIGILL)",
            missing,
        )
    if variant.startswith("native-"):
        here = native_variant(flags_text)
        if here != variant:
            return BuildFit(
                "maybe",
                f"native build {variant} was made for a CPU with other flags (this CPU: {here}); "
                "it may die with SIGILL",
            )
        return BuildFit("fits", f"native build {variant} made for this CPU")
    return BuildFit("fits", f"build {variant}; this CPU has its flags ({' '.join(build.requires_cpu_flags)})")


def this_machine(record: Path | None = None, cpuinfo: Path = CPUINFO) -> BuildFit:
    """``assess`` for the installed build on this machine; a garbled record counts as unknown."""
    try:
        build = read_record(record)
    except ValueError as exc:
        return BuildFit("unknown", str(exc))
    return assess(build, cpu_flags_text(cpuinfo))
