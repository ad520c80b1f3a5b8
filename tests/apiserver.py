"""The API served by uvicorn on a real socket, in a thread of its own, for the length of a block."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from api.app import ApiSettings
from zayton.services import bind, serve_api


@contextmanager
def running_api(settings: ApiSettings) -> Iterator[str]:
    """Serve ``settings`` on 127.0.0.1 (a free port); yields the base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failed: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve_api(settings, sock, stop))
        except BaseException as err:  # noqa: BLE001 - reported to the test below
            failed.append(err)
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="api", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            if failed:
                raise failed[0] from None
            threading.Event().wait(0.05)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        if failed:
            raise failed[0]


def settle(base: str | httpx.URL) -> None:
    """Wait until the server at ``base`` has logged a server error (one more request: it logs
    before it answers the next), so that its traceback is not formatted while pytest formats the
    test's: the ast module of CPython 3.11 is not thread-safe, and the two collide in an
    INTERNALERROR ("AST constructor recursion depth mismatch")."""
    httpx.get(httpx.URL(str(base)).join("/health"))
