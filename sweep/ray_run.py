"""Sweep points as Ray tasks: one task per point, one CPU each, rows taken (written, shown) as they finish.

Ray is an optional extra (`pip install "mapsolve[ray]"`). Every node of the cluster needs mapsolve installed at the
driver's version (and the same OR-Tools): a point's row must not depend on which machine solved it, so the first
thing run on the cluster is a check of both versions, refused with one line when they differ. Tasks receive the
base instance as a document, never a path, so workers need no shared file system.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Callable


class RayError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or its nodes run another mapsolve: one line."""


def versions() -> dict:
    """mapsolve's and OR-Tools' versions in this process (compared between the driver and a Ray worker)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("mapsolve", "ortools"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _authenticated(address: str) -> None:
    """Environment for Ray, set before it loads (never overriding the user's): for an existing cluster, token
    authentication when this machine has a token (Ray >= 2.5x
    clusters require one by default, and a driver does not send ~/.ray/auth_token unless told to)."""
    if address != "local" and "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address must answer a TCP connection: Ray itself retries a dead address
    for minutes before it gives up."""
    if address in ("local", "auto"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayError(f"--ray {address}: give HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayError(f"--ray {address}: nothing answers there ({exc.strerror or exc}); is the head node "
                       f"started (`ray start --head --port {port}`)?") from None


def connect(address: str, local_cpus: int | None = None):
    """ray, initialised: "local" starts a Ray instance for this run (`local_cpus` CPUs, default the machine's),
    anything else is an existing cluster's address ("auto", "HOST:6379" or "ray://HOST:10001")."""
    _reachable(address)
    _authenticated(address)
    try:
        import ray
    except ImportError:
        raise RayError("--ray needs Ray: pip install \"mapsolve[ray]\" (on every machine of the cluster)") from None
    # Ray's note that a local instance uses token authentication is not news to a sweep's user (stderr stays
    # for mapsolve's one-line messages)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        if address == "local":
            ray.init(address="local", num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)   # "local": a new instance, even beside a running cluster
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:   # ConnectionError, ValueError, RuntimeError: Ray's own words, on one line
        raise RayError(f"--ray {address}: cannot connect: {' '.join(str(exc).split())[:300]}") from None
    return ray


@contextlib.contextmanager
def _signals_as_a_flag():
    """Ctrl-C and SIGTERM set a flag while Ray waits: an exception raised by a handler inside Ray's compiled wait
    surfaces as a SystemError and a traceback, not as the interrupt it is."""
    stop = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run_on_ray(address: str, tasks: list[tuple[str, tuple]], solve: Callable[..., dict],
               take: Callable[[str, dict], None], local_cpus: int | None = None) -> None:
    """Run solve(*args) for every (point id, args) on the cluster at `address`, calling take(id, row) as each
    finishes (in the order they finish). Ctrl-C cancels what is still running; finished rows are already kept."""
    ray = connect(address, local_cpus)
    try:
        theirs = ray.get(ray.remote(num_cpus=0)(versions).remote())
        mine = versions()
        if theirs != mine:
            raise RayError(f"--ray {address}: the cluster runs {theirs}, this machine {mine}: install the same "
                           f"mapsolve and OR-Tools on every node (a row must not depend on where it was solved)")
        remote = ray.remote(num_cpus=1, max_retries=1)(solve)
        refs = {remote.remote(*args): pid for pid, args in tasks}
        pending = list(refs)
        with _signals_as_a_flag() as stop:
            while pending and not stop.is_set():
                done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
                for ref in done:
                    try:
                        row = ray.get(ref)
                    except Exception as exc:   # a worker died (out of memory, node lost): the point's row says so
                        row = {"status": "ERROR", "error": f"Ray task failed: {' '.join(str(exc).split())[:300]}"}
                    take(refs[ref], row)
        if pending:   # interrupted: what is still running is cancelled, every finished row is already kept
            for ref in pending:
                ray.cancel(ref, force=True)
            raise KeyboardInterrupt
    finally:
        ray.shutdown()   # this driver's connection (and the instance, when "local" started it)
