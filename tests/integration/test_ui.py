"""`drlrec ui`: the MLflow UI and the Prefect server on a port other than 4200, the Prefect UI pointed at its own
API, and both stopped by PID on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from pipeline_config import PROJECT_ROOT

pytestmark = pytest.mark.slow


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_drlrec_ui_serves_both_uis_on_free_ports_and_stops_them_on_ctrl_c(tmp_path: Path) -> None:
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["paths"]["artifacts"] = str(tmp_path / "artifacts")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("drlrec")), "ui", "--params", str(tmp_path / "params.yaml")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert "Ctrl-C" in text, text
        mlflow_url = re.search(r"MLflow UI:\s+(\S+)", text).group(1)
        prefect_url = re.search(r"Prefect UI:\s+(\S+)", text).group(1)
        pids = [int(p) for p in re.search(r"PIDs (\d+), (\d+)", text).groups()]
        assert not prefect_url.endswith(":4200")
        assert httpx.get(f"{mlflow_url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{prefect_url}/api/health", timeout=10).json() is True
        # the browser UI asks this for its API address: its own port, not the default 4200
        assert httpx.get(f"{prefect_url}/ui-settings", timeout=10).json()["api_url"] == f"{prefect_url}/api"
        assert all(group_alive(pid) for pid in pids)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(group_alive(pid) for pid in pids):
            time.sleep(0.5)
        assert not any(group_alive(pid) for pid in pids), "a server's process group outlived drlrec ui"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{mlflow_url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
