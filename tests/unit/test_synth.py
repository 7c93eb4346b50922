"""Generator: deterministic, typed, sorted, in the window, and shaped like the Taobao log; calibration; CLI."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drlrec.cli import main
from drlrec.config import SynthConfig
from drlrec.data import synth
from drlrec.data.stats import profile_log
from drlrec.errors import ConfigError
from drlrec.schema import BEHAVIOR_CODE, BEHAVIORS, EVENTS_SCHEMA

RAW_NAMES = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
DEFAULT = SynthConfig()
WINDOW_END = DEFAULT.start + DEFAULT.days * 86400


@pytest.fixture(scope="module")
def default_log() -> pd.DataFrame:
    """The default config (2000 users, about 200k events)."""
    table = synth.generate(DEFAULT, seed=42, progress=False)
    assert table.schema == EVENTS_SCHEMA
    return table.to_pandas()


@pytest.fixture(scope="module")
def default_profile(default_log: pd.DataFrame) -> dict:
    return profile_log(default_log)


def small(**changes) -> SynthConfig:
    return dataclasses.replace(DEFAULT, **{"users": 300, **changes})


def read_raw(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, header=None, names=RAW_NAMES)
    raw["behavior"] = raw["behavior_type"].map(BEHAVIOR_CODE).astype(np.int8)
    return raw.drop(columns="behavior_type")


# ---------------------------------------------------------------------------------------------- contract


def test_same_seed_same_bytes_other_seed_other_log(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv", "a.csv.gz", "b.csv.gz"):
        synth.write_csv(synth.generate(small(), seed=7, progress=False), tmp_path / name)
    synth.write_csv(synth.generate(small(), seed=8, progress=False), tmp_path / "c.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_chunks_depend_only_on_seed_and_chunk_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Users of the first chunk come out the same whatever the total; the chunks join into one sorted log."""
    monkeypatch.setattr(synth.generator, "CHUNK_USERS", 100)
    whole = synth.generate(small(users=250), seed=3, progress=True).to_pandas()
    head = synth.generate(small(users=100), seed=3, progress=False).to_pandas()
    pd.testing.assert_frame_equal(whole[whole["user_id"] <= 100].reset_index(drop=True), head)
    assert sorted(whole["user_id"].unique()) == list(range(1, 251))
    sizes = whole.groupby("user_id").size().to_numpy()
    assert not np.array_equal(sizes[:100], sizes[100:200])  # each chunk has its own generator


def test_schema_order_ids_and_window(default_log: pd.DataFrame) -> None:
    log = default_log
    assert list(log.columns) == EVENTS_SCHEMA.names
    assert [str(t) for t in log.dtypes] == ["int64", "int64", "int64", "int8", "int64"]
    order = np.lexsort((log["timestamp"].to_numpy(), log["user_id"].to_numpy()))
    assert (order == np.arange(len(log))).all(), "not sorted by user then time"
    assert np.array_equal(np.unique(log["user_id"]), np.arange(1, DEFAULT.users + 1))
    assert log["timestamp"].min() >= DEFAULT.start and log["timestamp"].max() < WINDOW_END
    assert set(np.unique(log["behavior"])) <= set(range(len(BEHAVIORS)))
    for column in ("item_id", "category_id"):
        assert log[column].min() >= 1 and log[column].max() < synth.ID_SPACE
    assert log["item_id"].nunique() > 10_000  # sparse Taobao-like ids over a real catalogue


def test_heavy_users_in_a_short_window_still_fit() -> None:
    cfg = small(users=40, days=1, events_median=1500.0, events_mean=2500.0, events_max=4000)
    log = synth.generate(cfg, seed=1, progress=False).to_pandas()
    assert log["timestamp"].min() >= cfg.start and log["timestamp"].max() < cfg.start + 86400
    assert (np.diff(log["timestamp"].to_numpy())[np.diff(log["user_id"].to_numpy()) == 0] >= 0).all()
    assert log.groupby("user_id").size().max() <= 4000


def test_write_csv_is_the_original_taobao_format(tmp_path: Path) -> None:
    table = synth.generate(small(users=30), seed=1, progress=False)
    plain, packed = tmp_path / "out" / "log.csv", tmp_path / "log.csv.gz"
    synth.write_csv(table, plain)
    synth.write_csv(table, packed)
    text = plain.read_text()
    assert gzip.decompress(packed.read_bytes()).decode() == text
    assert re.fullmatch(r"(\d+,\d+,\d+,(pv|cart|fav|buy),\d{10}\n)+", text), text[:200]
    assert text.startswith("1,")
    back = read_raw(plain)
    pd.testing.assert_frame_equal(back[list(EVENTS_SCHEMA.names)], table.to_pandas())
    assert sorted(p.name for p in plain.parent.iterdir()) == ["log.csv"]  # no temp file left behind


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="events_median"):
        synth.generate(small(events_median=120.0), seed=1)
    with pytest.raises(ConfigError, match="behavior_mix"):
        synth.generate(small(behavior_mix=(0.5, -0.1, 0.3, 0.3)), seed=1)
    with pytest.raises(ConfigError, match="seed"):
        synth.generate(small(), seed=-1)
    with pytest.raises(ConfigError, match="categories"):
        synth.generate(small(items=10, categories=20), seed=1)


# ---------------------------------------------------------------------------------------------- shape


def test_events_per_user_and_behaviour_mix(default_profile: dict) -> None:
    epu = default_profile["events_per_user"]
    assert 60 <= epu["median"] <= 90
    assert 85 <= epu["mean"] <= 120
    assert epu["p99"] > 3 * epu["median"]  # long tail
    for name, target in zip(BEHAVIORS, DEFAULT.behavior_mix, strict=True):
        assert default_profile["behavior_mix"][name] == pytest.approx(target, rel=0.25), name


def test_zipf_popularity_and_one_category_per_item(default_log: pd.DataFrame, default_profile: dict) -> None:
    assert default_profile["top1pct_item_share"] > 0.03  # uniform would be 0.01
    assert default_profile["top1pct_category_share"] > 0.2
    assert default_log.groupby("item_id")["category_id"].nunique().max() == 1
    assert default_profile["items_in_several_categories"] == 0


def test_reviews_and_funnel(default_profile: dict) -> None:
    assert default_profile["review_rate"] > 0.1
    assert default_profile["buy_after_view"] >= 0.7
    assert default_profile["cart_after_view"] >= 0.5
    assert default_profile["repeat_previous_item"] < 0.001  # the real log never repeats the previous item


def test_funnel_knob_moves_the_funnel() -> None:
    weak = profile_log(synth.generate(small(buy_after_view=0.0, review_rate=0.0), 5, False).to_pandas())
    strong = profile_log(synth.generate(small(buy_after_view=1.0, review_rate=0.5), 5, False).to_pandas())
    assert weak["buy_after_view"] < 0.3 < 0.8 < strong["buy_after_view"]
    assert weak["review_rate"] < 0.15 < 0.45 < strong["review_rate"]


def test_sessions_and_day_night_rhythm(default_log: pd.DataFrame, default_profile: dict) -> None:
    same_user = np.diff(default_log["user_id"].to_numpy()) == 0
    gaps = np.diff(default_log["timestamp"].to_numpy())[same_user]
    assert (gaps < 1800).mean() > 0.5 and (gaps > 1800).mean() > 0.05
    assert 3 <= default_profile["sessions"]["events_mean"] <= 12
    local_hour = ((default_log["timestamp"] + 8 * 3600) % 86400) // 3600
    night = ((local_hour >= 2) & (local_hour < 6)).sum()
    evening = (local_hour >= 20).sum()
    assert night < 0.25 * evening


def test_preferred_categories_drift() -> None:
    """Top categories of the first days persist less into the last days than into the middle ones,
    and clearly less so than without drift."""
    drifting = profile_log(synth.generate(DEFAULT, 11, False).to_pandas())["top_category_overlap"]
    steady = profile_log(
        synth.generate(dataclasses.replace(DEFAULT, preference_drift=0.0), 11, False).to_pandas()
    )["top_category_overlap"]
    drop = drifting["first_vs_middle"] - drifting["first_vs_last"]
    assert drop > 0.02
    assert drop > steady["first_vs_middle"] - steady["first_vs_last"] + 0.02
    assert drifting["first_vs_last"] < steady["first_vs_last"] - 0.05


# ---------------------------------------------------------------------------------------------- calibrate


@pytest.mark.shared_data
def test_calibrate_on_the_real_head_slice(taobao_head: Path) -> None:
    real = read_raw(taobao_head)
    real_profile = profile_log(real)
    fitted = synth.calibrate(real, DEFAULT)

    hints = typing.get_type_hints(SynthConfig)
    for key, value in fitted.items():
        assert key in hints, key
        assert type(value) is (tuple if typing.get_origin(hints[key]) is tuple else hints[key]), key
    assert {"events_median", "events_mean", "behavior_mix", "review_rate", "buy_after_view"} <= set(fitted)
    assert fitted["events_median"] == pytest.approx(81.5, rel=0.1)
    assert fitted["events_mean"] == pytest.approx(105.3, rel=0.1)
    for share, name in zip(fitted["behavior_mix"], BEHAVIORS, strict=True):
        assert share == pytest.approx(real_profile["behavior_mix"][name], abs=0.01)
    assert fitted["buy_after_view"] < DEFAULT.buy_after_view  # the slice's funnel is weaker

    cfg = dataclasses.replace(DEFAULT, **fitted)
    generated = profile_log(synth.generate(cfg, seed=5, progress=False).to_pandas())
    assert generated["events_per_user"]["median"] == pytest.approx(81.5, rel=0.15)
    for name in BEHAVIORS:
        assert generated["behavior_mix"][name] == pytest.approx(real_profile["behavior_mix"][name], rel=0.15)
    for key in ("review_rate", "buy_after_view", "top_category_share_median"):
        assert generated[key] == pytest.approx(real_profile[key], abs=0.08), key
    assert generated["sessions"]["events_mean"] == pytest.approx(
        real_profile["sessions"]["events_mean"], rel=0.2
    )


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_synth_then_stats(tmp_path: Path, params_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tmp" / "x.csv"
    assert (
        main(["synth", "--out", str(out), "--users", "50", "--seed", "1", "--params", str(params_path)]) == 0
    )
    assert "wrote" in capsys.readouterr().err
    assert len(read_raw(out)["user_id"].unique()) == 50

    assert main(["stats", str(out), "--params", str(params_path)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^users\s+50$", text, re.MULTILINE), text
    assert "buy after a view" in text

    assert main(["stats", str(out), "--json", "--params", str(params_path)]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["users"] == 50 and profile["rows"] == len(read_raw(out))


@pytest.mark.shared_data
def test_cli_synth_calibrated_on_the_slice(
    tmp_path: Path, params_path: Path, taobao_head: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "calibrated.csv.gz"
    args = ["synth", "--out", str(out), "--users", "100", "--calibrate", str(taobao_head)]
    assert main([*args, "--params", str(params_path)]) == 0
    err = capsys.readouterr().err
    assert "events_median: 81.5" in err and "behavior_mix" in err
    assert read_raw(out)["user_id"].nunique() == 100


# ---------------------------------------------------------------------------------------------- row orders


def test_row_orders_hold_the_same_rows_and_ingest_to_the_same_events(tmp_path: Path, params_path: Path) -> None:
    import pyarrow.parquet as pq

    from drlrec.config import IngestConfig
    from drlrec.data.ingest import ingest_file

    table = synth.generate(small(users=150), seed=3, progress=False)
    base = table.to_pandas()
    key = ["user_id", "timestamp", "item_id", "behavior", "category_id"]
    events = {}
    for order in ("user", "original", "time"):
        out = tmp_path / f"{order}.csv"
        assert main(["synth", "--out", str(out), "--users", "150", "--seed", "3", "--order", order,
                     "--params", str(params_path)]) == 0
        raw = read_raw(out)
        # the same rows, each user's rows in time order whatever the file order
        pd.testing.assert_frame_equal(raw.sort_values(key, kind="stable").reset_index(drop=True),
                                      base.sort_values(key, kind="stable").reset_index(drop=True), check_like=True)
        for _, rows in raw.groupby("user_id", sort=False):
            assert rows["timestamp"].is_monotonic_increasing
        users = raw["user_id"].to_numpy()
        first_seen = users[np.r_[True, users[1:] != users[:-1]]]
        if order == "user":
            pd.testing.assert_frame_equal(raw[list(EVENTS_SCHEMA.names)], base)
        elif order == "original":  # grouped by user, users in string order: 1, 10, 100, 101, ..., 11, ...
            assert len(first_seen) == 150
            assert [str(u) for u in first_seen] == sorted(str(u) for u in range(1, 151))
        else:
            assert raw["timestamp"].is_monotonic_increasing and len(first_seen) > 150  # users interleave
        done = tmp_path / f"ingest-{order}"
        ingest_file(out, done / "events.parquet", done / "quarantine.parquet", done / "report.json", IngestConfig())
        assert json.loads((done / "report.json").read_text())["rows_quarantined"] == 0
        events[order] = pq.read_table(done / "events.parquet").to_pandas()
    pd.testing.assert_frame_equal(events["original"], events["user"])
    pd.testing.assert_frame_equal(events["time"], events["user"])


def test_full_scale_preset_is_the_real_files_size() -> None:
    from drlrec.cli import build_parser

    assert synth.FULL_SCALE == {"users": 987_994, "items": 4_162_024, "categories": 9_439}
    cfg = dataclasses.replace(DEFAULT, **synth.FULL_SCALE)
    synth._check(cfg, 0)  # the catalogue fits the id space
    args = build_parser().parse_args(["synth", "--scale", "full", "--order", "original"])
    assert (args.scale, args.order) == ("full", "original")
    with pytest.raises(ConfigError, match="synth.order"):
        synth.order_rows(synth.generate(small(users=2), seed=0, progress=False), "shuffled")
