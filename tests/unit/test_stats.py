"""Log profiler: hand-computed figures on a tiny log, popularity slopes, the real slice's published counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drlrec.data.stats import format_profile, profile_log, rank_slope, within_group_rank_slope
from drlrec.schema import BEHAVIOR_CODE, BUY, CART, FAV, PV

RAW_NAMES = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]

# (user, item, category, behaviour, timestamp); comments say what each row counts as
HAND_LOG = [
    (1, 10, 1, PV, 100),
    (1, 11, 1, PV, 200),
    (1, 10, 1, PV, 300),  # re-view of item 10
    (1, 10, 1, CART, 400),  # cart after a view; same item as the previous event
    (1, 10, 1, BUY, 5000),  # new session (gap 4600 s); buy after a view and after a cart; repeat
    (1, 20, 2, PV, 5100),
    (2, 30, 3, BUY, 1000),  # buy with no earlier view
    (2, 30, 3, PV, 1100),  # first view of item 30 (the buy came before it); repeat
    (2, 30, 3, PV, 1200),  # re-view; repeat
    (2, 31, 3, FAV, 1300),  # fav without a view of item 31
    (3, 10, 1, PV, 50),
]


def hand_frame() -> pd.DataFrame:
    frame = pd.DataFrame(HAND_LOG, columns=["user_id", "item_id", "category_id", "behavior", "timestamp"])
    frame["behavior"] = frame["behavior"].astype(np.int8)
    # shuffled: the profiler must sort by (user, time) itself
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_profile_of_a_hand_made_log() -> None:
    profile = profile_log(hand_frame())
    assert (profile["rows"], profile["users"], profile["items"], profile["categories"]) == (11, 3, 5, 3)
    epu = profile["events_per_user"]  # users have 6, 4 and 1 events
    assert epu["min"] == 1 and epu["max"] == 6 and epu["median"] == 4
    assert epu["mean"] == pytest.approx(11 / 3)
    assert epu["p25"] == pytest.approx(2.5) and epu["p75"] == pytest.approx(5.0)
    assert profile["behavior_counts"] == {"pv": 7, "cart": 1, "fav": 1, "buy": 2}
    assert profile["behavior_mix"]["pv"] == pytest.approx(7 / 11)
    assert profile["behavior_mix"]["buy"] == pytest.approx(2 / 11)
    assert profile["review_rate"] == pytest.approx(2 / 7)
    assert profile["buy_after_view"] == pytest.approx(0.5)
    assert profile["buy_after_cart"] == pytest.approx(0.5)
    assert profile["cart_after_view"] == pytest.approx(1.0)
    assert profile["fav_after_view"] == pytest.approx(0.0)
    assert profile["repeat_previous_item"] == pytest.approx(4 / 8)
    assert profile["top_category_share_median"] == pytest.approx(1.0)  # 5/6, 4/4, 1/1
    assert profile["categories_per_user_median"] == 1
    assert profile["items_in_several_categories"] == 0
    assert profile["items_per_category"] == {"median": 2.0, "mean": pytest.approx(5 / 3), "max": 2}
    assert profile["time"]["min"] == 50 and profile["time"]["max"] == 5100
    sessions = profile["sessions"]  # user 1: [4, 2] events, user 2: [4], user 3: [1]
    assert sessions["per_user_median"] == 1 and sessions["per_user_mean"] == pytest.approx(4 / 3)
    assert sessions["events_median"] == 3 and sessions["events_mean"] == pytest.approx(11 / 4)
    assert sessions["gap_median_s"] == 100
    json.dumps(profile)  # plain numbers only


def test_timestamp_ties_keep_input_order() -> None:
    """A buy logged right after its view in the same second still counts as after the view."""
    frame = pd.DataFrame(
        {
            "user_id": [7, 7],
            "item_id": [1, 1],
            "category_id": [1, 1],
            "behavior": [PV, BUY],
            "timestamp": [9, 9],
        }
    ).astype({"behavior": np.int8})
    assert profile_log(frame)["buy_after_view"] == 1.0


def test_item_with_two_categories_is_counted() -> None:
    frame = hand_frame()
    frame.loc[frame["item_id"] == 20, "category_id"] = 1
    frame.loc[len(frame)] = [3, 20, 2, PV, 60]
    assert profile_log(frame)["items_in_several_categories"] == 1


def test_empty_log_profiles_and_formats() -> None:
    empty = hand_frame().iloc[:0]
    profile = profile_log(empty)
    assert profile["rows"] == 0 and profile["users"] == 0
    assert "users" in format_profile(profile, "empty")


def test_format_profile_is_an_aligned_table() -> None:
    text = format_profile(profile_log(hand_frame()), title="hand log")
    lines = text.splitlines()
    assert lines[0] == "hand log"
    for label in (
        "users",
        "median",
        "pv",
        "buy after a view",
        "pv re-viewing a viewed item",
        "events / session",
    ):
        assert any(line.startswith(label) for line in lines), label
    value_rows = [line for line in lines[2:] if line and not line.startswith("[")]
    label_width = max(len(line.split("  ")[0]) for line in value_rows)
    for line in value_rows:  # every value starts in the same column
        assert line[label_width : label_width + 2] == "  " and line[label_width + 2 :].strip(), line
    assert "28.6%" in text


def test_rank_slope_recovers_a_power_law() -> None:
    rank = np.arange(1, 301)
    counts = np.rint(1e6 * rank**-1.2).astype(np.int64)
    assert rank_slope(counts) == pytest.approx(1.2, abs=0.01)
    assert rank_slope(np.array([5, 5, 5])) is None


def test_within_group_slope_ignores_group_sizes() -> None:
    groups, keys = [], []
    for group, (size, scale) in enumerate([(50, 1e5), (200, 1e3), (20, 1e6)]):
        counts = np.rint(scale * np.arange(1, size + 1) ** -0.8).astype(np.int64)
        for key, count in enumerate(counts):
            groups.extend([group] * count)
            keys.extend([group * 1000 + key] * count)
    slope = within_group_rank_slope(np.array(groups), np.array(keys))
    assert slope == pytest.approx(0.8, abs=0.03)


@pytest.mark.shared_data
def test_real_head_slice_matches_its_published_figures(taobao_head: Path) -> None:
    raw = pd.read_csv(taobao_head, header=None, names=RAW_NAMES)
    raw["behavior"] = raw["behavior_type"].map(BEHAVIOR_CODE).astype(np.int8)
    profile = profile_log(raw.drop(columns="behavior_type"))
    assert (profile["rows"], profile["users"], profile["items"], profile["categories"]) == (
        30_959,
        294,
        21_689,
        1_873,
    )
    assert profile["events_per_user"]["median"] == 81.5
    assert profile["events_per_user"]["mean"] == pytest.approx(105.3, abs=0.05)
    assert profile["behavior_counts"] == {"pv": 27_789, "cart": 1_765, "fav": 767, "buy": 638}
    assert profile["time"]["min"] == 1505117799 and profile["time"]["max"] == 1512316758
    assert profile["items_in_several_categories"] == 0
    assert profile["repeat_previous_item"] == 0.0
