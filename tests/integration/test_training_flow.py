"""The Prefect training flow on a tiny config: under prefect_test_harness, and against a real
`prefect server` on 127.0.0.1 whose API is read back (flow run, task runs, artifacts)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drlrec import registry

pytestmark = pytest.mark.slow

STAGES = {"ingest", "validate", "featurize", "train", "evaluate", "register"}


async def _flow_run_details(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return flow_run, task_runs, artifacts


async def _flow_run_logs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def progress_lines(flow_run_id, at_least: int, timeout: float = 30.0) -> list[str]:
    """The flow run's training progress lines as the API holds them (logs reach it in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [m for m in asyncio.run(_flow_run_logs(flow_run_id)) if m.startswith("train (offline): step ")]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(1)


def test_training_flow_completes_and_leaves_a_champion(prefect_harness, tiny_pipeline: Path) -> None:
    from flows.training_flow import training_flow

    state = training_flow(str(tiny_pipeline), return_state=True)
    assert state.is_completed(), state.message
    results = state.result()
    assert set(results) == STAGES
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert registry.alias_version("champion", uri) == results["register"]["version"] == "1"

    flow_run, task_runs, artifacts = asyncio.run(_flow_run_details(state.state_details.flow_run_id))
    assert flow_run.state.is_completed()
    assert {t.name.rsplit("-", 1)[0] for t in task_runs} == STAGES
    assert all(t.state.is_completed() for t in task_runs)
    by_key = {a.key: a for a in artifacts}
    assert {"validation", "metrics", "mlflow-run", "registry-gate"} <= set(by_key)
    assert results["train"]["mlflow_run_id"] in by_key["mlflow-run"].data
    assert "ndcg_at_10" in by_key["metrics"].data
    assert "Promoted" in by_key["registry-gate"].data
    # no terminal here, so no bar: the train task logs progress lines through Prefect (train.log_every=5
    # of 40 steps), with the loss, the last validation figure and the ETA
    lines = progress_lines(state.state_details.flow_run_id, at_least=5)
    assert len(lines) >= 5, lines
    assert lines[-1].startswith("train (offline): step 40/40 (100%)") and "td_loss" in lines[-1]
    assert "last_valid_ndcg_at_10" in lines[-1] and "ETA" in lines[-1]

    # a second run on the same data trains the same model: the gate keeps version 1 as champion
    second = training_flow(str(tiny_pipeline), return_state=True).result()
    assert second["register"]["version"] == "2"
    assert not second["register"]["promoted"]
    assert registry.alias_version("champion", uri) == "1"


def test_only_io_errors_are_retried_and_only_on_io_tasks() -> None:
    from prefect.states import Failed

    from drlrec.config import load_params
    from flows.training_flow import _with_io_retries, ingest, register, retry_on_io_error, train, validate

    assert retry_on_io_error(None, None, Failed(data=OSError("disk gone")))
    assert retry_on_io_error(None, None, Failed(data=ConnectionError("mlflow restarting")))
    assert not retry_on_io_error(None, None, Failed(data=ValueError("bad data")))
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    for io_task in (ingest, register):
        configured = _with_io_retries(io_task, params)
        assert configured.retries == params.flow.io_retries > 0
        assert configured.retry_condition_fn is retry_on_io_error
    assert validate.retries == 0 and train.retries == 0


def test_failed_validation_fails_the_flow_with_the_expectations_message(prefect_harness, tiny_pipeline: Path) -> None:
    import pandas as pd

    from drlrec.config import load_params
    from flows.training_flow import training_flow

    params = load_params(tiny_pipeline)
    raw = Path(params.paths.raw_data)
    frame = pd.read_csv(raw, header=None)
    frame[3] = "pv"  # every row still parses (nothing quarantined) but the behaviour mix is impossible
    frame.to_csv(raw, header=False, index=False)

    state = training_flow(str(tiny_pipeline), return_state=True)
    assert state.is_failed()
    assert "failed validation: expect_column_values_to_be_between(share_pv)" in state.message, state.message
    _, task_runs, artifacts = asyncio.run(_flow_run_details(state.state_details.flow_run_id))
    ran = {t.name.rsplit("-", 1)[0]: t for t in task_runs}
    assert ran["validate"].state.is_failed()
    assert ran["validate"].run_count == 1  # a data failure is never retried
    assert "train" not in ran and "register" not in ran
    validation = {a.key: a for a in artifacts}["validation"]
    assert "FAILED" in validation.data
    assert registry.alias_version("champion", os.environ["MLFLOW_TRACKING_URI"]) is None


# ---------------------------------------------------------------------------------------------- real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout}s")


def test_flow_against_a_real_prefect_server_is_read_back_from_its_api(tiny_pipeline: Path, tmp_path: Path) -> None:
    import httpx

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-server-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    bin_dir = Path(sys.executable).parent
    log = open(tmp_path / "prefect-server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_healthy(api, server)
        run = subprocess.run(
            [str(bin_dir / "drlrec"), "flow", "--params", str(tiny_pipeline)],
            env={**env, "PREFECT_API_URL": api}, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Test metrics of dqn_lstm" in run.stdout

        runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 10}, timeout=10).json()
        assert len(runs) == 1
        flow_run = runs[0]
        assert flow_run["state_type"] == "COMPLETED"
        assert httpx.get(f"{api}/flows/{flow_run['flow_id']}", timeout=10).json()["name"] == "training-flow"
        tasks = httpx.post(
            f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run["id"]]}}}, timeout=10
        ).json()
        assert {t["name"].rsplit("-", 1)[0] for t in tasks} == STAGES
        assert {t["state_type"] for t in tasks} == {"COMPLETED"}
        artifacts = httpx.post(
            f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}}, timeout=10
        ).json()
        assert {"validation", "metrics", "mlflow-run", "registry-gate"} <= {a["key"] for a in artifacts}
    finally:
        server.send_signal(signal.SIGINT)  # stop by PID: the process we started, and its session
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    assert server.returncode is not None


def test_training_flow_runs_the_data_stages_per_partition_on_dask(prefect_harness, tiny_pipeline: Path) -> None:
    """scale.partitions=2: ingest and featurize run as the partitioned subflows on a local Dask cluster,
    and the flow still ends with a champion whose features equal the single pass's."""
    import numpy as np
    import pandas as pd

    from drlrec.config import load_params
    from drlrec.features.transitions import STORED_FIELDS, load_split
    from flows.training_flow import training_flow

    state = training_flow(str(tiny_pipeline), ["scale.partitions=2"], return_state=True)
    assert state.is_completed(), state.message
    results = state.result()
    assert results["register"]["promoted"]
    params = load_params(tiny_pipeline)
    partitioned = pd.read_parquet(params.paths.events)
    partitioned_train = load_split(params.paths.features, "train", mmap=False)

    single = training_flow(str(tiny_pipeline), return_state=True)
    assert single.is_completed(), single.message
    pd.testing.assert_frame_equal(partitioned, pd.read_parquet(params.paths.events))
    single_train = load_split(params.paths.features, "train")
    for name in STORED_FIELDS:
        np.testing.assert_array_equal(getattr(partitioned_train, name), getattr(single_train, name), err_msg=name)


def test_a_served_deployment_stopped_with_sigterm_leaves_no_run_running(tiny_pipeline: Path, tmp_path: Path) -> None:
    """`drlrec deploy --run-now` against a real server, SIGTERM (by PID) while the train task runs: the flow
    run ends Cancelled (or Crashed) and no task run of it stays Running."""
    import httpx
    import yaml

    raw = yaml.safe_load(tiny_pipeline.read_text())
    raw["train"]["steps"] = 200_000  # still training when the signal comes
    tiny_pipeline.write_text(yaml.safe_dump(raw, sort_keys=False))
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    bin_dir = Path(sys.executable).parent
    server_log = open(tmp_path / "prefect-server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
    deploy = None
    try:
        _wait_healthy(api, server)
        deploy_log = open(tmp_path / "deploy.log", "wb")  # noqa: SIM115
        deploy = subprocess.Popen([str(bin_dir / "drlrec"), "deploy", "--run-now", "--params", str(tiny_pipeline)],
                                  env={**env, "PREFECT_API_URL": api}, stdout=deploy_log, stderr=subprocess.STDOUT,
                                  cwd=tmp_path, start_new_session=True)

        def train_task():
            tasks = httpx.post(f"{api}/task_runs/filter", json={"limit": 50}, timeout=10).json()
            return next((t for t in tasks if t["name"].startswith("train")), None)

        deadline = time.monotonic() + 300
        while (task := train_task()) is None or task["state_type"] != "RUNNING":
            assert deploy.poll() is None, (tmp_path / "deploy.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the train task never started"
            time.sleep(1)
        time.sleep(3)  # a few steps into training
        deploy.send_signal(signal.SIGTERM)  # by PID
        deploy.wait(90)

        flow_run = httpx.get(f"{api}/flow_runs/{task['flow_run_id']}", timeout=10).json()
        assert flow_run["state_type"] in ("CANCELLED", "CRASHED"), flow_run["state"]
        tasks = httpx.post(f"{api}/task_runs/filter",
                           json={"flow_runs": {"id": {"any_": [flow_run["id"]]}}}, timeout=10).json()
        assert not [t["name"] for t in tasks if t["state_type"] in ("RUNNING", "PENDING")]
        assert train_task()["state_type"] in ("CRASHED", "CANCELLED", "FAILED")
        if flow_run["state_type"] == "CANCELLED":  # marked by drlrec deploy on its way out, with the reason
            assert "drlrec deploy stopped (SIGTERM)" in flow_run["state"]["message"]
            assert f"cancelled: {flow_run['id']}" in (tmp_path / "deploy.log").read_text()
    finally:
        for proc in (deploy, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        server_log.close()
