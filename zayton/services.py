"""Running long-lived services from the command line: signals, a stop event, the API server."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from api.app import ApiSettings, create_app
from api.auth import AuthError
from api.business import BusinessDataError
from api.coefficients import CoefficientError
from api.grading import GradingError
from api.monitoring.errors import MonitoringError
from api.plan import PlanError
from api.registry import RegistryError
from ingest.store import StoreError
from profiles.files import ConfigError
from zayton.localservers import LocalServerError

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service cannot start; the message says why and what to change."""


# Errors that mean "cannot start as configured": one line for the user, no traceback.
USER_ERRORS = (
    ServiceError,
    LocalServerError,
    StoreError,
    ConfigError,
    CoefficientError,
    RegistryError,
    BusinessDataError,
    PlanError,
    GradingError,
    AuthError,
    MonitoringError,
)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``main(stop)``; SIGINT or SIGTERM sets ``stop`` so it can finish cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
    return 0


def report_user_errors(run: Callable[[], int]) -> int:
    """Run a command; errors that mean "cannot start as configured" become one line, exit 1."""
    failed: list[BaseException] = []
    try:
        return run()
    except* USER_ERRORS as group:
        failed.extend(group.exceptions)
    for err in failed:
        sys.stderr.write(f"zayton: {err}\n")
    return 1


def bind(host: str, port: int) -> socket.socket:
    """Bind the API's listening socket up front, so a port in use is a clear, early error."""
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they
    # are TCP, and without that a kept-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as err:
        sock.close()
        raise ServiceError(
            f"cannot listen on {host}:{port} ({err.strerror}); choose another with --port"
        ) from None
    return sock


@contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Hold a lock on ``directory`` so that two processes never share its servers."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceError(f"another {what} is running with {directory}") from None
        yield


async def serve_api(settings: ApiSettings, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve the API on a bound socket until ``stop`` is set."""
    await serve_asgi(create_app(settings), sock, stop)


async def serve_asgi(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve a FastAPI app on a bound socket until ``stop`` is set."""
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    # While it serves, uvicorn takes SIGINT/SIGTERM for itself; afterwards it restores the
    # loop's handlers and raises the signal again. A server that returns on its own was asked to
    # stop, so everything stops with it.
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    stopping = asyncio.create_task(stop.wait(), name="api stop")
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    try:
        await serving
    finally:
        sock.close()
        stop.set()
