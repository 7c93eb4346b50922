"""What a stage run measured about itself: durations, MLflow run ids, the host. Never a DVC output.

DVC-tracked outputs must be a pure function of their inputs, params and seed, so that `dvc repro` on a
fresh clone leaves `dvc.lock` (and `git status`) unchanged. A stage's duration, its MLflow run id and the
machine it ran on are not, so they go to MLflow and to `<paths.artifacts>/runinfo/<stage>.json`, which
no stage declares as an output and git ignores:

    record(params, "validate", seconds=3.9)
    read(params, "train")  # {"stage": "train", "mlflow_run_id": "...", "seconds": ..., "host": ..., ...}

A record that describes an output (the train run of a model file) carries that output's md5
(`file_md5`), and a reader that links the two (register: model -> train run) checks it, so a stale
record is never linked to another model.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

#: folder under paths.artifacts
FOLDER = "runinfo"


def path(params: Any, stage: str) -> Path:
    """<paths.artifacts>/runinfo/<stage>.json"""
    return Path(params.paths.artifacts) / FOLDER / f"{stage}.json"


def record(params: Any, stage: str, **fields: Any) -> Path:
    """Write the stage's run record (atomically), with the host and the finish time added."""
    from drlrec.atomic import write_json

    target = path(params, stage)
    payload = {
        "stage": stage,
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in fields.items()},
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(target, payload)
    return target


def read(params: Any, stage: str) -> dict[str, Any]:
    """The stage's last run record, or {} when there is none (or it cannot be read)."""
    try:
        return json.loads(path(params, stage).read_text())
    except (OSError, ValueError):
        return {}


def file_md5(file: str | Path) -> str:
    """md5 of a file's bytes (what DVC hashes)."""
    from drlrec.atomic import file_hash

    return file_hash(file, "md5")


def train_record(params: Any) -> dict[str, Any]:
    """The record of the train run that wrote paths.model/model.pt (mlflow_run_id, model_uri: the MLflow
    model it logged, ...), or {} when the record is missing or describes another model file (md5 differs)."""
    info = read(params, "train")
    model = Path(params.paths.model) / "model.pt"
    if not info.get("mlflow_run_id") or not model.is_file():
        return {}
    return info if info.get("model_md5") == file_md5(model) else {}


def train_run_id(params: Any) -> str | None:
    """The MLflow run id of the train run that wrote paths.model/model.pt, or None (see train_record)."""
    return train_record(params).get("mlflow_run_id")
