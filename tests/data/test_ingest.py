"""Ingest: typed output, quarantine with reasons, exact accounting, fatal-input errors, real Taobao slices."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from drlrec.config import IngestConfig
from drlrec.data.ingest import ingest_file, read_events
from drlrec.errors import InputError
from drlrec.schema import BEHAVIOR_CODE, EVENTS_SCHEMA

START = 1511539200
END = 1512316800


def _run(path: Path, out: Path, **cfg) -> dict:
    ingest_file(path, out / "events.parquet", out / "quarantine.parquet", out / "ingest_report.json", IngestConfig(**cfg))
    return json.loads((out / "ingest_report.json").read_text())


def _good_rows(n: int, seed: int = 0, users: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    user = rng.integers(1, users, n)
    ts = rng.integers(START, END, n)
    beh = rng.choice(["pv", "cart", "fav", "buy"], n, p=[0.85, 0.07, 0.05, 0.03])
    return [f"{u},{rng.integers(1, 10**6)},{rng.integers(1, 5000)},{b},{t}" for u, b, t in zip(user, beh, ts, strict=True)]


def _corrupted_file(tmp_path: Path) -> tuple[Path, list[str], dict[str, int]]:
    """A file with every kind of bad row the issue lists, interleaved with good rows.

    Returns the path, the good lines in file order, and the expected count per reason.
    """
    good = _good_rows(300)
    lines: list[bytes] = []
    expected = dict.fromkeys(
        ["wrong_field_count", "bad_id", "unknown_behavior", "bad_timestamp", "out_of_window", "duplicate"], 0
    )
    bad_rows: list[tuple[bytes, str]] = [
        (b"7,1,2,click,1511600000", "unknown_behavior"),
        (b"7,1,2,PV,1511600000", "unknown_behavior"),
        (b"7,1,2,,1511600000", "unknown_behavior"),
        (b"abc,1,2,pv,1511600000", "bad_id"),
        (b"7,12x,2,pv,1511600000", "bad_id"),
        (b"7,1,two,pv,1511600000", "bad_id"),
        (b"-7,1,2,pv,1511600000", "bad_id"),
        (b"7,1,2,pv", "wrong_field_count"),
        (b"7,1", "wrong_field_count"),
        (b"7,1,2,pv,1511600000,extra", "wrong_field_count"),
        (b"7,1,2,pv,1511600000,,", "wrong_field_count"),
        (b"", "wrong_field_count"),  # empty line
        (b"", "wrong_field_count"),  # another empty line
        (b"7,1\xff\xfe,2,pv,1511600000", "bad_id"),  # non-UTF-8 bytes in an id
        (b"7,1,2,p\xe9v,1511600000", "unknown_behavior"),  # non-UTF-8 bytes in the behaviour
        (b"7,1,2,pv,1505117799", "out_of_window"),  # the earliest real Taobao timestamp
        (b"7,1,2,pv,1512316800", "out_of_window"),  # window end is exclusive
        (b"7,1,2,pv,15116e5", "bad_timestamp"),
        (b"7,1,2,pv,tomorrow", "bad_timestamp"),
    ]
    rng = np.random.default_rng(1)
    positions = set(rng.choice(len(good), len(bad_rows), replace=False).tolist())
    bad_iter = iter(bad_rows)
    for i, row in enumerate(good):
        lines.append(row.encode())
        if i in positions:
            text, reason = next(bad_iter)
            lines.append(text)
            expected[reason] += 1
    # exact duplicates of good rows, one far from its original
    for dup in (good[3], good[10], good[10]):
        lines.insert(len(lines) // 2, dup.encode())
        expected["duplicate"] += 1
    # the window start itself is valid (inclusive)
    lines.append(f"7,1,2,buy,{START}".encode())
    good_all = [line.decode() for line in lines if line and line.decode("utf-8", "replace") in set(good) | {f"7,1,2,buy,{START}"}]
    # truncated last line: no newline, cut inside the timestamp
    truncated = b"8,99,5,pv,15116"
    expected["out_of_window"] += 1
    path = tmp_path / "corrupted.csv"
    path.write_bytes(b"\n".join(lines) + b"\n" + truncated)
    kept = list(dict.fromkeys(good_all))  # first occurrence of each good row
    return path, kept, expected


def test_corrupted_file_every_row_accounted_for(tmp_path: Path) -> None:
    path, kept_lines, expected = _corrupted_file(tmp_path)
    report = _run(path, tmp_path / "out")
    n_lines = path.read_bytes().count(b"\n") + 1

    assert report["rows_read"] == n_lines
    assert report["quarantined_by_reason"] == expected
    assert report["rows_quarantined"] == sum(expected.values())
    assert report["rows_kept"] == len(kept_lines)
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"]

    events = pq.read_table(tmp_path / "out" / "events.parquet")
    assert events.schema.equals(EVENTS_SCHEMA)
    df = events.to_pandas()
    expected_df = pd.DataFrame([line.split(",") for line in kept_lines], columns=["u", "i", "c", "b", "t"])
    expected_df = pd.DataFrame(
        {
            "user_id": expected_df.u.astype("int64"),
            "item_id": expected_df.i.astype("int64"),
            "category_id": expected_df.c.astype("int64"),
            "behavior": expected_df.b.map(BEHAVIOR_CODE).astype("int8"),
            "timestamp": expected_df.t.astype("int64"),
        }
    ).sort_values(["user_id", "timestamp"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(df, expected_df)

    quarantine = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas()
    assert len(quarantine) == report["rows_quarantined"]
    assert quarantine.reason.value_counts().to_dict() == {k: v for k, v in expected.items() if v}
    # every quarantined row carries its physical line and its exact raw bytes
    raw_lines = path.read_bytes().split(b"\n")
    for line, raw, reason in zip(quarantine.line, quarantine.raw, quarantine.reason, strict=True):
        assert raw == raw_lines[line - 1], (line, reason)


def test_events_sorted_by_user_then_time_and_typed(tmp_path: Path) -> None:
    path = tmp_path / "shuffled.csv"
    rows = _good_rows(5000, seed=3, users=400)
    path.write_text("\n".join(rows) + "\n")
    # tiny buckets force the on-disk range partition + per-bucket sort
    report = _run(path, tmp_path / "out", bucket_rows=700, block_size_mb=1)
    assert report["input_sorted_by_user_time"] is False
    assert report["sort_buckets"] > 1
    df = pq.read_table(tmp_path / "out" / "events.parquet").to_pandas()
    assert len(df) == 5000
    key = df.user_id.to_numpy() * 10**10 + df.timestamp.to_numpy()
    assert np.all(np.diff(key) >= 0)
    assert report["users"] == df.user_id.nunique()


def test_duplicates_across_batches_in_sorted_input(tmp_path: Path) -> None:
    """A duplicate that straddles a batch boundary of a sorted file is still caught."""
    rows = sorted(set(_good_rows(40000, seed=5, users=50)), key=lambda r: (int(r.split(",")[0]), int(r.split(",")[4])))
    dup_of = rows[len(rows) // 2]
    rows.insert(len(rows) // 2 + 1, dup_of)
    path = tmp_path / "sorted.csv"
    path.write_text("\n".join(rows) + "\n")
    # ~40k rows of ~35 bytes = ~1.4 MB; 1 MB blocks put the boundary somewhere inside
    report = _run(path, tmp_path / "out", block_size_mb=1)
    assert report["input_sorted_by_user_time"] is True
    assert report["quarantined_by_reason"]["duplicate"] == 1
    assert report["rows_kept"] == len(rows) - 1


def test_gzip_and_headered_csv_give_the_same_events(tmp_path: Path) -> None:
    rows = _good_rows(2000, seed=7)
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(rows) + "\n")
    gz = tmp_path / "log.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    headered = tmp_path / "headered.csv"
    # a header in another column order, with CRLF line ends
    reordered = [",".join(np.array(r.split(","))[[4, 0, 3, 1, 2]]) for r in rows]
    headered.write_bytes(("timestamp,user_id,behavior_type,item_id,category_id\r\n" + "\r\n".join(reordered) + "\r\n").encode())
    tables = []
    for name, path in [("plain", plain), ("gz", gz), ("headered", headered)]:
        report = _run(path, tmp_path / name)
        assert report["rows_kept"] == report["rows_read"] == 2000, name
        tables.append(pq.read_table(tmp_path / name / "events.parquet"))
    assert tables[0].equals(tables[1])
    assert tables[0].equals(tables[2])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "file is empty"),
        ("blank.csv", b"\n\n  \n", "file is empty"),
        ("other_header.csv", b"session_id;user_id;item_id;timeframe;eventdate\n1;2;3;4;5\n", "header names other columns"),
        ("other_columns.csv", b"user,product,cat,action,time\n1,2,3,pv,1511600000\n", "header names other columns"),
        ("binary.bin", bytes(range(256)) * 64, "binary data"),
        ("random.gz", b"\x1f\x8b" + bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "cannot read"),
        ("header_only.csv", b"user_id,item_id,category_id,behavior_type,timestamp\n", "no data rows"),
    ],
)
def test_fatal_inputs_fail_cleanly(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        _run(path, out)
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_path_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        _run(tmp_path / "nope.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"user,product,cat,action,time\n1,2,3,pv,1511600000\n", bytes(range(256)) * 64, None],
    ids=["empty", "foreign-header", "binary", "missing"],
)
def test_cli_fatal_input_one_line_exit_2_nothing_written(tmp_path: Path, params_path: Path, content: bytes | None) -> None:
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "drlrec.cli", "ingest", "--params", str(params_path), "--input", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("drlrec: error: ") and str(path) in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_failed_ingest_leaves_previous_outputs_untouched(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("\n".join(_good_rows(100)) + "\n")
    out = tmp_path / "out"
    _run(good, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    with pytest.raises(InputError):
        _run(bad, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_read_events_matches_ingest(tmp_path: Path) -> None:
    path, kept, _ = _corrupted_file(tmp_path)
    df = read_events(path, IngestConfig())
    # read_events keeps duplicates (profiling view) but drops rows with a bad format or outside the window
    assert len(df) == len(kept) + 3
    assert list(df.columns) == list(EVENTS_SCHEMA.names)


# ------------------------------------------------------------------------------------------ real data


def test_taobao_head_slice_counts(tmp_path: Path, taobao_head: Path) -> None:
    report = _run(taobao_head, tmp_path / "out")
    assert report["rows_read"] == 30_959
    assert report["rows_quarantined"] == 15
    assert report["quarantined_by_reason"]["out_of_window"] == 15
    assert report["rows_kept"] == 30_944
    assert report["users"] == 294
    quarantine = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas()
    assert set(quarantine.reason) == {"out_of_window"}
    ts = [int(raw.split(b",")[4]) for raw in quarantine.raw]
    assert min(ts) == 1505117799  # the earliest stored timestamp, per the slice's README
    assert all(t < START or t >= END for t in ts)


def test_taobao_timewindow_slice(tmp_path: Path, taobao_timewindow: Path) -> None:
    report = _run(taobao_timewindow, tmp_path / "out")
    assert report["rows_read"] == 110_300
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"]
    df = pq.read_table(tmp_path / "out" / "events.parquet").to_pandas()
    assert df.user_id.nunique() == report["users"]
    mix = df.behavior.value_counts().sort_index().tolist()
    # README: pv / cart / fav / buy = 98,361 / 6,063 / 3,383 / 2,493 (before duplicate removal)
    assert sum(mix) + report["quarantined_by_reason"]["duplicate"] == 110_300
    assert mix[0] <= 98_361 and mix[3] <= 2_493
