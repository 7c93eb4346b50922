"""The model bundle: one folder holding everything a deployed DQN-LSTM needs outside the training run.

A bundle is what the registry stores with each model version and what serving loads: the network
(`model.pt`, `meta.json`), the train-period vocabularies and statistics that turn raw ids and raw events
into states (`item_vocab.npz`, `category_vocab.npz`, `train_stats.npz`), the featurize settings that
define a state (`featurize.json`), and the per-item tables serving needs (`items.npz`: category of each
item index, train-period popularity for the cold-start fallback).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drlrec.errors import InputError

MODEL_FILE = "model.pt"
META_FILE = "meta.json"
FEATURIZE_FILE = "featurize.json"
ITEMS_FILE = "items.npz"


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle: the model with the shared interface plus the vocabularies it was trained with."""

    model: Any
    """drlrec.models.base.Recommender (the DQN-LSTM): `score(StateBatch)`, `recommend(StateBatch, k, exclude)`."""
    globals: Any
    """drlrec.features.featurize.TrainGlobals: item_vocab, category_vocab, stats (step features)."""
    featurize: Any
    """drlrec.config.FeaturizeConfig the model's states were built with (seq_len, profile settings)."""
    item_category: np.ndarray
    """[n_items] int32: category vocabulary index of each item index (0 for padding)."""
    popularity: np.ndarray
    """[n_items] int64: train-period events per item index (cold-start fallback ranks by this)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """meta.json of the trained model (model config, MLflow run id, fingerprint)."""
    version: str | None = None
    """Registry version this bundle was loaded from (None for a bundle read straight from disk)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The version's evaluation metrics as recorded in the registry."""
    run_id: str | None = None
    """MLflow run that trained the model."""

    @property
    def item_vocab(self):
        return self.globals.item_vocab

    @property
    def category_vocab(self):
        return self.globals.category_vocab

    @property
    def seq_len(self) -> int:
        return int(self.featurize.seq_len)


def write_bundle(model_dir: str | Path, features_dir: str | Path, featurize_cfg: Any, out_dir: str | Path) -> Path:
    """Assemble a bundle folder from the train stage's model folder and the featurize outputs.

    Written into a temporary sibling and renamed, so a reader never sees half a bundle."""
    import dataclasses

    from drlrec.atomic import write_json
    from drlrec.features.featurize import CATEGORY_VOCAB_FILE, ITEM_VOCAB_FILE, TRAIN_STATS_FILE, TrainGlobals
    from drlrec.features.transitions import load_split
    from drlrec.models.base import item_category_map

    model_dir, features_dir, out_dir = Path(model_dir), Path(features_dir), Path(out_dir)
    for path in (model_dir / MODEL_FILE, model_dir / META_FILE):
        if not path.is_file():
            raise InputError(f"{path}: no trained model (run `drlrec train` first)")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (MODEL_FILE, META_FILE):
        shutil.copy2(model_dir / name, tmp / name)
    for name in (ITEM_VOCAB_FILE, CATEGORY_VOCAB_FILE, TRAIN_STATS_FILE):
        shutil.copy2(features_dir / name, tmp / name)
    globals_ = TrainGlobals.load(features_dir)
    n_items = globals_.item_vocab.size
    splits = [load_split(features_dir, "train"), load_split(features_dir, "valid")]
    item_category = item_category_map(splits, n_items)
    popularity = np.asarray(globals_.stats.item_count, dtype=np.int64)[:n_items]
    with open(tmp / ITEMS_FILE, "wb") as fh:
        np.savez(fh, item_category=item_category, popularity=popularity)
    write_json(tmp / FEATURIZE_FILE, dataclasses.asdict(featurize_cfg))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def load_bundle(bundle_dir: str | Path, device: str = "cpu", **registry_fields: Any) -> ModelBundle:
    """Read a bundle folder written by `write_bundle` (registry_fields: version, metrics, run_id)."""
    from drlrec.config import FeaturizeConfig
    from drlrec.features.featurize import TrainGlobals
    from drlrec.models.dqn_lstm import DQNLSTM

    bundle_dir = Path(bundle_dir)
    missing = [n for n in (MODEL_FILE, META_FILE, FEATURIZE_FILE, ITEMS_FILE) if not (bundle_dir / n).is_file()]
    if missing:
        raise InputError(f"{bundle_dir}: not a model bundle (missing {', '.join(missing)})")
    raw = json.loads((bundle_dir / FEATURIZE_FILE).read_text())
    featurize_cfg = FeaturizeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    with np.load(bundle_dir / ITEMS_FILE) as items:
        item_category = items["item_category"].astype(np.int32)
        popularity = items["popularity"].astype(np.int64)
    return ModelBundle(
        model=DQNLSTM.load(bundle_dir / MODEL_FILE, device=device),
        globals=TrainGlobals.load(bundle_dir),
        featurize=featurize_cfg,
        item_category=item_category,
        popularity=popularity,
        meta=json.loads((bundle_dir / META_FILE).read_text()),
        **registry_fields,
    )
