"""The Ray cluster a run's workers live on: a local one started and stopped by ``run --workers N``, or an
existing one joined with ``run --ray-address ADDR``.

Why a module of its own: Ray is an optional extra (``pip install "teacherforge[ray]"``), so it is
imported here and only when asked for, and every way of not getting a cluster (Ray missing, nothing
at the address, an address that does not answer as Ray) ends in one line that says what to do.
A local cluster binds to 127.0.0.1 only: it is this machine's processes, not a service.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from teacherforge.graph.runner import RunError

INSTALL_HINT = 'pip install "teacherforge[ray]"'
CONNECT_CHECK_S = 3.0  # a TCP connect to the address first: a wrong one fails in seconds, not minutes
JOIN_TIMEOUT_S = 60.0  # something answers at the address but it is not a Ray head: ray.init would hang
OBJECT_STORE_BYTES = 256 * 1024**2  # a local cluster ships chunk tables and event batches, not tensors
LOOPBACK = "127.0.0.1"


class ClusterError(RunError):
    """No cluster to run on; the message is one line that says why and what to do."""


@dataclass
class Cluster:
    """A connected Ray driver: the module, where it is, and what it offers."""

    ray: ModuleType
    address: str
    local: bool
    nodes: int
    cpus: float
    owned: bool = True  # started or joined by us, so ours to shut down

    def describe(self) -> str:
        where = "local Ray cluster on 127.0.0.1" if self.local else f"Ray cluster at {self.address}"
        return f"{where}: {self.nodes} node(s), {self.cpus:g} CPU(s)"


def require_ray() -> None:
    """A one-line error naming the extra when Ray is missing; does not import it (see ``_quiet_env``)."""
    if importlib.util.find_spec("ray") is None:
        raise ClusterError(f"--workers and --ray-address need Ray, which is not installed: {INSTALL_HINT}")


def import_ray(local: bool) -> ModuleType:
    """Ray, imported after its environment is set (it reads some settings once, at import)."""
    require_ray()
    _quiet_env(local)
    import ray

    return ray


def _quiet_env(local: bool) -> None:
    """Settings that must be in the environment before Ray is imported (its child processes inherit them).

    No usage statistics are sent, and a local cluster's processes listen on 127.0.0.1: Ray would
    otherwise advertise the machine's routable address (it treats 127.0.0.1 as "this host").
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (also ``ray://host:port``) to its parts; a one-line error for anything else."""
    text = address.strip().removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(
            f"--ray-address '{address}': expected HOST:PORT of a Ray head, such as 10.0.0.5:6379 "
            "(the address `ray start --head` prints)"
        )
    return host.strip("[]"), int(port)


def check_address(address: str, timeout_s: float = CONNECT_CHECK_S) -> None:
    """Fail in seconds when nothing listens at ``address`` (ray.init would retry for minutes)."""
    if address == "auto":
        return
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"--ray-address {address}: no Ray head answers there ({reason}); start one with "
            "`ray start --head` on that machine, or check the address it printed"
        ) from None


@contextlib.contextmanager
def _watchdog(address: str, timeout_s: float) -> Iterator[None]:
    """If joining takes longer than ``timeout_s``, say so in one line and leave with exit code 2.

    Why leave: ray.init cannot be interrupted, and against a port that accepts connections but is not
    a Ray head it retries for good. Nothing has been written when this runs (the cluster is joined
    before the database is opened), so leaving at once loses nothing.
    """
    done = threading.Event()

    def expire() -> None:
        if not done.wait(timeout_s):
            sys.stderr.write(
                f"error: --ray-address {address}: something listens there but did not answer as a Ray "
                f"head within {timeout_s:g} s; check the address `ray start --head` printed\n"
            )
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=expire, name="ray-join-watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _init_kwargs() -> dict[str, Any]:
    return {
        "include_dashboard": False,
        "log_to_driver": False,  # workers' logs stay in Ray's session folder; the run prints its own lines
        "logging_level": logging.ERROR,
        "configure_logging": False,
    }


def connect(workers: int | None, address: str | None, join_timeout_s: float = JOIN_TIMEOUT_S) -> Cluster:
    """Start a local cluster with ``workers`` CPUs (``address`` None) or join the one at ``address``."""
    local = address is None
    if not local:
        check_address(address)
    ray = import_ray(local)
    if ray.is_initialized():  # a caller (a test, a notebook) already holds a driver: use it as it is
        cluster = _describe(ray, address or "existing", local=False)
        cluster.owned = False
        return cluster
    try:
        if local:
            ray.init(
                address="local",
                num_cpus=max(1, workers or 1),
                object_store_memory=OBJECT_STORE_BYTES,
                _node_ip_address=LOOPBACK,
                **_init_kwargs(),
            )
        else:
            with _watchdog(address, join_timeout_s):
                ray.init(address=address, **_init_kwargs())
    except ClusterError:
        raise
    except Exception as exc:  # Ray's own errors are long; keep the first line
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        where = "a local Ray cluster" if local else f"the Ray cluster at {address}"
        raise ClusterError(f"could not start or join {where}: {first}{_auth_hint(local)}") from None
    return _describe(ray, address or "local", local)


def _auth_hint(local: bool) -> str:
    """Ray sends its token to an explicit address only when told to (RAY_AUTH_MODE=token)."""
    if local or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return (
        "; if the cluster uses Ray's token authentication (the default), set RAY_AUTH_MODE=token and "
        "give this machine the head's token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
    )


def _describe(ray: ModuleType, address: str, local: bool) -> Cluster:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = float(ray.cluster_resources().get("CPU", 0))
    return Cluster(ray, address, local, len(nodes), cpus)


def disconnect(cluster: Cluster) -> None:
    """Stop the local cluster (its processes end with it) or leave the joined one running."""
    if not cluster.owned:
        return
    with contextlib.suppress(Exception):
        cluster.ray.shutdown()


@contextlib.contextmanager
def ray_cluster(
    workers: int | None, address: str | None, notify: Callable[[str], None] = print
) -> Iterator[Cluster]:
    """``connect`` for the duration of a run, then ``disconnect``."""
    cluster = connect(workers, address)
    notify(cluster.describe())
    try:
        yield cluster
    finally:
        disconnect(cluster)
