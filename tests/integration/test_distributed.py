"""`drlrec train --distributed`: two CPU processes under torchrun (gloo) stay in sync and learn."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pipeline_config import write_pipeline_params

from drlrec.config import load_params
from drlrec.errors import ConfigError
from drlrec.stages import featurize_stage, ingest_stage, synth_stage, train_stage


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_train_distributed_without_torchrun_is_a_one_line_error(tmp_path: Path, monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        train_stage(load_params(write_pipeline_params(tmp_path)), distributed=True)


def test_ddp_two_cpu_processes_stay_in_sync_and_loss_falls(tmp_path: Path) -> None:
    from drlrec.distributed import parameter_checksums
    from drlrec.models.dqn_lstm import DQNLSTM

    params_file = write_pipeline_params(
        tmp_path, ("train.steps=120", "train.eval_every=60", "train.patience=10", "train.device=cpu", "train.threads=1")
    )
    params = load_params(params_file)
    synth_stage(params)
    ingest_stage(params)
    featurize_stage(params)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "drlrec.cli", "train", "--distributed", "--params", str(params_file),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    ddp = json.loads(Path(params.paths.train_metrics).read_text())["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["effective_batch_size"] == 2 * params.train.batch_size
    assert ddp["lr"] == pytest.approx(params.train.lr * 2**0.5)  # scale.ddp_lr_scaling: sqrt
    rank0, rank1 = (np.asarray(c) for c in ddp["param_checksums"])
    assert len(rank0) > 10 and np.allclose(rank0, rank1, rtol=1e-6, atol=1e-9) and ddp["params_in_sync"]
    assert ddp["loss_last_tenth"] < 0.9 * ddp["loss_first_tenth"]
    # rank 0 wrote the model: the weights every rank ended with
    saved = DQNLSTM.load(Path(params.paths.model) / "model.pt")
    assert np.allclose(parameter_checksums(saved.network), rank0, rtol=1e-6, atol=1e-9)
