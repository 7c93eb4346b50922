"""Streaming featurize: groups of whole users appended to split folders give the in-memory outputs, byte for
byte; the split folders load as memory maps; bad input is one clear error and leaves no half-written split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_features import CFG, START, make_events, write_events

from drlrec.errors import InputError
from drlrec.features.featurize import (
    REPORT_FILE,
    build_transitions,
    featurize,
    featurize_file,
    fit_globals_file,
    iter_user_chunks,
    write_featurize_outputs,
)
from drlrec.features.split import SPLITS
from drlrec.features.transitions import STORED_FIELDS, SplitWriter, load_split, split_path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> tuple[Path, object]:
    # 40 users of 1..119 events; user 7 * 3 gets 600 more, so one user is larger than the smallest chunk
    events = make_events(users=40, per_user=60, seed=11)
    big = make_events(users=1, per_user=400, seed=12)
    big["user_id"] = 7 * 3
    events = events[events["user_id"] != 7 * 3]
    import pandas as pd

    events = (
        pd.concat([events, big]).sort_values(["user_id", "timestamp"], kind="stable").drop_duplicates()
    ).reset_index(drop=True)
    path = write_events(events, tmp_path_factory.mktemp("events") / "events.parquet")
    return path, events


@pytest.fixture(scope="module")
def in_memory(log, tmp_path_factory) -> Path:
    path, events = log
    out = tmp_path_factory.mktemp("in_memory")
    write_featurize_outputs(featurize(events, CFG, START), out)
    return out


@pytest.mark.parametrize("chunk_rows", [1, 97, 10**9])
def test_streamed_outputs_are_the_in_memory_ones_byte_for_byte(log, in_memory, tmp_path, chunk_rows) -> None:
    path, events = log
    n_chunks = sum(1 for _ in iter_user_chunks(path, chunk_rows))
    # chunk_rows 1: one group per user; 97: groups of several users, one of them bigger than 97 events
    assert n_chunks == {1: events["user_id"].nunique(), 10**9: 1}.get(chunk_rows, n_chunks)
    assert 1 < n_chunks < events["user_id"].nunique() or chunk_rows != 97
    report = featurize_file(path, dataclasses.replace(CFG, chunk_rows=chunk_rows), START, tmp_path)
    assert _files(tmp_path) == _files(in_memory)
    assert report == json.loads((in_memory / REPORT_FILE).read_text())
    assert sum(s["transitions"] for s in report["splits"].values()) == len(events)


def test_user_chunks_keep_users_whole_and_in_order(log) -> None:
    path, events = log
    chunks = list(iter_user_chunks(path, 97))
    users = [c["user_id"].to_numpy() for c in chunks]
    largest_user = int(events["user_id"].value_counts().max())
    assert all(0 < len(c) < 2 * 97 + largest_user for c in chunks) and len(chunks) > 5
    assert all(u[-1] < v[0] for u, v in zip(users, users[1:], strict=False))  # no user in two chunks
    joined = np.concatenate([c.to_numpy() for c in chunks])
    np.testing.assert_array_equal(joined, events.to_numpy())


def test_globals_fitted_from_counts_are_the_in_memory_fit(log) -> None:
    path, events = log
    expected = featurize(events, dataclasses.replace(CFG, min_count=3), START).globals
    fitted = fit_globals_file(path, dataclasses.replace(CFG, min_count=3), START, batch_rows=50)
    np.testing.assert_array_equal(fitted.item_vocab.raw_ids, expected.item_vocab.raw_ids)
    np.testing.assert_array_equal(fitted.category_vocab.raw_ids, expected.category_vocab.raw_ids)
    for name, value in expected.stats._asdict().items():
        np.testing.assert_array_equal(getattr(fitted.stats, name), value, err_msg=name)


def test_split_folders_load_as_read_only_memory_maps(in_memory) -> None:
    mapped = load_split(in_memory, "train")
    read = load_split(in_memory, "train", mmap=False)
    assert isinstance(mapped.step_features, np.memmap) and not mapped.step_features.flags.writeable
    assert not isinstance(read.step_features, np.memmap)
    for name in STORED_FIELDS:
        np.testing.assert_array_equal(getattr(mapped, name), getattr(read, name), err_msg=name)


def test_unsorted_users_across_chunks_are_a_clear_error(log, tmp_path) -> None:
    path, events = log
    users = events["user_id"].unique()
    swapped = events.copy()
    # move the first user's events to the end: sorted within every chunk, not across them
    first = swapped["user_id"] == users[0]
    import pandas as pd

    swapped = pd.concat([swapped[~first], swapped[first]]).reset_index(drop=True)
    bad = write_events(swapped, tmp_path / "bad.parquet")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="not sorted by user then time"):
        featurize_file(bad, dataclasses.replace(CFG, chunk_rows=50), START, out)
    # nothing half-written: no split folder, no temporary folder
    assert not any(split_path(out, s).exists() for s in SPLITS)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_missing_and_empty_inputs_are_clear_errors(log, tmp_path) -> None:
    path, events = log
    with pytest.raises(InputError, match="no such file"):
        featurize_file(tmp_path / "nope.parquet", CFG, START, tmp_path / "out")
    empty = write_events(events.iloc[:0], tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="no events to featurize"):
        featurize_file(empty, CFG, START, tmp_path / "out")


def test_load_split_names_what_is_wrong(in_memory, tmp_path) -> None:
    (tmp_path / "train.npz").write_bytes(b"old layout")
    with pytest.raises(InputError, match="older .npz layout"):
        load_split(tmp_path, "train")
    import shutil

    shutil.copytree(split_path(in_memory, "valid"), split_path(tmp_path, "valid"))
    (split_path(tmp_path, "valid") / "profile.npy").unlink()
    with pytest.raises(InputError, match="missing profile.npy"):
        load_split(tmp_path, "valid")


def test_split_writer_joins_parts_and_leaves_nothing_on_failure(log, tmp_path) -> None:
    path, events = log
    users = events["user_id"].unique()
    head, tail = events[events["user_id"].isin(users[:20])], events[events["user_id"].isin(users[20:])]
    whole = build_transitions(featurize(events, CFG, START), "valid")
    fitted = featurize(events, CFG, START).globals
    with SplitWriter(tmp_path / "valid", CFG.seq_len) as writer:
        for part in (head, tail):
            writer.append(build_transitions(featurize(part.reset_index(drop=True), CFG, START, fitted=fitted), "valid"))
    joined = load_split(tmp_path, "valid")
    for name in STORED_FIELDS:
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)
    with pytest.raises(RuntimeError), SplitWriter(tmp_path / "broken", CFG.seq_len) as writer:
        writer.append(whole)
        raise RuntimeError("killed half way")
    assert not (tmp_path / "broken").exists() and not (tmp_path / ".broken.tmp").exists()


def test_actions_at_reads_what_the_action_properties_hold(in_memory) -> None:
    t = load_split(in_memory, "train")
    index = np.array([0, 5, t.num_transitions - 1, 5])
    item, behavior, category = t.actions_at(index)
    np.testing.assert_array_equal(item, t.action_item[index])
    np.testing.assert_array_equal(behavior, t.action_behavior[index])
    np.testing.assert_array_equal(category, t.action_category[index])
    assert behavior.dtype == np.int8


def _rss_file_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile")) / 1024


def test_release_pages_unmaps_what_gathers_faulted_in(in_memory, tmp_path) -> None:
    from drlrec.features.transitions import release_pages

    t = load_split(in_memory, "train")
    # a 64 MB mapped field: reading it all faults its pages into this process
    big = np.arange(16 << 20, dtype=np.float32)
    np.save(tmp_path / "big.npy", big)
    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    t = t._replace(step_features=mapped)
    before = _rss_file_mb()
    assert float(mapped.sum(dtype=np.float64)) == float(big.sum(dtype=np.float64))
    assert _rss_file_mb() - before > 32
    release_pages(t)
    assert _rss_file_mb() - before < 8
    np.testing.assert_array_equal(mapped[[0, 5, len(big) - 1]], big[[0, 5, len(big) - 1]])  # still readable
