"""The registry gate on a real (temporary) MLflow store, with a DQN-LSTM trained on a tiny pipeline.

A worse challenger must not pass the gate; rollback returns to the previous champion; a champion
evaluated on other data is scored again on the challenger's split; load_champion gives back the model
with the shared interface and its vocabularies.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from drlrec import registry
from drlrec.config import load_params
from drlrec.errors import RegistryError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """synth -> ingest -> featurize -> train -> evaluate on the tiny config; bundle written; MLflow in tmp."""
    from pipeline_config import run_pipeline, write_pipeline_params

    from drlrec.bundle import write_bundle

    tmp = tmp_path_factory.mktemp("registry")
    params = load_params(write_pipeline_params(tmp))
    run_pipeline(params, tmp, evaluate=True)
    bundle = write_bundle(params.paths.model, params.paths.features, params.featurize, params.paths.bundle)
    metrics = json.loads(Path(params.paths.metrics).read_text())
    return params, bundle, metrics, f"sqlite:///{tmp / 'mlflow.db'}"


def _with_metric(metrics: dict, value: float, metric: str = "next_item/ndcg_at_10") -> dict:
    group, name = metric.split("/")
    out = copy.deepcopy(metrics)
    out["metrics"][group][name]["value"] = value
    return out


@pytest.fixture()
def store(tmp_path: Path) -> str:
    """A fresh, empty MLflow store for one test."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_first_model_becomes_champion_with_provenance_tags_and_loads_back(trained, store) -> None:
    params, bundle, metrics, _ = trained
    decision = registry.register_model(params, bundle, metrics, split_id="split-a", tracking_uri=store)
    assert decision["promoted"] and decision["reason"] == "no champion yet"
    assert decision["version"] == "1" and decision["champion"] == "1"
    assert registry.alias_version("challenger", store) == "1"

    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=store).get_model_version("drlrec", "1").tags
    for key in ("data_hash", "git_commit", "params_hash", "eval_split", "metric.next_item/ndcg_at_10", "gate.promoted"):
        assert tags.get(key), key
    value = metrics["metrics"]["next_item"]["ndcg_at_10"]["value"]
    assert float(tags["metric.next_item/ndcg_at_10"]) == pytest.approx(value, abs=1e-6)

    champion = registry.load_champion(tracking_uri=store)
    assert champion.version == "1"
    assert champion.metrics["next_item/ndcg_at_10"] == pytest.approx(value, abs=1e-6)
    # same network, same vocabularies: identical scores to the bundle on disk
    from drlrec.bundle import load_bundle
    from drlrec.features.transitions import load_split
    from drlrec.rl.logged import state_batch

    local = load_bundle(bundle)
    states = state_batch(load_split(params.paths.features, "valid"), np.arange(5))
    np.testing.assert_allclose(champion.model.score(states), local.model.score(states), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(champion.item_vocab.raw_ids, local.item_vocab.raw_ids)
    items, _ = champion.model.recommend(states, 10)
    assert items.shape == (5, 10) and (items >= 2).all()


def test_worse_challenger_is_not_promoted_and_rollback_works(trained, store) -> None:
    params, bundle, metrics, _ = trained
    register = lambda value: registry.register_model(  # noqa: E731
        params, bundle, _with_metric(metrics, value), split_id="split-a", tracking_uri=store
    )
    assert register(0.10)["promoted"]  # v1: first champion
    better = register(0.20)  # v2 beats it
    assert better["promoted"] and better["champion_value"] == pytest.approx(0.10)
    worse = register(0.15)  # v3 is worse than v2
    assert not worse["promoted"]
    assert worse["champion_version"] == "2" and worse["champion_value"] == pytest.approx(0.20)
    assert worse["champion_value_source"].startswith("recorded")
    assert registry.alias_version("champion", store) == "2"
    assert registry.alias_version("challenger", store) == "3"

    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=store).get_model_version("drlrec", "3").tags
    assert tags["gate.promoted"] == "False"
    assert float(tags["gate.champion_value"]) == pytest.approx(0.20)
    assert float(tags["gate.challenger_value"]) == pytest.approx(0.15)

    assert registry.rollback(tracking_uri=store) == {"model_name": "drlrec", "from": "2", "champion": "1"}
    assert registry.alias_version("champion", store) == "1"
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(tracking_uri=store)
    # a manual promote is recorded and can itself be rolled back
    assert registry.promote(3, tracking_uri=store)["champion"] == "3"
    assert registry.rollback(tracking_uri=store)["champion"] == "1"
    with pytest.raises(RegistryError, match="no version 99"):
        registry.promote(99, tracking_uri=store)


def test_margin_blocks_a_small_improvement(trained, store) -> None:
    import dataclasses

    params, bundle, metrics, _ = trained
    strict = dataclasses.replace(params, register=dataclasses.replace(params.register, margin=0.05))
    registry.register_model(strict, bundle, _with_metric(metrics, 0.10), split_id="s", tracking_uri=store)
    small = registry.register_model(strict, bundle, _with_metric(metrics, 0.12), split_id="s", tracking_uri=store)
    assert not small["promoted"]
    large = registry.register_model(strict, bundle, _with_metric(metrics, 0.16), split_id="s", tracking_uri=store)
    assert large["promoted"] and registry.alias_version("champion", store) == "3"


def test_ope_gate_blocks_a_better_metric_when_the_off_policy_bound_is_low(trained, store) -> None:
    """register.ope_gate: asked only over an existing champion; a DR lower bound below the champion's
    logged rate minus ope_margin, or logs it cannot use, keep the challenger out; figures become tags."""
    import dataclasses

    from drlrec.errors import InputError
    from drlrec.ope_logs import ope_gate

    params, bundle, metrics, _ = trained
    gated = dataclasses.replace(params, register=dataclasses.replace(params.register, ope_gate=True, ope_margin=0.01))
    asked = []

    def check_with(dr_low: float):
        def check():
            asked.append(dr_low)
            result = {"n_impressions": 450, "unsupported_mass": 0.0, "click": {"estimates": {
                "dr": {"value": dr_low + 0.02, "ci_low": dr_low}, "observed": {"value": 0.30}}}}
            return ope_gate(result, "click", gated.register.ope_margin)
        return check

    first = registry.register_model(gated, bundle, _with_metric(metrics, 0.10), split_id="s", tracking_uri=store,
                                    ope_check=check_with(0.0))
    assert first["promoted"] and asked == []  # no champion yet: nothing to compare with
    low = registry.register_model(gated, bundle, _with_metric(metrics, 0.20), split_id="s", tracking_uri=store,
                                  ope_check=check_with(0.28))
    assert not low["promoted"] and "OPE gate: DR click lower bound 0.2800 < logged 0.3000" in low["reason"]
    from mlflow import MlflowClient

    tags = MlflowClient(store).get_model_version("drlrec", low["version"]).tags
    assert float(tags["gate.ope_dr_ci_low"]) == 0.28 and float(tags["gate.ope_observed"]) == 0.30 and tags["gate.promoted"] == "False"

    def no_logs():
        raise InputError("artifacts/exposures.csv: no exposure log")

    blind = registry.register_model(gated, bundle, _with_metric(metrics, 0.20), split_id="s", tracking_uri=store, ope_check=no_logs)
    assert not blind["promoted"] and "OPE gate: artifacts/exposures.csv: no exposure log" in blind["reason"]
    good = registry.register_model(gated, bundle, _with_metric(metrics, 0.20), split_id="s", tracking_uri=store,
                                   ope_check=check_with(0.295))
    assert good["promoted"] and registry.alias_version("champion", store) == good["version"]
    assert asked == [0.28, 0.295]


def test_champion_from_another_split_is_reevaluated_on_the_challengers_split(trained, store) -> None:
    """The champion's recorded figure (0.9, on split 'old') is not comparable: the gate scores the
    champion's bundle again on the current events and compares with that figure instead."""
    params, bundle, metrics, _ = trained
    registry.register_model(params, bundle, _with_metric(metrics, 0.9), split_id="old", tracking_uri=store)
    from drlrec.evaluate import evaluate_bundle

    with pytest.raises(RegistryError, match="needs an evaluator"):  # the registry itself never evaluates
        registry.register_model(params, bundle, metrics, split_id="new", tracking_uri=store)
    assert registry.alias_version("challenger", store) == "1"  # and the failed call registered nothing
    decision = registry.register_model(params, bundle, metrics, split_id="new", tracking_uri=store,
                                       reevaluate=lambda champion: evaluate_bundle(champion, params))
    assert decision["champion_value_source"] == "re-evaluated on the challenger's split"
    # the same model re-featurized with its own vocabularies scores what the evaluate stage measured
    actual = metrics["metrics"]["next_item"]["ndcg_at_10"]["value"]
    assert decision["champion_value"] == pytest.approx(actual, abs=1e-6)
    assert not decision["promoted"]  # equal, not better


def test_load_champion_without_a_champion_is_a_clear_error(store) -> None:
    with pytest.raises(RegistryError, match="drlrec@champion does not exist"):
        registry.load_champion(tracking_uri=store)


def test_cli_promote_rollback_and_models_print_one_line_errors(trained, store, monkeypatch, capsys) -> None:
    from drlrec.cli import main

    params, bundle, metrics, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    registry.register_model(params, bundle, _with_metric(metrics, 0.1), split_id="s", tracking_uri=store)
    registry.register_model(params, bundle, _with_metric(metrics, 0.05), split_id="s", tracking_uri=store)
    assert main(["promote", "--version", "2"]) == 0
    assert "drlrec@champion -> version 2 (was 1)" in capsys.readouterr().out
    assert main(["rollback"]) == 0
    assert "-> version 1 (was 2)" in capsys.readouterr().out
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing and "challenger" in listing
    assert main(["promote", "--version", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["drlrec: error: model 'drlrec' has no version 7"]
