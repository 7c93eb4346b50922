"""The user simulator: valid probabilities, seeded sampling that follows them, held-out ranking and
calibration, the behaviour and leave models, save/load."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from drlrec.config import SimulatorConfig
from drlrec.errors import ConfigError, InputError
from drlrec.models.base import StateBatch
from drlrec.rl.logged import state_batch
from drlrec.rl.simulator import (
    CALIBRATION_TARGETS,
    UserSimulator,
    calibrate,
    calibration_markdown,
    fit_simulator,
    plot_calibration,
    repeat_level,
    simulator_calibration,
)
from drlrec.schema import BUY


def _states_and_lists(featurized, n: int = 64, k: int = 10, seed: int = 0) -> tuple[StateBatch, np.ndarray]:
    """n valid states with full histories; each list holds the state's last k // 2 items (likely), then
    random catalogue items."""
    valid = featurized.data.valid
    rng = np.random.default_rng(seed)
    index = rng.choice(np.flatnonzero(valid.state_rows()[:, 0] > 0), size=n, replace=False)
    states = state_batch(valid, index)
    random_items = rng.integers(2, featurized.data.n_items, size=(n, k))
    lists = np.concatenate([states.item_seq[:, -k // 2 :], random_items[:, : k - k // 2]], axis=1)
    return states, lists.astype(np.int64)


def test_probabilities_are_valid(featurized, simulator) -> None:
    states, lists = _states_and_lists(featurized)
    lists[:, 0] = 0  # padding
    lists[:, 1] = 1  # unknown
    lists[:, 3] = lists[:, 2]  # a repeat within the list
    out = simulator.probabilities(states, lists, session_position=np.arange(len(lists)))
    prob = out.behavior_prob
    assert prob.shape == (len(lists), lists.shape[1], 4) and prob.dtype == np.float32
    assert np.all(prob >= 0) and np.all(prob <= 1)
    interact = prob.sum(axis=-1)
    assert np.all(interact <= 1 + 1e-6)
    assert np.all(prob[..., BUY] <= interact)
    np.testing.assert_array_equal(interact[:, :2], 0.0)  # padding and unknown are never acted on
    np.testing.assert_array_equal(interact[:, 3], 0.0)  # nor the second copy of an item
    assert np.all(interact[:, 2] > 0)
    np.testing.assert_allclose(
        simulator.behavior_given_interaction(states, lists).sum(axis=-1), 1.0, rtol=1e-5
    )
    assert out.leave_prob.shape == (len(lists),)
    assert np.all((out.leave_prob >= 0) & (out.leave_prob <= 1))
    # items of the state are much likelier to be acted on than random catalogue items
    assert interact[:, [2, 4]].mean() > 5 * interact[:, 5:].mean()  # measured: about 13x


def test_sampling_is_seeded_and_follows_the_probabilities(featurized, simulator) -> None:
    sim = copy.copy(simulator)
    sim.exposure_boost = 5.0  # larger probabilities: a sharper frequency check
    states, lists = _states_and_lists(featurized, n=1)
    reps = 40000
    many = StateBatch(*(np.repeat(a, reps, axis=0) for a in states))
    many_lists = np.repeat(lists, reps, axis=0)
    first = sim.sample(many, many_lists, np.random.default_rng(3))
    again = sim.sample(many, many_lists, np.random.default_rng(3))
    other = sim.sample(many, many_lists, np.random.default_rng(4))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.slot, other.slot)

    out = sim.probabilities(states, lists)
    expected = out.behavior_prob[0] / max(1.0, float(out.behavior_prob[0].sum()))  # [K, 4]
    observed = np.zeros_like(expected)
    acted = first.slot >= 0
    np.add.at(observed, (first.slot[acted], first.behavior[acted]), 1.0 / reps)
    np.testing.assert_allclose(observed, expected, atol=0.01)
    assert np.all(first.item[acted] == lists[0, first.slot[acted]])
    assert np.all(first.behavior[~acted] == -1) and np.all(first.item[~acted] == -1)
    # leaving: marginal rate over all draws equals the predicted leave probability
    assert abs(first.left.mean() - float(out.leave_prob[0])) < 0.01


def test_fit_is_deterministic_for_a_seed(featurized) -> None:
    cfg = dataclasses.replace(SimulatorConfig(), epochs=1)
    a = fit_simulator(featurized.data, featurized.globals.stats, cfg, seed=5)
    b = fit_simulator(featurized.data, featurized.globals.stats, cfg, seed=5)
    c = fit_simulator(featurized.data, featurized.globals.stats, cfg, seed=6)
    np.testing.assert_array_equal(a.net.t["item_out"].numpy(), b.net.t["item_out"].numpy())
    assert not np.array_equal(a.net.t["item_out"].numpy(), c.net.t["item_out"].numpy())


def test_ranks_held_out_next_items_above_random_items_and_beats_popularity(featurized, simulator) -> None:
    result = calibrate(simulator, featurized.data.valid, seed=0)
    # sampled AUC of popularity alone on the same design
    valid = featurized.data.valid
    rng = np.random.default_rng(0)
    logged = valid.action_item.astype(np.int64)
    logged = logged[logged >= 2]
    negatives = rng.integers(2, featurized.data.n_items, size=(len(logged), 4))
    count = featurized.globals.stats.item_count
    popularity_auc = np.mean(
        (count[logged, None] > count[negatives]) + 0.5 * (count[logged, None] == count[negatives])
    )
    # measured: simulator 0.76, popularity 0.57
    assert result.auc > 0.70, result.auc
    assert result.auc > popularity_auc + 0.1, (result.auc, popularity_auc)


def test_calibration_table_is_complete_and_calibrated(featurized, simulator) -> None:
    result = calibrate(simulator, featurized.data.valid, seed=0, max_events=2000)
    table = result.table
    assert result.n_events == 2000 and result.negatives == simulator.negatives
    assert list(table.columns) == ["target", "decile", "n", "mean_predicted", "observed_rate"]
    assert len(table) == 10 * len(CALIBRATION_TARGETS)
    for target in CALIBRATION_TARGETS:
        rows = table[table["target"] == target]
        assert rows["n"].sum() == 2000 * (1 + result.negatives)
        assert np.all(np.diff(rows["mean_predicted"].to_numpy()) >= 0)
    interact = table[table["target"] == "interact"]
    observed = interact["observed_rate"].to_numpy()
    # observed rates rise with the prediction, and the predictions are close to them
    assert observed[-1] > 4 * observed[0]
    assert observed[-2:].mean() > observed[:5].mean() + 0.2
    assert np.abs(interact["mean_predicted"] - interact["observed_rate"]).mean() < 0.06  # measured 0.024
    # the overall predicted interaction rate matches the design's base rate 1 / (1 + negatives)
    assert abs(float((interact["mean_predicted"] * interact["n"]).sum() / interact["n"].sum()) - 0.2) < 0.04
    conditional = result.conditional.set_index("behavior")
    np.testing.assert_allclose(conditional["predicted"].sum(), 1.0, rtol=1e-5)
    assert np.all(np.abs(conditional["predicted"] - conditional["observed"]) < 0.04)


def test_behavior_model_learns_the_funnel_and_leave_hazard_matches_the_logs(featurized, simulator) -> None:
    # synth buys mostly items viewed or carted before: a carted item in the state converts more often
    multiplier = simulator.repeat_multiplier  # [new, viewed, carted_or_faved] x [pv, cart, fav, buy]
    assert multiplier[2, BUY] > 2 * multiplier[0, BUY]
    assert multiplier[0, 0] > multiplier[1, 0]  # fresh items are mostly just viewed
    train = featurized.data.train
    position = np.minimum(train.session_position, len(simulator.leave_hazard) - 1)
    predicted = simulator.leave_hazard[position].mean()
    assert abs(predicted - train.session_end.mean()) < 0.01


def test_repeat_level() -> None:
    item_seq = np.array([[0, 5, 6, 7]])
    behavior_seq = np.array([[0, 1, 2, 1]])  # 5 viewed, 6 carted, 7 viewed
    items = np.array([[5, 6, 7, 8, 0]])
    np.testing.assert_array_equal(repeat_level(item_seq, behavior_seq, items), [[1, 2, 1, 0, 0]])


def test_save_load_round_trip_and_reports(featurized, simulator, tmp_path: Path) -> None:
    path = simulator.save(tmp_path / "sim.npz")
    loaded = UserSimulator.load(path)
    states, lists = _states_and_lists(featurized)
    a = simulator.probabilities(states, lists, session_position=3)
    b = loaded.probabilities(states, lists, session_position=3)
    np.testing.assert_array_equal(a.behavior_prob, b.behavior_prob)
    np.testing.assert_array_equal(a.leave_prob, b.leave_prob)
    ra = simulator.sample(states, lists, np.random.default_rng(1))
    rb = loaded.sample(states, lists, np.random.default_rng(1))
    np.testing.assert_array_equal(ra.item, rb.item)
    (tmp_path / "junk.npz").write_bytes(b"not a simulator")
    with pytest.raises(InputError):
        UserSimulator.load(tmp_path / "junk.npz")
    with pytest.raises(InputError):
        UserSimulator.load(tmp_path / "absent.npz")

    result = calibrate(loaded, featurized.data.valid, seed=0, max_events=500)
    text = calibration_markdown(result)
    assert "| decile | n | mean predicted | observed rate |" in text and "**buy**" in text
    png = plot_calibration(result, tmp_path / "calibration.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulator_calibration_writes_its_artifacts(featurized, tmp_path: Path) -> None:
    cfg = dataclasses.replace(SimulatorConfig(), epochs=1, calibration_max_events=300)
    _, result = simulator_calibration(featurized.features_dir, cfg, seed=0, out_dir=tmp_path)
    assert result.n_events == 300
    assert {p.name for p in tmp_path.iterdir()} >= {
        "simulator.npz",
        "calibration.md",
        "calibration.csv",
        "calibration.png",
    }


def test_bad_inputs_are_clear_errors(featurized, simulator) -> None:
    with pytest.raises(ConfigError, match="simulator.factors"):
        fit_simulator(
            featurized.data, featurized.globals.stats, dataclasses.replace(SimulatorConfig(), factors=0), 0
        )
    with pytest.raises(ConfigError, match="no_click_leave"):
        fit_simulator(
            featurized.data,
            featurized.globals.stats,
            dataclasses.replace(SimulatorConfig(), no_click_leave=2.0),
            0,
        )
    states, lists = _states_and_lists(featurized, n=4)
    with pytest.raises(InputError, match="outside"):
        simulator.probabilities(states, lists + featurized.data.n_items)
    with pytest.raises(InputError, match=r"\[B, K\]"):
        simulator.probabilities(states, lists[:2])
