"""Two pseudo-terminals joined like a null-modem cable, in place of
``socat pty,raw,echo=0 pty,raw,echo=0``.

Bytes written to one slave device (``/dev/pts/N``) are read from the other: a simulated serial
line between the simulator, on one end, and the gateway on the other. Both are in raw mode with
no echo. A thread relays the bytes between the two master sides, so the pair works from plain
code and beside any event loop::

    with PtyPair() as (simulator_end, gateway_end):
        ...  # open each end as a serial port

The pair keeps each slave open itself, so an end may be opened and closed again while the pair
lives; bytes sent while nobody has the other end open wait there for the next reader, up to
what the terminal buffers hold; beyond that they are lost, as on a line nobody listens to.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import tty
from types import TracebackType

logger = logging.getLogger(__name__)

_CHUNK = 4096


class PtyPair:
    """Two pseudo-terminals whose slave devices (:attr:`paths`) are joined to each other."""

    def __init__(self) -> None:
        self._masters: tuple[int, int] | None = None
        self._slaves: tuple[int, int] | None = None
        self._paths: tuple[str, str] | None = None
        self._wake: tuple[int, int] | None = None
        self._relay: threading.Thread | None = None

    @property
    def paths(self) -> tuple[str, str]:
        """The two slave devices, e.g. ``("/dev/pts/7", "/dev/pts/8")``."""
        if self._paths is None:
            raise RuntimeError("the pseudo-terminal pair is not open")
        return self._paths

    def open(self) -> tuple[str, str]:
        """Create the two pseudo-terminals and start relaying; returns :attr:`paths`."""
        if self._paths is not None:
            raise RuntimeError("the pseudo-terminal pair is already open")
        first, second = os.openpty(), os.openpty()
        self._masters = (first[0], second[0])
        self._slaves = (first[1], second[1])
        for slave in self._slaves:
            tty.setraw(slave)  # raw, no echo: bytes pass as they are
        for master in self._masters:
            os.set_blocking(master, False)
        self._wake = os.pipe()
        self._paths = (os.ttyname(first[1]), os.ttyname(second[1]))
        self._relay = threading.Thread(target=self._run, name="pty relay", daemon=True)
        self._relay.start()
        logger.debug("pseudo-terminals %s and %s joined", *self._paths)
        return self._paths

    def close(self) -> None:
        """Stop relaying and close both pseudo-terminals; their devices disappear."""
        if self._relay is not None and self._wake is not None:
            os.write(self._wake[1], b"\0")
            self._relay.join()
        for fds in (self._masters, self._slaves, self._wake):
            for fd in fds or ():
                os.close(fd)
        self._masters = self._slaves = self._wake = self._paths = None
        self._relay = None

    def __enter__(self) -> tuple[str, str]:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        assert self._masters is not None  # noqa: S101 - set before the thread starts
        assert self._wake is not None  # noqa: S101
        first, second = self._masters
        peer = {first: second, second: first}
        with selectors.DefaultSelector() as selector:
            for fd in (first, second, self._wake[0]):
                selector.register(fd, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fd == self._wake[0]:
                        return
                    try:
                        data = os.read(key.fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError as err:  # not expected while the pair holds both slaves
                        data = b""
                        logger.warning("pseudo-terminal relay: %s", err)
                    if data:
                        _send(peer[key.fd], data)
                    else:
                        logger.warning("pseudo-terminal relay: one side is gone")
                        selector.unregister(key.fd)


def _send(fd: int, data: bytes) -> None:
    try:
        written = os.write(fd, data)
    except BlockingIOError:
        written = 0
    if written < len(data):
        logger.debug("pseudo-terminal full: %d bytes lost", len(data) - written)
