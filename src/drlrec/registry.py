"""The only module that touches MLflow's Model Registry: register, the promotion gate, promote, rollback, load.

Every trained DQN-LSTM becomes a new version of the registered model `drlrec` (params register.model_name)
holding its bundle (drlrec.bundle: network, vocabularies, train statistics), with the alias `challenger`.
The gate moves `champion` to it only if there is no champion yet, or if it beats the champion on the
configured metric by at least the configured margin *on the same evaluation split*: when the champion was
evaluated on other data, it is scored again on the challenger's split first. The decision and both figures
are recorded as version tags. The champion history (a registered-model tag) makes `rollback` possible.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drlrec.errors import DrlrecError, RegistryError

MODEL_NAME = "drlrec"
CHAMPION = "champion"
CHALLENGER = "challenger"
#: registered-model tag: JSON list of the versions that were champion, oldest first (rollback pops it)
HISTORY_TAG = "champion_history"


# ---------------------------------------------------------------------------------------------- client


def _client(tracking_uri: str | None = None):
    from drlrec.settings import apply_offline_env
    from drlrec.tracking import default_tracking_uri

    apply_offline_env()
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _version_by_alias(client, name: str, alias: str):
    """The ModelVersion behind `name@alias`, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def alias_version(alias: str = CHAMPION, tracking_uri: str | None = None, name: str = MODEL_NAME) -> str | None:
    """Version number (as a string) that `name@alias` points at, or None. Cheap: meant for polling."""
    version = _version_by_alias(_client(tracking_uri), name, alias)
    return None if version is None else str(version.version)


def _history(client, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except json.JSONDecodeError:
        return []


def _set_champion(client, name: str, version: str) -> None:
    """Point @champion at `version` and append it to the champion history."""
    history = _history(client, name)
    if not history or history[-1] != str(version):
        history.append(str(version))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


# ---------------------------------------------------------------------------------------------- provenance


def data_hash(dvc_file: str | Path = "data.dvc") -> str:
    """The md5 DVC recorded for the raw data (data.dvc), or 'untracked' when there is no such file."""
    import yaml

    path = Path(dvc_file)
    if not path.is_file():
        return "untracked"
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked"))


def git_commit(cwd: str | Path = ".") -> str:
    """HEAD's commit, with '-dirty' when tracked files differ from it; 'unknown' outside a git repo."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def params_hash(config: dict[str, Any]) -> str:
    """sha256 (16 hex) of the params as a canonical JSON document."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 (16 hex) of a file's bytes, streamed."""
    from drlrec.atomic import file_hash

    return file_hash(path, "sha256")[:16]


def evaluation_split_id(events_path: str | Path, params) -> str:
    """Identity of an evaluation split: the events it was cut from plus every setting that defines it.

    Two models evaluated under the same id saw exactly the same test events under the same protocol."""
    import dataclasses

    parts = {
        "events": file_digest(events_path),
        "window_start": params.ingest.window_start,
        "featurize": {k: v for k, v in dataclasses.asdict(params.featurize).items() if k in ("train_days", "valid_days")},
        "evaluate": dataclasses.asdict(params.evaluate) | {"models": None},
        "seed": params.base.seed,
    }
    return params_hash(parts)


def metric_value(metrics: dict[str, Any], metric: str) -> float:
    """`group/name` from a metrics.json payload (evaluate stage) -> float."""
    group, _, name = metric.partition("/")
    try:
        entry = metrics["metrics"][group][name]
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"gate metric {metric!r} is not in the evaluation metrics (register.metric)") from exc
    return float(entry["value"] if isinstance(entry, dict) else entry)


# ---------------------------------------------------------------------------------------------- gate


def gate(challenger: float, champion: float | None, margin: float) -> tuple[bool, str]:
    """The promotion rule: (promote?, why). A champion is replaced only by a strictly better model that
    beats it by at least `margin`; with no champion the first model is promoted."""
    if champion is None:
        return True, "no champion yet"
    if challenger - champion >= margin and challenger > champion:
        return True, f"challenger {challenger:.6f} beats champion {champion:.6f} by >= {margin:g}"
    return False, f"challenger {challenger:.6f} does not beat champion {champion:.6f} by {margin:g}"


def _champion_metric_on(client, params, champion, split_id: str, metric: str, reevaluate) -> tuple[float, str]:
    """The champion's gate metric on the challenger's evaluation split: its recorded figure when it was
    evaluated on the same split, else `reevaluate(its bundle)` (a metrics payload on the current events:
    the evaluation code's, drlrec.evaluate.evaluate_bundle; this module only talks to the registry)."""
    tags = champion.tags or {}
    if tags.get("eval_split") == split_id and f"metric.{metric}" in tags:
        return float(tags[f"metric.{metric}"]), "recorded (same split)"
    if not params.register.reevaluate_champion and f"metric.{metric}" in tags:
        return float(tags[f"metric.{metric}"]), "recorded (other split; reevaluate_champion is false)"
    if reevaluate is None:
        raise RegistryError(
            f"champion v{champion.version} was evaluated on another split: comparing it needs an evaluator "
            "(register_model(..., reevaluate=...); the register stage passes drlrec.evaluate.evaluate_bundle)"
        )
    bundle = _download_bundle(client, champion)
    return metric_value(reevaluate(bundle), metric), "re-evaluated on the challenger's split"


# ---------------------------------------------------------------------------------------------- register


def register_model(
    params,
    bundle_dir: str | Path,
    metrics: dict[str, Any],
    split_id: str,
    train_run_id: str | None = None,
    tracking_uri: str | None = None,
    project_root: str | Path = ".",
    reevaluate: Callable[[Any], dict[str, Any]] | None = None,
    model_uri: str | None = None,
    ope_check: Callable[[], tuple[bool, str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """Register a new version with @challenger, run the gate, and return the decision.

    The version is the MLflow model the train run logged (`model_uri`, from artifacts/runinfo/train.json;
    drlrec.mlflow_model: the pyfunc recommender with the torch flavour, `bundle_dir` inside it). Without
    one (a model trained before the train stage logged it, or no train run on record), `bundle_dir` is
    logged as that model first: in the train run when known, else in the register run.
    `reevaluate(champion bundle) -> metrics payload` scores a champion evaluated on another split.
    `ope_check() -> (passed, reason, figures)`: register.ope_gate's off-policy check of the challenger,
    asked only when the metric gate would promote over an existing champion (figures go to `gate.*` tags)."""
    from drlrec.config import params_to_dict
    from drlrec.tracking import start_run

    name = params.register.model_name
    metric = params.register.metric
    challenger_value = metric_value(metrics, metric)
    client = _client(tracking_uri)
    flat = {
        f"metric.{group}/{m}": repr(float(e["value"] if isinstance(e, dict) else e))  # repr round-trips exactly
        for group, ms in metrics.get("metrics", {}).items()
        for m, e in ms.items()
        if isinstance(e, (dict, int, float))
    }
    tags = {
        "data_hash": data_hash(Path(project_root) / "data.dvc"),
        "git_commit": git_commit(project_root),
        "params_hash": params_hash(params_to_dict(params)),
        "eval_split": split_id,
        "train_run_id": train_run_id or "",
        "gate_metric": metric,
        **flat,
    }
    import mlflow

    from drlrec.mlflow_model import log_recommender

    if train_run_id and not model_uri:  # the model object lives in the run that trained it
        with mlflow.start_run(run_id=train_run_id):
            model_uri = log_recommender(bundle_dir).model_uri
    with start_run("register-dqn_lstm", tracking_uri=tracking_uri, tags={"stage": "register", "model": "dqn_lstm"},
                   parent_run_id=train_run_id) as run:
        if not model_uri:
            model_uri = log_recommender(bundle_dir).model_uri
        run.log_metrics({f"registered/{metric}": challenger_value})
        run.set_tags({"model_uri": model_uri, "train_run_id": train_run_id or ""})
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name, description="drlrec DQN-LSTM recommender; @champion serves, @challenger is the newest."
            )
        # the champion's figure first: a failure there (no evaluator, a broken champion) registers nothing
        current = _version_by_alias(client, name, CHAMPION)
        if current is None:
            champion_value, how, champion_version = None, "none", None
        else:
            champion_version = str(current.version)
            champion_value, how = _champion_metric_on(client, params, current, split_id, metric, reevaluate)
        # an MLflow model (pyfunc: histories -> the service's top-k, with its signature and input example)
        version = mlflow.register_model(model_uri, name, tags=tags)
        v = str(version.version)
        client.set_registered_model_alias(name, CHALLENGER, v)
        promote, reason = gate(challenger_value, champion_value, params.register.margin)
        ope_figures: dict[str, float] = {}
        if promote and champion_version is not None and getattr(params.register, "ope_gate", False):
            if ope_check is None:
                raise RegistryError("register.ope_gate is on but no off-policy check was given (register_model(..., ope_check=...))")
            try:
                passed, ope_reason, ope_figures = ope_check()
            except DrlrecError as exc:  # no usable logs: the gate cannot vouch for the challenger
                passed, ope_reason = False, f"OPE gate: {exc}"
            promote, reason = passed, f"{reason}; {ope_reason}"
        decision = {
            "model_name": name,
            "version": v,
            "metric": metric,
            "challenger_value": challenger_value,
            "champion_version": champion_version,
            "champion_value": champion_value,
            "champion_value_source": how,
            "margin": params.register.margin,
            "promoted": promote,
            "reason": reason,
            "eval_split": split_id,
            "register_run_id": run.run_id,
        }
        decision.update(ope_figures)
        for key in ("promoted", "reason", "champion_version", "champion_value", "challenger_value", *ope_figures):
            client.set_model_version_tag(name, v, f"gate.{key}", str(decision[key]))
        if promote:
            _set_champion(client, name, v)
        decision["champion"] = alias_version(CHAMPION, tracking_uri, name)
        run.set_tags({"gate.promoted": promote, "gate.reason": reason, "registered_version": v})
        run.log_dict(decision, "gate_decision.json")
    return decision


# ---------------------------------------------------------------------------------------------- manual


def promote(version: str | int, tracking_uri: str | None = None, name: str = MODEL_NAME) -> dict[str, Any]:
    """Make `version` the champion by hand (bypasses the gate; recorded as a tag)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model {name!r} has no version {version}") from exc
    before = alias_version(CHAMPION, tracking_uri, name)
    _set_champion(client, name, str(version))
    client.set_model_version_tag(name, str(version), "gate.promoted", "manual")
    return {"model_name": name, "previous": before, "champion": str(version)}


def rollback(tracking_uri: str | None = None, name: str = MODEL_NAME) -> dict[str, Any]:
    """Return @champion to the version that was champion before the current one."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        history = _history(client, name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model {name!r}") from exc
    current = alias_version(CHAMPION, tracking_uri, name)
    if current is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError(f"{name}@champion is version {current} and there is no earlier champion to return to")
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, current, "rolled_back", "true")
    return {"model_name": name, "from": current, "champion": previous}


def describe(tracking_uri: str | None = None, name: str = MODEL_NAME) -> list[dict[str, Any]]:
    """Every version with its aliases, gate decision and gate metric (newest first)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model {name!r} in {client.tracking_uri}") from exc
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        tags = mv.tags or {}
        metric = tags.get("gate_metric", "")
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "metric": metric,
                "value": tags.get(f"metric.{metric}"),
                "promoted": tags.get("gate.promoted"),
                "reason": tags.get("gate.reason", ""),
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


# ---------------------------------------------------------------------------------------------- load


def _download_bundle(client, version, device: str = "cpu"):
    from mlflow.artifacts import download_artifacts

    from drlrec.bundle import load_bundle
    from drlrec.mlflow_model import bundle_in

    dst = Path(tempfile.mkdtemp(prefix=f"drlrec-v{version.version}-"))
    local = download_artifacts(artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(dst),
                               tracking_uri=client.tracking_uri)
    tags = version.tags or {}
    metrics = {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}
    return load_bundle(bundle_in(local), device=device, version=str(version.version), metrics=metrics,
                       run_id=version.run_id)


def load_champion(alias: str = CHAMPION, tracking_uri: str | None = None, device: str = "cpu", name: str = MODEL_NAME):
    """The model behind `name@alias` as a drlrec.bundle.ModelBundle (shared model interface + vocabularies)."""
    client = _client(tracking_uri)
    version = _version_by_alias(client, name, alias)
    if version is None:
        raise RegistryError(f"{name}@{alias} does not exist in {client.tracking_uri} (run `drlrec register` first)")
    return _download_bundle(client, version, device=device)


def load_model(alias_or_version: str, tracking_uri: str | None = None, device: str = "cpu", name: str = MODEL_NAME):
    """`name@alias`, or version N when `alias_or_version` is a number, as a drlrec.bundle.ModelBundle."""
    from mlflow.exceptions import MlflowException

    ref = str(alias_or_version).strip()
    if not ref.isdigit():
        return load_champion(ref, tracking_uri=tracking_uri, device=device, name=name)
    client = _client(tracking_uri)
    try:
        version = client.get_model_version(name, ref)
    except MlflowException:
        raise RegistryError(f"{name} version {ref} does not exist in {client.tracking_uri} (see `drlrec models`)") from None
    return _download_bundle(client, version, device=device)
