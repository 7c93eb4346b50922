"""`drlrec ui`: the MLflow UI and the Prefect server (API + UI) on free 127.0.0.1 ports, until Ctrl-C.

    with running_uis(params) as uis:        # both answer their health checks when this returns
        print(uis.mlflow_url, uis.prefect_url)

The Prefect UI asks its API at the address in `PREFECT_UI_API_URL`, which defaults to port 4200: on any
other port the dashboard says "Can't connect to Server API at http://127.0.0.1:4200/api" and shows no
deployments. So the server is started with `PREFECT_UI_API_URL` (and `PREFECT_API_URL`, for clients in its
environment) set to its own port. Anyone who starts `prefect server start --port P` by hand needs the same:
`PREFECT_UI_API_URL=http://127.0.0.1:P/api`. Each server runs in its own process group and is stopped by
its PID (SIGTERM to the group, SIGKILL after a grace period); nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drlrec.errors import DrlrecError

HOST = "127.0.0.1"


@dataclass
class Server:
    """One server child process (its own process group) and the URL that answers when it is up."""

    name: str
    process: subprocess.Popen
    url: str
    health: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the server's process group (its PID), SIGKILL after `grace` seconds."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(grace)


@dataclass
class UIs:
    mlflow: Server
    prefect: Server
    servers: list[Server] = field(default_factory=list)

    @property
    def mlflow_url(self) -> str:
        return self.mlflow.url

    @property
    def prefect_url(self) -> str:
        return self.prefect.url

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect.url}/api"


def _bin(name: str) -> str:
    """The console script beside this interpreter (the project venv's), else the one on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def _start(name: str, command: list[str], url: str, health: str, env: dict[str, str], log: Path) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(name, process, url, health, log)


def _wait(server: Server, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DrlrecError(f"the {server.name} server exited with code {server.process.returncode} (log: {server.log})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.health, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise DrlrecError(f"the {server.name} server did not answer {server.health} within {timeout:.0f} s (log: {server.log})")


def start_uis(tracking_uri: str, mlflow_port: int = 0, prefect_port: int = 0, logs: Path = Path("artifacts/ui"),
              timeout: float = 120.0) -> UIs:
    """Start both servers on 127.0.0.1 (port 0: a free one) and wait until both answer."""
    from drlrec.serving.run import free_port
    from drlrec.settings import apply_offline_env

    apply_offline_env()
    mlflow_port = mlflow_port or free_port(HOST)
    prefect_port = prefect_port or free_port(HOST)
    if mlflow_port == prefect_port:
        raise DrlrecError(f"--mlflow-port and --prefect-port are both {mlflow_port}")
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))  # the project's Prefect database (git-ignored)
    prefect_url = f"http://{HOST}:{prefect_port}"
    env.update({
        "PREFECT_UI_API_URL": f"{prefect_url}/api",  # what the browser's UI calls (default: port 4200)
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
    })
    servers: list[Server] = []
    try:
        servers.append(_start(
            "MLflow", [_bin("mlflow"), "ui", "--backend-store-uri", tracking_uri, "--host", HOST, "--port", str(mlflow_port)],
            f"http://{HOST}:{mlflow_port}", f"http://{HOST}:{mlflow_port}/health", env, logs / "mlflow.log",
        ))
        servers.append(_start(
            "Prefect", [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(prefect_port)],
            prefect_url, f"{prefect_url}/api/health", env, logs / "prefect.log",
        ))
        for server in servers:
            _wait(server, timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return UIs(servers[0], servers[1], servers)


@contextlib.contextmanager
def running_uis(tracking_uri: str, **kwargs) -> Iterator[UIs]:
    uis = start_uis(tracking_uri, **kwargs)
    try:
        yield uis
    finally:
        for server in uis.servers:
            server.stop()


def serve_uis(tracking_uri: str, mlflow_port: int = 0, prefect_port: int = 0, logs: Path = Path("artifacts/ui")) -> int:
    """`drlrec ui`: start both, print the URLs, wait for Ctrl-C (or SIGTERM), stop both by PID."""
    stop = {"now": False}

    def on_signal(signum, frame) -> None:
        stop["now"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with running_uis(tracking_uri, mlflow_port=mlflow_port, prefect_port=prefect_port, logs=logs) as uis:
            print(
                f"MLflow UI:   {uis.mlflow_url}   (runs and the model registry of {tracking_uri})\n"
                f"Prefect UI:  {uis.prefect_url}   (flow runs, deployments; its API: {uis.prefect_api_url})\n"
                f"To register the scheduled deployments with this server, in another shell:\n"
                f"  PREFECT_API_URL={uis.prefect_api_url} .venv/bin/drlrec deploy\n"
                f"Server logs: {logs}/. Ctrl-C stops both (PIDs {uis.mlflow.pid}, {uis.prefect.pid}).",
                flush=True,
            )
            while not stop["now"]:
                for server in uis.servers:
                    if server.process.poll() is not None:
                        raise DrlrecError(f"the {server.name} server exited with code {server.process.returncode} (log: {server.log})")
                time.sleep(0.5)
            print("drlrec ui: stopping both servers", flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
