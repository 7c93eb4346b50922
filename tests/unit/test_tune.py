"""drlrec tune: search spaces fit params, a real resumable study on tiny features, --write-params edits in place.

The study tests featurize one small generated log (150 users) into a folder without the test split, then tune
item_knn (a fit takes well under a second) with MLflow in tmp_path.
"""

from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path

import pytest
import yaml

from drlrec.config import Params, load_params, params_from_dict, params_to_dict
from drlrec.errors import ConfigError
from drlrec.tune import (
    NOTHING_TO_TUNE,
    SEARCH_SPACES,
    Choice,
    FloatRange,
    IntRange,
    current_values,
    edit_params_text,
    search_space,
    validate_space,
    with_values,
    yaml_scalar,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_and_type(key: str):
    """(default value, declared type) of a params key path, walked independently of drlrec.tune."""
    node, annotation = Params(), Params
    for part in key.split("."):
        if dataclasses.is_dataclass(node):
            annotation = typing.get_type_hints(type(node))[part]
            node = getattr(node, part)
        else:
            assert isinstance(node, dict) and part in node, key
            node, annotation = node[part], type(node[part])
    return node, annotation


# ---------------------------------------------------------------------------------------------- spaces


@pytest.mark.parametrize("model", sorted(SEARCH_SPACES))
def test_every_search_space_key_exists_in_params_with_the_right_type(model: str) -> None:
    space = SEARCH_SPACES[model]
    assert space, model
    validate_space(space, Params())
    extreme: dict[str, typing.Any] = {}
    for key, dim in space.items():
        default, annotation = _default_and_type(key)
        assert not dataclasses.is_dataclass(default) and not isinstance(default, dict), f"{key} is a section"
        if isinstance(dim, FloatRange):
            assert annotation is float and isinstance(default, float) and dim.low < dim.high, key
            extreme[key] = float(dim.high)
        elif isinstance(dim, IntRange):
            assert annotation is int and isinstance(default, int) and dim.low < dim.high, key
            extreme[key] = int(dim.high)
        else:
            assert isinstance(dim, Choice) and len(set(dim.values)) == len(dim.values) >= 2, key
            if typing.get_origin(annotation) is typing.Literal:
                assert set(dim.values) <= set(typing.get_args(annotation)), key
            else:
                assert all(type(v) is annotation for v in dim.values), key
            extreme[key] = dim.values[-1]
    tuned = with_values(Params(), extreme)
    # the loader (type checks included) reads the trial's params back unchanged
    assert params_from_dict(params_to_dict(tuned)) == tuned
    for key, value in extreme.items():
        assert _default_and_type_of(tuned, key) == value


def _default_and_type_of(params: Params, key: str):
    node: typing.Any = params
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def test_every_registered_model_has_a_space_or_a_reason() -> None:
    from drlrec.model_factory import MODELS

    for name in MODELS:
        assert (name in SEARCH_SPACES) != (name in NOTHING_TO_TUNE), name
        if name in SEARCH_SPACES:
            assert search_space(name) is SEARCH_SPACES[name]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"baselines.item_knn.nope": FloatRange(0.1, 1.0)}, "no such key"),
        ({"baselines.item_knn": FloatRange(0.1, 1.0)}, "a section"),
        ({"baselines.item_knn.window": FloatRange(1.0, 5.0)}, "does not fit"),
        ({"train.lr": FloatRange(0.0, 0.1, log=True)}, "does not fit"),
        ({"model.variant": Choice(("lstm", "gru"))}, "params rejects"),
        ({"model.hidden": Choice((64, 128.0))}, "params rejects"),
        ({"model.dropout": Choice((0, 0.5))}, "params holds"),
    ],
)
def test_bad_spaces_are_one_line_config_errors(space, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        validate_space(space, Params())
    assert "\n" not in str(info.value)


def test_trial_zero_is_exactly_params_even_where_params_lies_outside_the_space() -> None:
    """The DQN-LSTM ships repeat_init 4.0 (the space searches [0, 3]) and cold_item_rate -1 ("the validation
    period's cold share"): before `covering` and `resolved_sentinels`, Optuna replaced both by random draws
    in trial 0, which was then not params."""
    from types import SimpleNamespace

    import numpy as np

    from drlrec.tune import covering, resolved_sentinels

    params = with_values(Params(), {"model.repeat_init": 4.0})  # the shipped value until 2026-12-07
    space = search_space("dqn_lstm")
    with pytest.raises(ConfigError, match="outside the search space") as info:
        current_values(params, space)  # never silently dropped any more
    assert "\n" not in str(info.value)

    # the validation split as cold_rate reads it: 1 of 4 next items unknown (index 1)
    data = SimpleNamespace(valid=SimpleNamespace(num_transitions=4, action_item=np.array([5, 1, 7, 9])))
    resolved = resolved_sentinels("dqn_lstm", params, data)
    assert params.train.cold_item_rate == -1.0 and resolved.train.cold_item_rate == 0.25
    assert resolved_sentinels("item_knn", params, None) is params  # nothing to resolve elsewhere
    wide = covering(space, resolved)
    first = current_values(resolved, wide)
    assert first["model.repeat_init"] == 4.0
    assert first["train.cold_item_rate"] == 0.25
    assert wide["model.repeat_init"] == FloatRange(0.0, 4.0) and wide["train.lr"] == space["train.lr"]
    assert set(first) == set(space)  # every key of the space is in trial 0
    # a choice gains the value; a value inside changes nothing; a log range cannot reach 0
    odd = with_values(params, {"model.hidden": 96})
    assert covering({"model.hidden": Choice((64, 128))}, odd) == {"model.hidden": Choice((64, 128, 96))}
    assert covering({"train.lr": FloatRange(1e-4, 3e-3, log=True)}, params) == {"train.lr": FloatRange(1e-4, 3e-3, log=True)}
    with pytest.raises(ConfigError, match="log range"):
        covering({"train.lr": FloatRange(1e-4, 3e-3, log=True)}, with_values(params, {"train.lr": 0.0}))


def test_models_without_a_space_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from drlrec.cli import main

    with pytest.raises(ConfigError, match="nothing to tune for 'popularity'"):
        search_space("popularity")
    assert main(["tune", "--model", "no_such_model", "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("drlrec: error: unknown model 'no_such_model'"), err


# ---------------------------------------------------------------------------------------------- --write-params (text)


def test_yaml_scalar_reads_back_as_the_same_type() -> None:
    for value in (1e-05, 0.000123456789, 3.0, 250, 0.5, True, "div", "0.5"):
        text = yaml_scalar(value)
        back = yaml.safe_load(text)
        assert type(back) is type(value), (value, text)
        assert back == pytest.approx(value, rel=1e-5) if isinstance(value, float) else back == value
    assert yaml_scalar(1e-05) == "1.0e-05"


def test_edit_params_text_adds_keys_replaces_old_notes_and_refuses_inline_sections() -> None:
    text = (
        "# top comment\n"
        "a:\n"
        "  x: 1          # why x\n"
        "  b:\n"
        "    y: 0.5\n"
        "    z: 2\n"
        "  w: {p: 1.0, q: 2.0}\n"
        "  # trailing comment line\n"
        "c:\n"
        "  x: 7\n"
    )
    out = edit_params_text(text, {"a.x": 3, "a.b.y": 0.25, "a.b.new": 4, "c.x": 9}, "tuned: valid NDCG@10 0.1234 (drlrec tune, 5 trials)")
    lines = out.splitlines()
    assert lines[0] == "# top comment" and "  # trailing comment line" in lines
    assert lines[2] == "  x: 3          # tuned: valid NDCG@10 0.1234 (drlrec tune, 5 trials); why x"
    assert lines[4].startswith("    y: 0.25  # tuned:")
    assert lines[6].startswith("    new: 4  # tuned:")  # added at the end of its own section, not of a.
    loaded = yaml.safe_load(out)
    assert loaded == {"a": {"x": 3, "b": {"y": 0.25, "z": 2, "new": 4}, "w": {"p": 1.0, "q": 2.0}}, "c": {"x": 9}}
    # tuning again replaces the earlier note instead of stacking notes
    again = edit_params_text(out, {"a.x": 5}, "tuned: valid NDCG@10 0.2000 (drlrec tune, 9 trials)")
    assert again.splitlines()[2] == "  x: 5          # tuned: valid NDCG@10 0.2000 (drlrec tune, 9 trials); why x"
    with pytest.raises(ConfigError, match="written inline"):
        edit_params_text(text, {"a.w.p": 2.0}, "tuned")
    with pytest.raises(ConfigError, match="no section a.nope"):
        edit_params_text(text, {"a.nope.k": 1}, "tuned")
    with pytest.raises(ConfigError, match="a section"):
        edit_params_text(text, {"a.b": 1}, "tuned")


# ---------------------------------------------------------------------------------------------- a real study


@pytest.fixture(scope="module")
def features_without_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Featurize outputs of a small generated log, with the test split removed."""
    from drlrec.config import TAOBAO_WINDOW_START, FeaturizeConfig, SynthConfig
    from drlrec.data.synth import generate
    from drlrec.features.featurize import featurize, write_featurize_outputs
    from drlrec.features.transitions import split_path

    folder = tmp_path_factory.mktemp("features")
    events = generate(SynthConfig(users=150, items=2000, categories=80), seed=0, progress=False).to_pandas()
    write_featurize_outputs(featurize(events, FeaturizeConfig(), TAOBAO_WINDOW_START), folder)
    shutil.rmtree(split_path(folder, "test"))
    return folder


def _parent_and_children(tracking_uri: str) -> tuple[list, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("drlrec").experiment_id], max_results=1000)
    parents = [r for r in runs if r.info.run_name == "tune-item_knn"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return parents, children


def test_item_knn_study_persists_resumes_logs_and_writes_params(
    features_without_test: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import drlrec.features.transitions as transitions
    from drlrec.cli import main
    from drlrec.evaluate import validation_evaluator
    from drlrec.model_factory import fit_model
    from drlrec.models.base import TrainingData
    from drlrec.stages import tune_stage

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    loaded_splits: list[str] = []
    real_load_split = transitions.load_split
    monkeypatch.setattr(
        transitions, "load_split", lambda folder, split: (loaded_splits.append(split), real_load_split(folder, split))[1]
    )
    params_copy = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params_copy)
    before_text = params_copy.read_text()
    overrides = [
        f"paths.features={features_without_test}",
        f"paths.tune={tmp_path / 'tune'}",
        "base.progress=false",
        "tune.eval_max_events=400",
        "tune.startup_trials=2",
    ]
    params = load_params(params_copy, overrides)

    first = tune_stage(params, "item_knn", trials=3)
    assert (first.ran, len(first.trials)) == (3, 3)
    # trial 0 of a new study is params' own values, so the best is never worse than what params ships with
    assert first.trials[0].params == current_values(params, search_space("item_knn"))
    assert first.trials[0].params["baselines.item_knn.self_weight"] == params.baselines.item_knn.self_weight
    assert first.best.value >= first.trials[0].value
    assert (tmp_path / "tune" / "item_knn.db").is_file()
    assert "test" not in loaded_splits and {"train", "valid"} <= set(loaded_splits)
    parents, children = _parent_and_children(tracking_uri)
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all("valid/ndcg_at_10" in c.data.metrics and "baselines.item_knn.window" in c.data.params for c in children)

    second = tune_stage(params, "item_knn", trials=4)
    assert second.study == first.study
    assert (second.ran, [t.number for t in second.trials]) == (1, [0, 1, 2, 3])
    assert second.trials[3].params not in [t.params for t in first.trials]  # a resumed call draws afresh
    parents, children = _parent_and_children(tracking_uri)
    assert len(parents) == 2 and len(children) == 4
    payload = json.loads((tmp_path / "tune" / "item_knn.json").read_text())
    assert payload["finished_trials"] == 4 and payload["best"]["value"] == max(t.value for t in second.trials)

    # the stored figure is what the objective says: a refit with the best values scores it again
    data = TrainingData.load(features_without_test)
    evaluate, index = validation_evaluator(data.valid, 400, params.base.seed)
    refit = fit_model("item_knn", data, with_values(params, second.best.params))
    assert len(index) == second.valid_events
    assert evaluate(refit)["valid/ndcg_at_10"] == pytest.approx(second.best.value, abs=1e-12)
    assert "test" not in loaded_splits

    # the CLI on the commented copy: the study is complete (no trial runs), the best values go into the file
    capsys.readouterr()
    args = ["tune", "--model", "item_knn", "--trials", "4", "--write-params", "--params", str(params_copy)]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    out, err = capsys.readouterr()
    assert "| trial | valid NDCG@10 |" in out and "0 trial(s) run now, 4 finished" in err
    after_text = params_copy.read_text()
    before_lines, after_lines = before_text.splitlines(), after_text.splitlines()
    assert len(before_lines) == len(after_lines)
    assert [ln for ln in before_lines if ln.lstrip().startswith("#")] == [ln for ln in after_lines if ln.lstrip().startswith("#")]
    changed = [i for i, (a, b) in enumerate(zip(before_lines, after_lines, strict=True)) if a != b]
    assert len(changed) == len(second.best.params)
    note = f"# tuned: valid NDCG@10 {second.best.value:.4f} (drlrec tune, 4 trials)"
    assert all(note in after_lines[i] for i in changed)
    assert "re-views dominate Taobao-like logs" in after_text  # the earlier comment of self_weight is kept
    before_doc, after_doc = yaml.safe_load(before_text), yaml.safe_load(after_text)
    knn_before, knn_after = before_doc["baselines"].pop("item_knn"), after_doc["baselines"].pop("item_knn")
    assert before_doc == after_doc  # nothing outside baselines.item_knn moved
    for key, value in second.best.params.items():
        leaf = key.rsplit(".", 1)[1]
        assert knn_after[leaf] == pytest.approx(value, rel=1e-5)
        assert type(knn_after[leaf]) is type(knn_before[leaf])
    assert set(knn_after) == set(knn_before)
    assert load_params(params_copy).baselines.item_knn.neighbours == second.best.params["baselines.item_knn.neighbours"]
