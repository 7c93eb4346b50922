"""featurize: temporal split, vocabularies, sessions, profiles, step features, transitions, leakage, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drlrec.config import FeaturizeConfig
from drlrec.errors import InputError
from drlrec.features.featurize import (
    REPORT_FILE,
    EventFeatures,
    TrainGlobals,
    build_transitions,
    featurize,
    featurize_report,
)
from drlrec.features.profile import PROFILE_FEATURES, user_profiles
from drlrec.features.sessions import sessionize
from drlrec.features.split import SPLITS, TEST, TRAIN, VALID, assign_split, split_boundaries
from drlrec.features.states import Histories, build_states
from drlrec.features.steps import STEP_FEATURES
from drlrec.features.transitions import (
    STORED_FIELDS,
    Transitions,
    gather_batch,
    load_split,
    save_split,
    split_path,
)
from drlrec.features.users import user_index
from drlrec.features.vocab import PAD, UNKNOWN, Vocab, fit_vocab
from drlrec.schema import BUY, EVENTS_SCHEMA

START = 1511539200  # 2017-11-25 00:00 UTC+8
DAY = 86400
CFG = FeaturizeConfig()


def make_events(
    users: int = 30, per_user: int = 60, seed: int = 0, start: int = START, days: int = 9
) -> pd.DataFrame:
    """A small sorted log: Zipf-ish items, a few categories, clustered times (so sessions form)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 2 * per_user, users)
    user = np.repeat(np.arange(1, users + 1) * 7, counts)
    n = len(user)
    # bursts of activity: a random base time per burst plus small gaps
    ts = start + rng.integers(0, days * DAY, n) - rng.integers(0, 5, n) * 600
    ts = np.clip(ts, start, start + days * DAY - 1)
    item = (rng.zipf(1.3, n) % 400) + 1000
    category = item % 23 + 50
    behavior = rng.choice(4, n, p=[0.75, 0.1, 0.08, 0.07]).astype(np.int8)
    frame = pd.DataFrame(
        {"user_id": user, "item_id": item, "category_id": category, "behavior": behavior, "timestamp": ts}
    )
    frame = (
        frame.sort_values(["user_id", "timestamp"], kind="stable").drop_duplicates().reset_index(drop=True)
    )
    return frame.astype({"user_id": "int64", "item_id": "int64", "category_id": "int64", "behavior": "int8"})


def write_events(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, schema=EVENTS_SCHEMA, preserve_index=False), path)
    return path


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return make_events()


@pytest.fixture(scope="module")
def result(events):
    return featurize(events, CFG, START)


# ---------------------------------------------------------------------------------------------- split


def test_split_boundaries_later_split_owns_the_boundary() -> None:
    bounds = split_boundaries(START, CFG)
    assert bounds.train_end == START + 7 * DAY and bounds.valid_end == START + 8 * DAY
    ts = np.array(
        [
            START - 5,
            START,
            bounds.train_end - 1,
            bounds.train_end,
            bounds.valid_end - 1,
            bounds.valid_end,
            START + 9 * DAY - 1,
            START + 12 * DAY,
        ]
    )
    assert assign_split(ts, bounds).tolist() == [TRAIN, TRAIN, TRAIN, VALID, VALID, TEST, TEST, TEST]
    assert bounds.to_dict()["train_end_iso"] == "2017-12-02T00:00:00+08:00"


def test_train_holds_days_one_to_seven(result) -> None:
    ev = result.events
    day = (ev.timestamp - START) // DAY  # 0-based day
    assert set(np.unique(day[ev.split == TRAIN])) == set(range(7))
    assert set(np.unique(day[ev.split == VALID])) == {7}
    assert set(np.unique(day[ev.split == TEST])) == {8}


def test_shifted_window_splits_by_the_same_relative_days() -> None:
    shift = 40 * DAY + 3600
    base = make_events(users=10, seed=3)
    shifted = base.assign(timestamp=base["timestamp"] + shift)
    a = featurize(base, CFG, START)
    b = featurize(shifted, CFG, START + shift)
    np.testing.assert_array_equal(a.events.split, b.events.split)
    custom = dataclasses.replace(CFG, train_days=5, valid_days=2)
    bounds = split_boundaries(START + shift, custom)
    assert (bounds.train_end, bounds.valid_end) == (START + shift + 5 * DAY, START + shift + 7 * DAY)


# ---------------------------------------------------------------------------------------------- vocab


def test_vocab_round_trip_unknown_min_count_and_pad(tmp_path: Path) -> None:
    train_ids = np.array([5, 5, 9, 9, 9, 2, 100, 100], dtype=np.int64)
    vocab = fit_vocab(train_ids, min_count=2)
    assert vocab.raw_ids.tolist() == [5, 9, 100]  # 2 was seen once: below min_count
    idx = np.arange(vocab.size)
    assert vocab.encode(vocab.decode(idx[2:])).tolist() == idx[2:].tolist()
    assert vocab.decode(np.array([PAD, UNKNOWN])).tolist() == [-1, -1]
    encoded = vocab.encode(np.array([2, 5, 7, 9, 100, 10**12]))
    assert encoded.dtype == np.int32
    assert encoded.tolist() == [UNKNOWN, 2, UNKNOWN, 3, 4, UNKNOWN]
    assert PAD not in vocab.encode(np.arange(0, 200)).tolist()
    assert fit_vocab(train_ids, min_count=1).raw_ids.tolist() == [2, 5, 9, 100]
    vocab.save(tmp_path / "v.npz")
    loaded = Vocab.load(tmp_path / "v.npz")
    probe = np.array([0, 2, 5, 9, 11, 100, 101])
    np.testing.assert_array_equal(loaded.encode(probe), vocab.encode(probe))
    with pytest.raises(InputError):
        Vocab.load(tmp_path / "missing.npz")


def test_vocab_and_stats_are_fitted_on_train_only(result, events) -> None:
    train_items = set(events["item_id"][result.events.split == TRAIN])
    assert set(result.globals.item_vocab.raw_ids.tolist()) == train_items
    assert result.globals.stats.item_count.sum() == np.count_nonzero(result.events.split == TRAIN)


# ---------------------------------------------------------------------------------------------- sessions


def test_sessions_split_at_gaps_longer_than_session_gap() -> None:
    user = np.array([1, 1, 1, 1, 2, 2])
    ts = np.array([0, 1800, 3601, 3700, 3800, 9000])
    sessions = sessionize(ts, user_index(user), 1800)
    assert sessions.session_index.tolist() == [0, 0, 1, 1, 0, 1]
    assert sessions.session_position.tolist() == [0, 1, 0, 1, 0, 0]
    assert sessions.is_session_end.tolist() == [False, True, False, True, True, True]


# ---------------------------------------------------------------------------------------------- profile
def profile_of_history(items, categories, behaviors, timestamps, now, cfg=None) -> np.ndarray:
    """One user's profile after `behaviors` etc., at `now`, from the one state builder's profile part."""
    from drlrec.features.states import Histories, profiles_of_histories

    n = len(behaviors)
    history = Histories.from_lengths([n], np.zeros(n), np.zeros(n), categories, behaviors, timestamps)
    return profiles_of_histories(history, cfg or FeaturizeConfig(), now)[0]



def test_profile_of_a_history_equals_vectorized_profile_at_every_step(events) -> None:
    user = events["user_id"].to_numpy()
    columns = [events[c].to_numpy() for c in ("item_id", "category_id", "behavior", "timestamp")]
    vectorized = user_profiles(user, columns[1], columns[2], columns[3], CFG)
    after = user_profiles(user, columns[1], columns[2], columns[3], CFG, include_event=True)
    assert vectorized.shape == (len(events), len(PROFILE_FEATURES)) and vectorized.dtype == np.float32
    for uid in np.unique(user)[:6]:
        rows = np.flatnonzero(user == uid)
        s = rows[0]
        for t in rows:
            online = profile_of_history(*(c[s:t] for c in columns), now=columns[3][t], cfg=CFG)
            np.testing.assert_allclose(online, vectorized[t], rtol=1e-6, atol=1e-7)
            through = profile_of_history(*(c[s : t + 1] for c in columns), now=columns[3][t], cfg=CFG)
            np.testing.assert_allclose(through, after[t], rtol=1e-6, atol=1e-7)


def test_profile_values_on_a_hand_made_history() -> None:
    # behaviours pv, cart, buy, pv over two categories, 2 days
    cats = np.array([1, 1, 2, 1])
    beh = np.array([0, 1, 3, 0])
    ts = np.array([0, DAY, DAY, 2 * DAY])
    cfg = dataclasses.replace(CFG, density_window=2)
    profile = dict(
        zip(PROFILE_FEATURES, profile_of_history(cats, cats, beh, ts, now=4 * DAY, cfg=cfg), strict=True)
    )
    assert profile["purchase_density"] == pytest.approx(0.5)  # one buy among the last 2
    assert profile["buy_rate"] == pytest.approx(0.25) and profile["view_rate"] == pytest.approx(0.5)
    assert profile["category_diversity"] == pytest.approx(0.5)
    assert profile["top_category_ratio"] == pytest.approx(0.75)
    assert profile["has_purchases"] == 1.0
    assert profile["actions_per_day"] == pytest.approx(np.log1p(4 / 4))
    assert profile["account_age"] == pytest.approx(4 / 9)
    assert not profile_of_history([], [], [], [], now=0).any()


def test_built_step_features_of_a_history_equal_stored_step_features(result, events) -> None:
    train = build_transitions(result, "train")
    ev = result.events
    uid = ev.user_id[ev.split == TRAIN][0]
    rows = np.flatnonzero((ev.user_id == uid) & (ev.split == TRAIN))
    history = Histories.from_lengths(
        [len(rows)], ev.item_idx[rows], ev.category_idx[rows], ev.category_id[rows], ev.behavior[rows],
        ev.timestamp[rows],
    )
    # a window as long as the history shows the step encoding of every event
    online = build_states(history, result.globals.stats, CFG, seq_len=len(rows)).step_features[0]
    stored = train.step_features[train.row[train.user_id == uid]]
    np.testing.assert_allclose(online, stored, rtol=1e-6)
    assert stored.shape[1] == len(STEP_FEATURES) == 20
    assert not stored[:, STEP_FEATURES.index("reserved_0") :].any()
    onehot = stored[:, STEP_FEATURES.index("is_pv") : STEP_FEATURES.index("is_buy") + 1]
    assert (onehot.sum(axis=1) == 1).all()


# ---------------------------------------------------------------------------------------------- transitions


@pytest.mark.parametrize("seq_len", [10, 20])
def test_stored_arrays_shapes_and_dtypes(events, tmp_path: Path, seq_len: int) -> None:
    res = featurize(events, dataclasses.replace(CFG, seq_len=seq_len), START)
    for split in SPLITS:
        save_split(split_path(tmp_path, split), build_transitions(res, split))
        t = load_split(tmp_path, split)
        n_t, n_e, n_d = t.num_transitions, len(t.item_idx), int(t.done.sum())
        expected = {
            "item_idx": ((n_e,), np.int32),
            "category_idx": ((n_e,), np.int32),
            "behavior_token": ((n_e,), np.int8),
            "step_features": ((n_e, 20), np.float32),
            "row": ((n_t,), np.int32),
            "state_start": ((n_t,), np.int32),
            "state_len": ((), np.int32),
            "profile": ((n_t, 10), np.float32),
            "reward_purchase": ((n_t,), np.float32),
            "reward_business": ((n_t,), np.float32),
            "done": ((n_t,), np.bool_),
            "session_end": ((n_t,), np.bool_),
            "user_id": ((n_t,), np.int64),
            "timestamp": ((n_t,), np.int64),
            "session_index": ((n_t,), np.int32),
            "session_position": ((n_t,), np.int32),
            "terminal_row": ((n_t,), np.int32),
            "terminal_profile": ((n_d, 10), np.float32),
        }
        assert set(expected) == set(STORED_FIELDS)
        for name, (shape, dtype) in expected.items():
            array = getattr(t, name)
            assert array.shape == shape and array.dtype == dtype, (split, name, array.shape, array.dtype)
        assert n_t > 0 and t.seq_len == seq_len
        # row 0 is padding, and is only ever used as padding
        assert t.item_idx[0] == 0 and t.behavior_token[0] == 0 and not t.step_features[0].any()
        assert (t.item_idx[1:] >= 1).all() and (t.behavior_token[1:] >= 1).all()
    report = featurize_report(res)
    assert sum(report["splits"][s]["transitions"] for s in SPLITS) == len(events)


def test_states_hold_the_previous_n_events_left_padded(result, events) -> None:
    n = CFG.seq_len
    raw_item = events["item_id"].to_numpy()
    user = events["user_id"].to_numpy()
    encoded = result.globals.item_vocab.encode(raw_item)
    for split in SPLITS:
        t = build_transitions(result, split)
        item_seq = t.item_idx[t.state_rows()]  # [T, N]
        actions = np.flatnonzero(result.events.split == SPLITS.index(split))
        for i in range(0, len(actions), 7):
            g = actions[i]
            first = np.searchsorted(user, user[g])
            history = encoded[max(first, g - n) : g]
            expected = np.concatenate([np.zeros(n - len(history), dtype=np.int32), history])
            np.testing.assert_array_equal(item_seq[i], expected)
        assert (t.action_item == encoded[actions]).all()
        # the next state is the state of the next row while the episode goes on
        going_on = np.flatnonzero(~t.done)
        np.testing.assert_array_equal(t.next_state_rows(going_on), t.state_rows(going_on + 1))
        np.testing.assert_array_equal(t.next_profile(going_on), t.profile[going_on + 1])
        # an episode is the user's run in the split: done exactly where the next row is another user
        np.testing.assert_array_equal(t.done[:-1], t.user_id[1:] != t.user_id[:-1])
        assert t.done[-1]


def test_valid_states_start_with_train_history(result) -> None:
    t = build_transitions(result, "valid")
    first_of_user = np.r_[True, t.user_id[1:] != t.user_id[:-1]]
    ev = result.events
    had_train = np.isin(t.user_id, ev.user_id[ev.split == TRAIN])
    rows = np.flatnonzero(first_of_user & had_train)
    assert len(rows) > 0
    assert (t.state_rows(rows)[:, -1] > 0).all()  # the newest state item is a train-period event
    assert (t.profile[rows, PROFILE_FEATURES.index("account_age")] > 0).any()


def test_terminal_profile_is_profile_after_the_action(result, events) -> None:
    t = build_transitions(result, "train")
    columns = [events[c].to_numpy() for c in ("item_id", "category_id", "behavior", "timestamp")]
    user = events["user_id"].to_numpy()
    actions = np.flatnonzero(result.events.split == TRAIN)
    for i in np.flatnonzero(t.done)[:5]:
        g = actions[i]
        s = np.searchsorted(user, user[g])
        expected = profile_of_history(*(c[s : g + 1] for c in columns), now=columns[3][g], cfg=CFG)
        np.testing.assert_allclose(t.next_profile(np.array([i]))[0], expected, rtol=1e-6)


def test_training_evaluation_envs_and_serving_build_the_same_state(result, events) -> None:
    """One set of histories through every path, states equal bit for bit: featurize's stored states as
    training (gather_batch) and evaluation (state_batch) read them, the log-replay env, the simulated env
    (its sessions' histories from the events, through the one builder), the service (raw ids, whole
    history, the event's time as now) and the builder itself on the same histories, batched."""
    import types

    from drlrec.config import EnvConfig
    from drlrec.features.histories import EventHistories
    from drlrec.rl.envs import LogReplayEnv, SessionBatch, SimulatedEnv
    from drlrec.rl.logged import state_batch
    from drlrec.serving.recommender import state_of_history, states_of_histories
    from drlrec.serving.state import History

    t = build_transitions(result, "test")
    user = events["user_id"].to_numpy()
    raw = {c: events[c].to_numpy() for c in ("item_id", "category_id", "behavior", "timestamp")}
    actions = np.flatnonzero(result.events.split == SPLITS.index("test"))
    bundle = types.SimpleNamespace(
        seq_len=t.seq_len, featurize=CFG, item_vocab=result.globals.item_vocab,
        category_vocab=result.globals.category_vocab, globals=result.globals,
    )
    n_items = result.globals.item_vocab.size
    env = LogReplayEnv(t, n_items, result.globals.category_vocab.size, np.ones(n_items),
                       np.zeros(n_items, np.int32), EnvConfig())
    simulator = types.SimpleNamespace(  # what the simulated env reads off its simulator to build states
        stats=result.globals.stats, item_category=np.zeros(n_items, np.int32), n_items=n_items,
        n_categories=result.globals.category_vocab.size,
    )
    histories = EventHistories.from_columns({c: events[c].to_numpy() for c in events.columns},
                                            result.globals.item_vocab, result.globals.category_vocab)
    simulated = SimulatedEnv(simulator, t, histories=histories)
    # users with short and long histories: padded and full windows both
    index = np.unique(np.r_[np.flatnonzero(t.state_rows()[:, 0] == 0)[:3], np.arange(0, t.num_transitions, 11)])
    assert (t.state_rows(index)[:, 0] == 0).any() and (t.state_rows(index)[:, 0] > 0).any()
    evaluation = state_batch(t, index)
    training = gather_batch(t, index)
    replay = env.batch_states(SessionBatch(index.copy(), np.zeros(len(index), np.int64), np.zeros(len(index), bool),
                                           np.zeros(len(index), bool)))
    sessions = simulated.batch_states(simulated.start_batch(len(index), np.random.default_rng(0), index=index))
    served_histories, now = [], []
    for i in index:
        g = actions[i]
        first = np.searchsorted(user, user[g])
        served_histories.append(History(*(raw[c][first:g].astype(np.int64) for c in raw), total=int(g - first)))
        now.append(int(raw["timestamp"][g]))
    one_by_one = [state_of_history(h, bundle, now=n) for h, n in zip(served_histories, now, strict=True)]
    built = {
        "training": (training.item_seq, training.category_seq, training.behavior_seq, training.step_seq,
                     training.profile),
        "log replay env": tuple(replay),
        "simulated env": tuple(sessions),
        "serving, one request at a time": tuple(np.concatenate(parts) for parts in zip(*one_by_one, strict=True)),
        "serving, batched": tuple(states_of_histories(served_histories, bundle, now=np.array(now))),
    }
    for name, fields in built.items():
        for field, mine, theirs in zip(evaluation._fields, fields, evaluation, strict=True):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs), err_msg=f"{name}: {field}")


def test_rewards_and_gather_batch(result) -> None:
    t = build_transitions(result, "train")
    behavior = t.action_behavior
    np.testing.assert_array_equal(t.reward_purchase, (behavior == BUY).astype(np.float32))
    np.testing.assert_array_equal(t.reward_business, np.array([1.0, 3.0, 2.5, 10.0], np.float32)[behavior])
    idx = np.array([0, 3, 5, len(t.row) - 1])
    batch = gather_batch(t, idx, reward="business_weighted")
    b, n = len(idx), t.seq_len
    assert batch.item_seq.shape == (b, n) and batch.step_seq.shape == (b, n, 20)
    assert batch.next_step_seq.shape == (b, n, 20) and batch.profile.shape == (b, 10)
    np.testing.assert_array_equal(batch.next_item_seq[:, -1], batch.action)
    np.testing.assert_array_equal(batch.next_item_seq[:, :-1], batch.item_seq[:, 1:])
    np.testing.assert_array_equal(batch.reward, t.reward_business[idx])
    assert batch.done[-1] == 1.0
    # padding positions carry zero features
    pad = batch.item_seq == 0
    assert not batch.step_seq[pad].any() and (batch.behavior_seq[pad] == 0).all()


# ---------------------------------------------------------------------------------------------- leakage


def _per_step_view(t: Transitions, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Everything a model sees at a step (the state, the profile, the action and its reward)."""
    state = t.state_rows(keep)
    return {
        "item_seq": t.item_idx[state],
        "category_seq": t.category_idx[state],
        "behavior_seq": t.behavior_token[state],
        "step_seq": t.step_features[state],
        "profile": t.profile[keep],
        "action": t.action_item[keep],
        "action_step": t.step_features[t.row[keep]],
        "reward_purchase": t.reward_purchase[keep],
        "reward_business": t.reward_business[keep],
        "session": np.stack([t.session_index[keep], t.session_position[keep]]),
    }


@pytest.mark.parametrize("cut_day", [3.5, 8.5], ids=["inside-train", "inside-test"])
def test_no_feature_at_or_before_t_changes_when_later_events_are_deleted(events, result, cut_day) -> None:
    t_cut = START + int(cut_day * DAY)
    truncated = events[events["timestamp"] <= t_cut].reset_index(drop=True)
    # global statistics come from the whole train period by design: hold them fixed
    again = featurize(truncated, CFG, START, fitted=result.globals)
    kept = result.events.timestamp <= t_cut
    for name in ("profile", "item_idx", "category_idx", "time_gap", "session_index", "session_position"):
        np.testing.assert_array_equal(
            getattr(again.events, name), getattr(result.events, name)[kept], err_msg=name
        )
    compared = 0
    for split in SPLITS:
        full = build_transitions(result, split)
        cut = build_transitions(again, split)
        keep = np.flatnonzero(full.timestamp <= t_cut)
        assert cut.num_transitions == len(keep)
        before, after = _per_step_view(full, keep), _per_step_view(cut, np.arange(cut.num_transitions))
        for name in before:
            np.testing.assert_array_equal(after[name], before[name], err_msg=f"{split}.{name}")
        compared += len(keep)
    assert compared == len(truncated) > 0


def test_global_statistics_never_use_valid_or_test_events(events, result) -> None:
    train_end = split_boundaries(START, CFG).train_end
    later = events["timestamp"] >= train_end
    # make the later period as different as possible: new items, all purchases
    changed = events.copy()
    changed.loc[later, "item_id"] += 10**9
    changed.loc[later, "behavior"] = BUY
    for variant in (events[~later].reset_index(drop=True), changed):
        other = featurize(variant, CFG, START)
        for name, a, b in (
            ("item_vocab", other.globals.item_vocab.raw_ids, result.globals.item_vocab.raw_ids),
            ("category_vocab", other.globals.category_vocab.raw_ids, result.globals.category_vocab.raw_ids),
            *(
                (f"stats.{k}", getattr(other.globals.stats, k), v)
                for k, v in result.globals.stats._asdict().items()
            ),
        ):
            np.testing.assert_array_equal(a, b, err_msg=name)
        a, b = build_transitions(other, "train"), build_transitions(result, "train")
        for name in STORED_FIELDS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"train.{name}")


def test_featurize_with_saved_globals_matches(result, events, tmp_path: Path) -> None:
    result.globals.save(tmp_path)
    loaded = TrainGlobals.load(tmp_path)
    again = featurize(events, CFG, START, fitted=loaded)
    np.testing.assert_array_equal(again.events.item_idx, result.events.item_idx)
    assert isinstance(again.events, EventFeatures)


# ---------------------------------------------------------------------------------------------- input errors + CLI


def test_unsorted_or_empty_events_are_input_errors(events) -> None:
    with pytest.raises(InputError, match="sorted"):
        featurize(events.iloc[::-1].reset_index(drop=True), CFG, START)
    with pytest.raises(InputError, match="no events"):
        featurize(events.iloc[:0], CFG, START)
    with pytest.raises(InputError, match="column"):
        featurize(events.drop(columns="behavior"), CFG, START)


def test_cli_featurize_writes_every_artifact(events, tmp_path: Path, params_path: Path) -> None:
    from drlrec.cli import main

    path = write_events(events, tmp_path / "events.parquet")
    out = tmp_path / "features"
    assert (
        main(
            [
                "featurize",
                "--events",
                str(path),
                "--out",
                str(out),
                "--params",
                str(params_path),
                "--set",
                "featurize.seq_len=20",
            ]
        )
        == 0
    )
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["seq_len"] == 20
    assert sum(s["transitions"] for s in report["splits"].values()) == report["events"] == len(events)
    assert {p.name for p in out.iterdir()} == {
        "train",
        "valid",
        "test",
        "item_vocab.npz",
        "category_vocab.npz",
        "train_stats.npz",
        REPORT_FILE,
    }
    assert load_split(out, "test").state_rows(np.arange(1)).shape[1] == 20
    # a missing input is one line and exit 2
    assert (
        main(
            [
                "featurize",
                "--events",
                str(tmp_path / "nope.parquet"),
                "--out",
                str(out),
                "--params",
                str(params_path),
            ]
        )
        == 2
    )


def test_empty_splits_have_well_formed_arrays(tmp_path: Path) -> None:
    only_train = make_events(users=5, days=3, seed=4)
    res = featurize(only_train, CFG, START)
    report = featurize_report(res)
    assert report["splits"]["valid"]["transitions"] == report["splits"]["test"]["transitions"] == 0
    save_split(split_path(tmp_path, "test"), build_transitions(res, "test"))
    t = load_split(tmp_path, "test")
    assert t.num_transitions == 0 and t.state_rows().shape == (0, CFG.seq_len) and t.item_idx.shape == (1,)
    assert gather_batch(t, np.zeros(0, dtype=np.int64)).step_seq.shape == (0, CFG.seq_len, 20)


@pytest.mark.parametrize(
    "override",
    [
        {"seq_len": 0},
        {"train_days": 0},
        {"min_count": 0},
        {"age_scale_days": 0.0},
        {"reward_weights": {"pv": 1.0}},
    ],
)
def test_bad_featurize_config_is_a_config_error(events, override) -> None:
    from drlrec.errors import ConfigError

    with pytest.raises(ConfigError, match="featurize."):
        featurize(events, dataclasses.replace(CFG, **override), START)


def test_train_stats_smoothing_popularity_and_buckets() -> None:
    from drlrec.features.steps import fit_train_stats

    # items 2 and 3 (vocab indices); item 2: 3 views + 1 buy, item 3: 1 view; categories 2 (4 events), 3 (1)
    item_idx = np.array([2, 2, 2, 2, 3])
    category_idx = np.array([2, 2, 2, 2, 3])
    behavior = np.array([0, 0, 0, 3, 0])
    cfg = dataclasses.replace(CFG, rate_smoothing=4.0, category_buckets=2)
    stats = fit_train_stats(item_idx, category_idx, behavior, 4, 4, cfg)
    prior_buy = 1 / 4  # 1 buy per 4 views overall
    assert stats.item_rates[2, 2] == pytest.approx((1 + 4 * prior_buy) / (3 + 4))
    assert stats.item_rates[3, 2] == pytest.approx((0 + 4 * prior_buy) / (1 + 4))
    assert stats.item_rates[UNKNOWN, 2] == pytest.approx(prior_buy) and not stats.item_rates[PAD].any()
    assert stats.item_popularity.tolist() == pytest.approx([0, 0, 1.0, np.log1p(1) / np.log1p(4)])
    assert stats.category_bucket.tolist() == [0.0, 0.0, 1.0, 0.5]  # most popular category: top bucket
    assert stats.item_count.tolist() == [0, 0, 4, 1]
