"""Saving and loading the baselines: a folder with meta.json (what to rebuild) and the learned state.

Layout of a saved baseline folder:

    meta.json     {"model": <factory name>, "n_items", "n_categories", "seed", "config": <BaselinesConfig>, ...}
    arrays.npz    numpy state (count- and table-based models)
    weights.pt    torch state_dict of the network(s) (torch models), always saved from CPU tensors

Every file is written atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from drlrec.atomic import atomic_path, save_torch, write_json
from drlrec.config import BaselinesConfig

META_FILE = "meta.json"
ARRAYS_FILE = "arrays.npz"
WEIGHTS_FILE = "weights.pt"


def baselines_from_dict(raw: dict[str, Any] | None) -> BaselinesConfig:
    """BaselinesConfig from its plain-dict form (as in meta.json or params.yaml), type-checked."""
    from drlrec.config import params_from_dict

    return params_from_dict({"baselines": raw or {}}).baselines


def write_meta(path: str | Path, name: str, cfg: BaselinesConfig | None = None, **fields: Any) -> None:
    """Write meta.json into the folder `path`: the model's factory name, its config and any extra fields."""
    payload: dict[str, Any] = {"model": name, **fields}
    if cfg is not None:
        payload["config"] = json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples -> lists
    write_json(Path(path) / META_FILE, payload)


def read_meta(path: str | Path) -> dict[str, Any]:
    """meta.json of a saved baseline folder."""
    return json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Write numpy arrays into `path`/arrays.npz (uncompressed; np.load reads it without unpickling)."""
    with atomic_path(Path(path) / ARRAYS_FILE, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of `path`/arrays.npz."""
    with np.load(Path(path) / ARRAYS_FILE) as data:
        return {name: data[name] for name in data.files}


def save_weights(path: str | Path, **modules: Any) -> None:
    """Write the state_dicts of torch modules (by name) into `path`/weights.pt, moved to CPU."""

    payload = {name: {k: v.detach().cpu() for k, v in module.state_dict().items()} for name, module in modules.items()}
    save_torch(Path(path) / WEIGHTS_FILE, payload)


def load_weights(path: str | Path) -> dict[str, dict[str, Any]]:
    """The state_dicts that save_weights wrote, by module name (CPU tensors)."""
    import torch

    return torch.load(Path(path) / WEIGHTS_FILE, map_location="cpu", weights_only=True)


def rebuild_torch_model(cls: Any, path: str | Path, device: str | None = None) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A torch baseline `cls(n_items, n_categories, cfg, seed=...)` rebuilt from the folder's meta.json
    (on `device`, default the saved config's), and its saved state_dicts by module name to load."""
    meta = read_meta(path)
    cfg = baselines_from_dict(meta.get("config"))
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    model = cls(int(meta["n_items"]), int(meta["n_categories"]), cfg, seed=int(meta.get("seed", 0)))
    return model, load_weights(path)
