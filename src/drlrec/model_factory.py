"""The model registry: every model by name, built from params, fitted and saved the same way.

    model = build_model("gru4rec", n_items, n_categories, params)   # params: the whole Params
    model.fit(data)                                                  # TrainingData; returns the model
    model.save(folder); load_model(folder).score(states)            # identical scores

Every saved model is a folder with meta.json naming its model (dqn_lstm adds model.pt, DQNLSTM's own
format); `load_model` also reads a bare DQNLSTM .pt file as written by `drlrec train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drlrec.config import ModelConfig, Params, TrainConfig
from drlrec.models.base import Recommender, Scorer, TrainingData
from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.models.drr import DRR
from drlrec.models.gru4rec import GRU4Rec
from drlrec.models.item_knn import ItemKNN
from drlrec.models.popularity import Popularity, RecentPopularity
from drlrec.models.recent_items import RecentItems
from drlrec.models.sasrec import SASRec
from drlrec.models.session_knn import SessionKNN
from drlrec.models.tabular_q import TabularQ

DQN_WEIGHTS_FILE = "model.pt"


class DQNLSTMModel(DQNLSTM, Recommender):
    """DQNLSTM with the registry's constructor, `fit` and save/load folder. `fit(data)` is
    `drlrec.rl.dqn.fit_dqn_lstm` with its TrainConfig (the training of `drlrec train`, without checkpoints
    or MLflow): one way to train a DQN-LSTM."""

    def __init__(self, n_items: int, n_categories: int, model_cfg: ModelConfig | None = None,
                 train_cfg: TrainConfig | None = None, seed: int = 0, progress: bool = False) -> None:
        import torch

        from drlrec.devices import resolve_device

        self.train_cfg = train_cfg or TrainConfig()
        self.seed = seed
        self.progress = progress
        torch.manual_seed(seed)
        super().__init__(n_items, n_categories, model_cfg or ModelConfig(), device=resolve_device(self.train_cfg.device))

    def fit(self, data: TrainingData, cfg: TrainConfig | None = None, seed: int | None = None) -> DQNLSTMModel:
        """Offline Double DQN (+SQN head) on data.train, early stopping on data.valid, served head chosen on
        data.valid (cfg: TrainConfig; offline mode: online training needs a simulator, see `drlrec train`)."""
        from drlrec.rl.dqn import fit_dqn_lstm

        fit_dqn_lstm(self, data, cfg or self.train_cfg, self.seed if seed is None else seed, progress=self.progress)
        return self

    def save(self, path: str | Path) -> None:
        """Write model.pt (DQNLSTM.save) and meta.json into the folder `path`."""
        import dataclasses

        from drlrec.models.persistence import write_meta

        super().save(Path(path) / DQN_WEIGHTS_FILE)
        write_meta(path, self.name, train_config=dataclasses.asdict(self.train_cfg), seed=self.seed)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> DQNLSTMModel:
        from drlrec.config import params_from_dict
        from drlrec.models.persistence import read_meta

        meta = read_meta(path)
        train_cfg = params_from_dict({"train": meta.get("train_config", {})}).train
        plain = DQNLSTM.load(Path(path) / DQN_WEIGHTS_FILE)
        model = cls(plain.n_items, plain.n_categories, plain.cfg, train_cfg, seed=int(meta.get("seed", 0)))
        model.network.load_state_dict(plain.network.state_dict())
        model.score_with = plain.score_with
        model.served_head = plain.served_head
        model.head_states = plain.head_states
        if device is not None:
            import torch

            model.device = torch.device(device)
            model.network.to(model.device)
        return model


#: name -> class; every class has fit(data, cfg=None), score(states), recommend, save(folder), load(folder)
MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "recent_popularity": RecentPopularity,
    "item_knn": ItemKNN,
    "recent_items": RecentItems,
    "session_knn": SessionKNN,
    "tabular_q": TabularQ,
    "gru4rec": GRU4Rec,
    "sasrec": SASRec,
    "drr": DRR,
    "dqn_lstm": DQNLSTMModel,
}


def build_model(
    name: str, n_items: int, n_categories: int, params: Params | None = None, seed: int | None = None,
    progress: bool = False,
) -> Recommender:
    """An untrained model by registry name, configured from `params` (baselines:, or model:/train: for
    dqn_lstm); `seed` defaults to params.base.seed."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    params = params or Params()
    seed = params.base.seed if seed is None else seed
    if name == "popularity":
        return Popularity(n_items)
    if name == "dqn_lstm":
        return DQNLSTMModel(n_items, n_categories, params.model, params.train, seed=seed, progress=progress)
    cls: Any = MODELS[name]
    return cls(n_items, n_categories, params.baselines, seed=seed, progress=progress)


def fit_model(name: str, data: TrainingData, params: Params | None = None, seed: int | None = None,
              progress: bool = False) -> Recommender:
    """build_model for the data's vocabulary sizes, then fit on it."""
    return build_model(name, data.n_items, data.n_categories, params, seed, progress).fit(data)


def load_model(path: str | Path, device: str | None = None) -> Scorer:
    """A saved model: a folder with meta.json (any registry model), or a bare DQNLSTM .pt file."""
    from drlrec.models.persistence import META_FILE, read_meta

    path = Path(path)
    if path.is_file():
        return DQNLSTM.load(path, device=device or "cpu")
    if not (path / META_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a saved model (no {META_FILE})")
    name = read_meta(path)["model"]
    if name not in MODELS:
        raise ValueError(f"{path}: unknown model {name!r} in {META_FILE}")
    cls: Any = MODELS[name]
    return cls.load(path, device=device) if name in ("gru4rec", "sasrec", "drr", "dqn_lstm") else cls.load(path)
