"""What one ``teacherforge ui`` process serves and how: the database, the bind, the token, the reviewer.

Why a bind check here: the UI shows every document and prompt and writes to the log, so anything
other than the loopback interface needs a token (docs/ui.md); the check runs before a socket opens.
"""

from __future__ import annotations

import getpass
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class UnsafeBind(ValueError):
    """A bind address other than loopback without a token: refused, with the way out in the message."""


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container: still say it was a person
        return "reviewer"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise UnsafeBind(
            f"--host {host} would let other machines read every document and prompt and write reviews; "
            "add --token SECRET (or set TEACHERFORGE_UI_TOKEN), or bind to 127.0.0.1"
        )


@dataclass
class UiSettings:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    reviewer: str = field(default_factory=default_reviewer)
    price_in: float = 0.0  # USD per 1M tokens, for the dashboard's cost
    price_out: float = 0.0
    land_interval_s: float = 2.0
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # per process, in every form

    def __post_init__(self) -> None:
        check_bind(self.host, self.token)
