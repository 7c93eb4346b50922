"""Fault tests under load: Redis killed, a champion promoted in the registry, the API killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_support import AUTH, PROJECT_ROOT, TOKEN, ServerThread, make_params, write_params_yaml

pytestmark = pytest.mark.filterwarnings("ignore")
WARM_USERS = list(range(1, 41))  # users 1..40 of the default events


class Load:
    """Threads that GET recommendations in a loop and record every (status, body) until stopped."""

    def __init__(self, url: str, users: list[int], threads: int = 3) -> None:
        self.url, self.users = url, users
        self.results: list[tuple[float, int, dict | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = offset
            while not self._stop.is_set():
                user = self.users[i % len(self.users)]
                i += len(self.threads)
                try:
                    r = client.get(f"/recommendations/{user}", params={"k": 10})
                    row = (time.monotonic(), r.status_code, r.json() if r.status_code == 200 else None)
                except httpx.HTTPError as exc:
                    row = (time.monotonic(), -1, {"error": repr(exc)})
                with self._lock:
                    self.results.append(row)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(10)

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        start = self.count()
        while self.count() < start + n:
            assert time.monotonic() < deadline, "load generator stalled"
            time.sleep(0.02)


def test_redis_killed_mid_load(tmp_path, source):
    from system_tools import system_tool

    from drlrec.serving.app import create_app
    from drlrec.serving.run import start_redis

    system_tool("redis-server")  # skip without it (fail in CI, where `make test` installs it)
    redis = start_redis()
    try:
        params = make_params(tmp_path, serve={"poll_seconds": 0, "cache_ttl": 300, "breaker_reset_seconds": 60.0})
        app = create_app(params, source=source, redis_url=redis.url, api_token=TOKEN)
        with ServerThread(app) as server, Load(server.url, WARM_USERS) as load:
            load.wait_for(200)  # every user's list is cached in Redis (and the LRU) by now
            stats = httpx.get(server.url + "/stats").json()
            assert stats["redis_up"] is True and stats["cache"].get("redis", 0) > 0
            os.kill(redis.pid, signal.SIGKILL)  # by PID
            redis.process.wait(5)
            killed_at = time.monotonic()
            load.wait_for(600)
            stats = httpx.get(server.url + "/stats").json()
        statuses = [status for _, status, _ in load.results]
        assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
        after = [body for t, _, body in load.results if t > killed_at]
        assert len(after) > 100
        assert all(body["cached"] for body in after)  # answered from the in-process LRU
        assert stats["redis_up"] is False and stats["redis"]["breaker"] == "open" and stats["cache"]["lru"] > 100
    finally:
        redis.stop()


def test_champion_promoted_mid_load(tmp_path, registry_uri):
    from drlrec.registry import alias_version, promote
    from drlrec.serving.app import create_app

    params = make_params(tmp_path, serve={"poll_seconds": 0.3}, ab={"enabled": False})
    app = create_app(params, redis_url="", api_token=TOKEN, tracking_uri=registry_uri)  # the real MLflow registry
    try:
        with ServerThread(app) as server, Load(server.url, WARM_USERS) as load:
            load.wait_for(60)
            assert {b["model_version"] for _, _, b in load.results} == {"1"}
            promote("2", tracking_uri=registry_uri)
            deadline = time.monotonic() + 60
            while not any(b and b["model_version"] == "2" for _, _, b in load.results[-20:]):
                assert time.monotonic() < deadline, "the service never switched to version 2"
                time.sleep(0.1)
            load.wait_for(60)
            metrics = httpx.get(server.url + "/metrics").text
    finally:
        from drlrec.registry import rollback

        rollback(tracking_uri=registry_uri)
        assert alias_version("champion", registry_uri) == "1"
    statuses = [s for _, s, _ in load.results]
    assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
    versions = [b["model_version"] for _, _, b in sorted(load.results, key=lambda r: r[0])]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and versions[-20:] == ["2"] * 20
    assert 'drlrec_model_info{alias="champion",version="2"} 1.0' in metrics


def _start_api(params_path: Path, port: int, registry_uri: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry_uri, "DRLREC_API_TOKEN": TOKEN, "DRLREC_REDIS_URL": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "drlrec.cli", "serve", "--params", str(params_path), "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the API exited during start-up"
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API did not become ready")


def test_kill_9_loses_no_acknowledged_interaction(tmp_path, registry_uri):
    from drlrec.serving.run import free_port

    params_path = write_params_yaml(make_params(tmp_path, serve={"poll_seconds": 0}, ab={"enabled": False}),
                                    tmp_path / "params.yaml")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    process = _start_api(params_path, port, registry_uri, log)
    user, acknowledged = 777000111, []
    try:
        _wait_ready(url, process)
        stop = threading.Event()

        def writer(offset: int) -> None:  # keeps writing while the kill lands
            with httpx.Client(base_url=url, timeout=5, headers=AUTH) as client:
                i = offset
                while not stop.is_set():
                    try:
                        r = client.post("/interaction", json={"user_id": user, "item_id": 1000 + i, "category_id": 7,
                                                              "behavior_type": "pv", "timestamp": 1512200000 + i})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 202:
                        acknowledged.append(1000 + i)
                    i += 2

        threads = [threading.Thread(target=writer, args=(o,), daemon=True) for o in (0, 1)]
        for t in threads:
            t.start()
        while len(acknowledged) < 60:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    n = len(acknowledged)
    assert n >= 60
    logged = (tmp_path / "interactions.csv").read_bytes()
    logged_items = {int(line.split(b",")[1]) for line in logged.splitlines() if line.count(b",") == 4}
    assert set(acknowledged) <= logged_items, f"{len(set(acknowledged) - logged_items)} acknowledged interactions lost"

    process = _start_api(params_path, port, registry_uri, log)  # restart on the same log
    try:
        _wait_ready(url, process)
        lines = (tmp_path / "interactions.csv").read_text().splitlines()
        assert all(line.count(",") == 4 for line in lines) and {int(x.split(",")[1]) for x in lines} >= set(acknowledged)
        body = httpx.get(f"{url}/recommendations/{user}").json()
        assert body["fallback"] is None  # the user's state was rebuilt from the log: no cold start
        r = httpx.post(f"{url}/interaction", headers=AUTH,
                       json={"user_id": user, "item_id": 5, "category_id": 7, "behavior_type": "buy"})
        assert r.status_code == 202
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    print(f"acknowledged before kill -9: {n}; all in the log after restart")
