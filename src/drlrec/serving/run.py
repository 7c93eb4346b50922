"""Local service processes for `drlrec serve` and the tests: a free port, and a private redis-server on 127.0.0.1
(no persistence), stopped by PID."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from drlrec.errors import DrlrecError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProcess:
    """A redis-server child process."""

    process: subprocess.Popen
    port: int
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(port: int | None = None, timeout: float = 10.0) -> RedisProcess:
    """Start `redis-server` on 127.0.0.1 (a free port unless given), no persistence; wait until it answers."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise DrlrecError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="drlrec-redis-")
    process = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir,
         "--protected-mode", "yes", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    handle = RedisProcess(process, port, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DrlrecError(f"redis-server exited with code {process.returncode} (port {port} busy?)")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return handle
        time.sleep(0.05)
    handle.stop()
    raise DrlrecError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisProcess]:
    handle = start_redis(port)
    try:
        yield handle
    finally:
        handle.stop()
