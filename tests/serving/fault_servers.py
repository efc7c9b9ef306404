"""Real backends to break on purpose: own Redis / PostgreSQL on random ports, a black-hole
TCP proxy, a SQLite file locked by a second process. Never the shared services.

Every wait is bounded by a named, generous limit (START_LIMIT_S, STOP_LIMIT_S).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

START_LIMIT_S = 60.0  # a server on a loaded 2-core machine may take this long to come up
STOP_LIMIT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {limit_s:g} s")


def listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


class RedisServer:
    """`redis-server` on a random port, no persistence; `pause()` hangs it (SIGSTOP)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: listening(self.port), START_LIMIT_S, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        self.proc.wait(timeout=STOP_LIMIT_S)


class PostgresServer:
    """A throw-away cluster (initdb + pg_ctl) on a random port, trust auth, database `test`."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="intent-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        # PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [
                *self._as,
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=START_LIMIT_S * 2,
        )
        self.start()
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "test"],
            check=True,
            capture_output=True,
            timeout=START_LIMIT_S,
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as, "pg_ctl", "-D", str(self.data), "-w", "-t", str(int(START_LIMIT_S)), *args],
            check=True,
            capture_output=True,
            timeout=START_LIMIT_S * 2,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c shared_buffers=16MB -c max_connections=40"
        )
        self._ctl("-o", options, "-l", str(self.dir / "log"), "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class BlackHoleProxy:
    """A TCP proxy to `127.0.0.1:upstream`; `black_hole = True` keeps every connection open
    but forwards nothing either way (a hung server or a dropped network path)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.black_hole = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.black_hole:  # accepted, never answered
                self._sockets.append(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if self.black_hole:
                continue  # swallowed
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


_LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
if sys.argv[2] == "exclusive":
    con.execute("PRAGMA locking_mode=EXCLUSIVE")
con.execute("BEGIN EXCLUSIVE")
if sys.argv[2] == "exclusive":
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
con.execute("ROLLBACK")
"""


@contextlib.contextmanager
def locked_sqlite(path: Path, mode: str = "write", hold_s: float = 120.0) -> Iterator[None]:
    """A second process holding `path` locked: `write` blocks writers (BEGIN EXCLUSIVE),
    `exclusive` blocks readers too (locking_mode=EXCLUSIVE). Released on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path), mode, str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "locked":
            raise RuntimeError(f"the lock holder did not lock {path}")
        yield
    finally:
        proc.kill()
        proc.wait(timeout=STOP_LIMIT_S)


class LoopLag:
    """Measures the event loop's worst stall: a ticker that should wake every `tick_s`."""

    def __init__(self, tick_s: float = 0.005) -> None:
        self.tick_s = tick_s
        self.worst_s = 0.0
        self._running = True

    async def run(self) -> None:
        import asyncio

        while self._running:
            before = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            self.worst_s = max(self.worst_s, time.perf_counter() - before - self.tick_s)

    def stop(self) -> None:
        self._running = False
