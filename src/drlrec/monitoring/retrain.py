"""What a drift does: the debounce rule, the new interactions appended to the raw data, the data
versioned (`dvc add`, git commit of the .dvc file) and the training window slid to the new data.

Debounce: a state file (paths.monitoring/state.json) keeps the last retrain's time, the hash of the data
that triggered it, how far the raw data was extended and the training window it slid to, so one drift
does not retrain on every run: no second retrain within monitor.debounce_hours, and never twice for the
same data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import Params
from drlrec.data.logs import sort_events
from drlrec.errors import InputError
from drlrec.schema import BEHAVIORS

STATE_FILE = "state.json"
_DAY = 86400


class TrainingWindow(NamedTuple):
    """The ingest window [start, end) (Unix seconds) the next training runs on."""

    start: int
    end: int

    def apply(self, params: Params) -> Params:
        """`params` with this window (dataclasses.replace; nothing else changes)."""
        return dataclasses.replace(params, ingest=dataclasses.replace(params.ingest, window_start=self.start,
                                                                      window_end=self.end))

    def overrides(self) -> list[str]:
        """The window as `--set` strings: only for a training run in another process (a deployment)."""
        return [f"ingest.window_start={self.start}", f"ingest.window_end={self.end}"]


# ---------------------------------------------------------------------------------------------- state


def state_path(params: Params) -> Path:
    return Path(params.paths.monitoring) / STATE_FILE


def read_state(path: str | Path) -> dict[str, Any]:
    """The debounce state ({} before the first retrain)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}  # a state file cut by a crash (writes are atomic, so only by hand): start afresh


def state_window(state: dict[str, Any]) -> TrainingWindow | None:
    """The training window a state records (None before any slide). States written before the window was
    kept as data hold it as `training_overrides` strings; those are read too."""
    window = state.get("training_window")
    if window:
        return TrainingWindow(int(window["start"]), int(window["end"]))
    values = dict(item.split("=", 1) for item in state.get("training_overrides", []) if "=" in item)
    if "ingest.window_start" in values and "ingest.window_end" in values:
        return TrainingWindow(int(values["ingest.window_start"]), int(values["ingest.window_end"]))
    return None


def window_hash(window: pd.DataFrame) -> str:
    """Content hash of a window of interactions (order-independent: the rows are sorted first)."""
    frame = sort_events(window)
    digest = hashlib.sha256()
    for column in ("user_id", "item_id", "category_id", "behavior", "timestamp"):
        digest.update(frame[column].to_numpy().astype("int64").tobytes())
    return digest.hexdigest()[:16]


def should_retrain(state: dict[str, Any], data_hash: str, now: float, debounce_hours: float) -> tuple[bool, str]:
    """The debounce rule: (retrain?, why)."""
    if state.get("last_data_hash") == data_hash:
        return False, f"this window (data {data_hash}) already triggered a retrain"
    last = state.get("last_retrain_at")
    if last is not None and now - float(last) < debounce_hours * 3600:
        hours = (now - float(last)) / 3600
        return False, f"debounced: last retrain {hours:.1f} h ago (< monitor.debounce_hours {debounce_hours:g})"
    return True, "drift and no retrain within the debounce period"


# ---------------------------------------------------------------------------------------------- data


def append_new_interactions(params: Params, events: pd.DataFrame, appended_until: int) -> dict[str, Any]:
    """Append the interactions later than `appended_until` to the raw data (header-less raw CSV, one write
    and fsync); returns rows appended and the newest timestamp."""
    raw = Path(params.paths.raw_data)
    if raw.suffix == ".gz":
        raise InputError(f"{raw}: cannot append to a compressed raw log; use a plain CSV for paths.raw_data")
    new = events[events["timestamp"].to_numpy() > appended_until]
    if new.empty:
        return {"rows": 0, "until": int(appended_until), "path": str(raw)}
    names = np.asarray(BEHAVIORS, dtype=object)[new["behavior"].to_numpy().astype(np.int64)]
    lines = (
        new["user_id"].astype(str) + "," + new["item_id"].astype(str) + "," + new["category_id"].astype(str)
        + "," + names + "," + new["timestamp"].astype(str)
    )  # fmt: skip
    payload = ("\n".join(lines) + "\n").encode()
    needs_newline = raw.is_file() and raw.stat().st_size > 0 and not raw.read_bytes()[-1:] == b"\n"
    fd = os.open(raw, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (b"\n" if needs_newline else b"") + payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"rows": int(len(new)), "until": int(new["timestamp"].max()), "path": str(raw)}


def _repo_root(start: Path, marker: str) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / marker).exists():
            return folder
    return None


def _dvc_executable() -> str:
    """The dvc beside this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.is_file() else "dvc"


def version_data(params: Params, message: str) -> dict[str, Any]:
    """`dvc add` the raw data's folder and git-commit its .dvc file, each where the project allows
    (monitor.dvc_add / git_commit, a DVC or git repository around the data). Returns what was done."""
    cfg = params.monitor
    data_dir = Path(params.paths.raw_data).resolve().parent
    done: dict[str, Any] = {"dvc": None, "git": None}
    dvc_root = _repo_root(data_dir, ".dvc") if cfg.dvc_add else None
    if dvc_root is None:
        done["dvc"] = "skipped (monitor.dvc_add is false)" if not cfg.dvc_add else "skipped (no DVC repository)"
        return done
    ran = subprocess.run([_dvc_executable(), "add", str(data_dir.relative_to(dvc_root))], cwd=dvc_root,
                         capture_output=True, text=True)
    if ran.returncode != 0:
        done["dvc"] = f"failed: {(ran.stderr or ran.stdout).strip().splitlines()[-1:]}"
        return done
    dvc_file = data_dir.with_name(data_dir.name + ".dvc")
    done["dvc"] = f"dvc add {data_dir.relative_to(dvc_root)} -> {dvc_file.name}"
    git_root = _repo_root(dvc_root, ".git") if cfg.git_commit else None
    if git_root is None:
        done["git"] = "skipped (monitor.git_commit is false)" if not cfg.git_commit else "skipped (no git repository)"
        return done
    rel = str(dvc_file.relative_to(git_root))
    subprocess.run(["git", "add", rel], cwd=git_root, capture_output=True, text=True)
    # a pathspec commit records only the .dvc file, whatever else is staged
    ran = subprocess.run(["git", "commit", "-m", message, "--", rel], cwd=git_root, capture_output=True, text=True)
    if ran.returncode == 0:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=git_root, capture_output=True, text=True)
        done["git"] = f"committed {rel} ({sha.stdout.strip()})"
    else:
        done["git"] = f"not committed: {(ran.stdout or ran.stderr).strip().splitlines()[-1:]}"
    return done


def slid_window(params: Params, newest: int) -> TrainingWindow | None:
    """The ingest window moved (same length, whole days from the old start) to end after the newest
    appended interaction; None when the data does not reach past the current window."""
    start, end = params.ingest.window_start, params.ingest.window_end
    if newest < end:
        return None
    new_end = start + math.ceil((newest + 1 - start) / _DAY) * _DAY
    return TrainingWindow(new_end - (end - start), new_end)
