"""featurize on the real Taobao head slice: the stage runs, counts add up, features agree with the online twin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drlrec.config import load_params
from drlrec.data.ingest import ingest_file, read_events
from drlrec.features.states import Histories, profiles_of_histories
from drlrec.features.featurize import REPORT_FILE, TrainGlobals
from drlrec.features.split import SPLITS
from drlrec.features.transitions import load_split
from drlrec.stages import featurize_stage

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def head_features(taobao_head: Path, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("head")
    params = load_params()
    events = folder / "events.parquet"
    ingest_file(taobao_head, events, folder / "q.parquet", folder / "r.json", params.ingest)
    featurize_stage(params, events_path=events, out_dir=folder / "features")
    return events, folder / "features"


def test_report_counts_add_up_to_the_events(head_features) -> None:
    events, out = head_features
    report = json.loads((out / REPORT_FILE).read_text())
    n_events = len(read_events(events, load_params().ingest))
    assert report["events"] == n_events == 30944
    assert sum(report["splits"][s]["transitions"] for s in SPLITS) == n_events
    for split in SPLITS:
        t = load_split(out, split)
        assert t.num_transitions == report["splits"][split]["transitions"] > 0
        assert int(t.done.sum()) == report["splits"][split]["users"]
        assert np.isfinite(t.step_features).all() and np.isfinite(t.profile).all()
        assert (t.step_features[:, :15] >= 0).all()
    assert report["splits"]["train"]["unknown_item_share"] == 0.0  # min_count 1: every train item is known
    assert report["splits"]["test"]["unknown_item_share"] > 0.0


def test_real_profiles_equal_the_online_profile(head_features) -> None:
    events_path, out = head_features
    events = read_events(events_path, load_params().ingest)
    test = load_split(out, "test")
    valid_end = json.loads((out / REPORT_FILE).read_text())["boundaries"]["valid_end"]
    columns = [events[c].to_numpy() for c in ("item_id", "category_id", "behavior", "timestamp")]
    user = events["user_id"].to_numpy()
    test_rows = np.flatnonzero(columns[3] >= valid_end)  # the test transitions, in the same order
    assert len(test_rows) == test.num_transitions
    for uid in np.unique(test.user_id)[:5]:
        first = np.searchsorted(user, uid)
        for i in np.flatnonzero(test.user_id == uid):
            g = test_rows[i]
            n = g - first
            history = Histories.from_lengths([n], np.zeros(n), np.zeros(n), *(c[first:g] for c in columns[1:]))
            online = profiles_of_histories(history, load_params().featurize, now=columns[3][g])[0]
            np.testing.assert_allclose(online, test.profile[i], rtol=1e-6, atol=1e-7)


def test_saved_vocab_maps_serving_ids_like_featurize(head_features) -> None:
    events_path, out = head_features
    globals_ = TrainGlobals.load(out)
    test = load_split(out, "test")
    events = read_events(events_path, load_params().ingest)
    test_events = events[
        events["timestamp"] >= json.loads((out / REPORT_FILE).read_text())["boundaries"]["valid_end"]
    ]
    np.testing.assert_array_equal(
        globals_.item_vocab.encode(test_events["item_id"].to_numpy()), test.action_item
    )
