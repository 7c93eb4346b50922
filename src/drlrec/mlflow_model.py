"""The registered model as an MLflow model: a pyfunc whose `predict` is the service's own ranking.

    import mlflow
    model = mlflow.pyfunc.load_model("models:/drlrec@champion")
    model.predict(pd.DataFrame({"item_id": [[11, 12, 11]], "category_id": [[3, 3, 3]],
                                "behavior_type": [["pv", "pv", "cart"]], "timestamp": [[1512000000, 1512000060, 1512000120]]}),
                  params={"k": 10})
    # -> DataFrame: item_id [list of k raw ids], category_id [k], score [k] per input row

Each input row is one user's recent history in the raw log's schema, oldest first (the columns of the
interaction log), optionally with `exclude` (raw item ids to leave out) and `total_events` (the user's
events in all, for the position feature; default: the rows given). The model's artifacts are the bundle
(drlrec.bundle: model.pt, vocabularies, train statistics, item tables, featurize settings), and `predict`
calls `drlrec.serving.recommender.ServingModel.recommend`, the function the API ranks with, so
`mlflow models serve` and the service answer the same history with the same list. drlrec must be installed
where the model is loaded (it is in the pinned requirements the model carries).

The same MLflow model also carries the native torch flavour (`pytorch` in its MLmodel, `data/model.pth`):

    module = mlflow.pytorch.load_model("models:/drlrec@champion")  # drlrec.models.dqn_lstm.ScoringModule
    scores = module(torch.as_tensor(pack_states(states)))            # [B, n_items], the served head's scores

so a torch user gets the network (packed states in, one score per item out) and a platform user the
recommender, from one registered object. The train stage logs it in the train run; the register stage
registers that model (drlrec.registry.register_model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: the artifact key of the bundle folder inside the MLflow model
BUNDLE_KEY = "bundle"

#: the input columns (each cell a list, one entry per event, oldest first)
INPUT_COLUMNS = ("item_id", "category_id", "behavior_type", "timestamp")


def serve_retrieval() -> str:
    """How the pyfunc ranks: the service's default serve.retrieval (the one-pass scan), so a loaded MLflow
    model answers as the service does."""
    from drlrec.config import ServeConfig

    return ServeConfig().retrieval


def _python_model_class():
    import mlflow.pyfunc

    class DrlrecRecommender(mlflow.pyfunc.PythonModel):
        """Histories in, the service's top-k out (see the module docstring)."""

        def load_context(self, context) -> None:
            from drlrec.bundle import load_bundle
            from drlrec.serving.recommender import ServingModel

            # the service's default retrieval (serve.retrieval: scan): the same top-k as the model, and no
            # [n_items, 128] scoring table beside the model (2.1 GB at 4.2M items)
            self.serving = ServingModel(load_bundle(context.artifacts[BUNDLE_KEY]), "mlflow", retrieval=serve_retrieval())

        def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
            return recommend_frame(self.serving, model_input, int((params or {}).get("k", 10)))

    return DrlrecRecommender


def histories(frame) -> list[tuple[Any, list[int]]]:
    """(History, excluded raw ids) per input row; a one-line InputError on a malformed row."""
    from drlrec.errors import InputError
    from drlrec.schema import BEHAVIOR_CODE
    from drlrec.serving.state import History

    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"model input: missing column(s) {', '.join(missing)} (expected {', '.join(INPUT_COLUMNS)})")
    out = []
    for n, row in enumerate(frame.to_dict("records")):
        cells = [np.asarray(row[c] if row[c] is not None else []).ravel() for c in INPUT_COLUMNS]
        if len({len(c) for c in cells}) != 1:
            raise InputError(f"model input row {n}: item_id, category_id, behavior_type and timestamp differ in length")
        behavior = cells[2]
        if behavior.dtype.kind in "US":
            unknown = sorted({str(b) for b in behavior} - set(BEHAVIOR_CODE))
            if unknown:
                raise InputError(f"model input row {n}: unknown behavior_type {unknown[0]!r} (expected pv, cart, fav, buy)")
            behavior = np.array([BEHAVIOR_CODE[str(b)] for b in behavior], dtype=np.int64)
        order = np.argsort(cells[3].astype(np.int64), kind="stable")  # oldest first, as the service keeps it
        total = row.get("total_events")
        total = len(order) if total is None or total != total else max(int(total), len(order))
        history = History(cells[0].astype(np.int64)[order], cells[1].astype(np.int64)[order],
                          behavior.astype(np.int64)[order], cells[3].astype(np.int64)[order], total)
        exclude = row.get("exclude")
        out.append((history, [int(x) for x in np.asarray(exclude if exclude is not None else []).ravel()]))
    return out


def recommend_frame(serving, frame, k: int):
    """The service's ranking of each row's history: DataFrame of item_id, category_id, score lists."""
    rows = []
    for history, exclude in histories(frame):
        if len(history.item_id) == 0:
            ranked = serving.popularity(k, exclude)  # what the service answers a user without history
        else:
            ranked = serving.recommend(history, k, exclude)
        rows.append({"item_id": ranked.item_id.astype(np.int64).tolist(),
                     "category_id": ranked.category_id.astype(np.int64).tolist(),
                     "score": ranked.score.astype(np.float64).tolist()})
    return pd.DataFrame(rows, columns=["item_id", "category_id", "score"])


def input_example(bundle_dir: str | Path, events: int = 5):
    """A one-row input of `events` known items of the bundle (the most popular ones), one per minute."""
    from drlrec.bundle import load_bundle
    from drlrec.serving.recommender import ServingModel

    serving = ServingModel(load_bundle(bundle_dir), "example", retrieval=serve_retrieval())
    items = serving.popular[:events]
    return pd.DataFrame({
        "item_id": [serving.raw_item[items].astype(np.int64).tolist()],
        "category_id": [serving.raw_category[items].astype(np.int64).tolist()],
        "behavior_type": [["pv"] * len(items)],
        "timestamp": [[1512000000 + 60 * i for i in range(len(items))]],
    }), serving


def _save_with_torch_flavour(path, mlflow_model, torch_module=None, **pyfunc_kwargs) -> None:
    """Model.log's flavour hook: save the pyfunc model, then add the native torch flavour beside it
    (the layout mlflow.pytorch.save_model writes with serialization_format="pickle")."""
    import mlflow.pyfunc
    import mlflow.pytorch
    import torch
    from mlflow.pytorch import pickle_module

    mlflow.pyfunc.save_model(path, mlflow_model=mlflow_model, **pyfunc_kwargs)
    if torch_module is None:
        return
    data = Path(path) / "data"
    data.mkdir()
    (data / "pickle_module_info.txt").write_text(pickle_module.__name__)
    torch.save(torch_module, data / "model.pth", pickle_module=pickle_module)
    mlflow_model.add_flavor(mlflow.pytorch.FLAVOR_NAME, model_data="data", pytorch_version=str(torch.__version__), code=None)
    mlflow_model.save(str(Path(path) / "MLmodel"))


def log_recommender(bundle_dir: str | Path, name: str = "model", torch_flavour: bool = True):
    """Log the bundle as one MLflow model in the active run: the pyfunc recommender (signature: histories
    -> lists, param k; an input example; the pinned requirements; the bundle as its artifacts) and, with
    `torch_flavour`, the native torch flavour (the bundle's network as a ScoringModule of its served head).
    Returns mlflow's ModelInfo."""
    from types import SimpleNamespace

    from mlflow.models import Model, infer_signature

    from drlrec.models.dqn_lstm import ScoringModule
    from drlrec.tracking import pinned_requirements

    example, serving = input_example(bundle_dir)
    output = recommend_frame(serving, example, 10)
    signature = infer_signature(example, output, params={"k": 10})
    torch_module = None
    if torch_flavour:
        model = serving.bundle.model
        torch_module = ScoringModule(model.network, serving.bundle.seq_len, model.score_with).eval()
    flavour = SimpleNamespace(__name__="drlrec.mlflow_model", save_model=_save_with_torch_flavour)
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=flavour,
        python_model=_python_model_class()(),
        artifacts={BUNDLE_KEY: str(bundle_dir)},
        signature=signature,
        input_example=example,
        pip_requirements=pinned_requirements(),
        torch_module=torch_module,
    )


def bundle_in(downloaded: str | Path) -> Path:
    """The bundle folder inside a downloaded model version: an MLflow model keeps it under
    artifacts/<BUNDLE_KEY>; a version registered before the pyfunc (its source the bundle itself) is it."""
    import yaml

    downloaded = Path(downloaded)
    mlmodel = downloaded / "MLmodel"
    if not mlmodel.is_file():
        return downloaded
    flavor = yaml.safe_load(mlmodel.read_text())["flavors"]["python_function"]
    return downloaded / flavor["artifacts"][BUNDLE_KEY]["path"]
