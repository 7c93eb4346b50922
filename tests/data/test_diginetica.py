"""Diginetica (CIKM Cup 2016 train-item-views): the reader, its quarantine, the params overlay, the real sample."""

from __future__ import annotations

import calendar
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from drlrec.config import IngestConfig, load_params, read_params_yaml
from drlrec.data.ingest import DIGINETICA_CATEGORY, ingest_file, read_events
from drlrec.errors import ConfigError, InputError
from drlrec.schema import BEHAVIOR_CODE, EVENTS_SCHEMA

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OVERLAY = PROJECT_ROOT / "params" / "diginetica.yaml"
HEADER = "session_id;user_id;item_id;timeframe;eventdate"
# [2016-01-03, 2016-06-02) UTC, the window of the overlay
START, END = 1451779200, 1464825600


def _utc(date: str) -> int:
    """Unix seconds of a date's 00:00 UTC, computed without the reader's code path."""
    return calendar.timegm(tuple(map(int, date.split("-"))) + (0, 0, 0))


def _ingest(path: Path, out: Path, **cfg) -> dict:
    cfg = {"format": "diginetica", "window_start": START, "window_end": END} | cfg
    ingest_file(
        path,
        out / "events.parquet",
        out / "quarantine.parquet",
        out / "ingest_report.json",
        IngestConfig(**cfg),
    )
    return json.loads((out / "ingest_report.json").read_text())


# physical line (header = 1) -> (raw text, reason); good rows are listed separately
GOOD = [
    "2;NA;300;5000;2016-05-09",  # session 2 first in the file, but session 1 sorts first
    "1;NA;81766;526309;2016-05-09",
    "1;NA;31331;1031018;2016-05-09",
    "1;NA;32118;243569;2016-05-09",  # earlier than the two above: ingest sorts within the session
    "1;769;40;999;2016-05-09",  # a known (non-NA) user_id is fine; sessions are the users
    "3;;7;0;2016-01-03",  # empty user_id, first second of the window
    "4;NA;8;86399999;2016-06-01",  # last second of the window
    "2;NA;300;5999;2016-05-09",  # same second as the first row of session 2: a duplicate, quarantined
]
BAD = [
    ("NA;NA;5;100;2016-05-09", "bad_id"),  # no session
    (";NA;5;100;2016-05-09", "bad_id"),
    ("1;NA;12x;100;2016-05-09", "bad_id"),
    ("1;NA;NA;100;2016-05-09", "bad_id"),
    ("1;abc;5;100;2016-05-09", "bad_id"),  # a user_id that is neither NA nor an id
    ("-1;NA;5;100;2016-05-09", "bad_id"),
    ("1;NA;5;-100;2016-05-09", "bad_timestamp"),
    ("1;NA;5;1.5;2016-05-09", "bad_timestamp"),
    ("1;NA;5;100;2016-02-30", "bad_timestamp"),  # no such day
    ("1;NA;5;100;2016-5-9", "bad_timestamp"),
    ("1;NA;5;100;09.05.2016", "bad_timestamp"),
    ("1;NA;5;100;", "bad_timestamp"),
    ("1;NA;5;100;2015-12-31", "out_of_window"),
    ("1;NA;5;100;2016-06-02", "out_of_window"),
    ("1;NA;5;100", "wrong_field_count"),
    ("1;NA;5;100;2016-05-09;x", "wrong_field_count"),
]


def _hand_written(
    folder: Path, gz: bool = False, header: str = HEADER
) -> tuple[Path, dict[int, tuple[str, str]]]:
    """GOOD and BAD rows interleaved; returns the path and {line: (raw, reason)} of the bad rows."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, bad_at = [header], {}
    for i in range(max(len(GOOD), len(BAD))):
        if i < len(GOOD):
            lines.append(GOOD[i])
        if i < len(BAD):
            lines.append(BAD[i][0])
            bad_at[len(lines)] = BAD[i]
    text = ("\n".join(lines) + "\n").encode()
    path = folder / ("views.csv.gz" if gz else "views.csv")
    path.write_bytes(gzip.compress(text) if gz else text)
    return path, bad_at


def test_rows_map_to_the_schema_with_exact_timestamps(tmp_path: Path) -> None:
    path, _ = _hand_written(tmp_path)
    report = _ingest(path, tmp_path / "out")
    events = pq.read_table(tmp_path / "out" / "events.parquet")
    assert events.schema.equals(EVENTS_SCHEMA)
    day = _utc("2016-05-09")
    expected = pd.DataFrame(
        [  # sorted by (session, time); category constant, behaviour pv
            (1, 40, day + 0),
            (1, 32118, day + 243),
            (1, 81766, day + 526),
            (1, 31331, day + 1031),
            (2, 300, day + 5),
            (3, 7, _utc("2016-01-03")),
            (4, 8, _utc("2016-06-01") + 86399),
        ],
        columns=["user_id", "item_id", "timestamp"],
    )
    got = events.to_pandas()
    pd.testing.assert_frame_equal(got[["user_id", "item_id", "timestamp"]], expected, check_dtype=False)
    assert (got["category_id"] == DIGINETICA_CATEGORY).all()
    assert (got["behavior"] == BEHAVIOR_CODE["pv"]).all()
    assert report["format"] == "diginetica" and report["users"] == 4
    assert report["rows_read"] == len(GOOD) + len(BAD) == report["rows_kept"] + report["rows_quarantined"]


def test_bad_rows_are_quarantined_with_line_reason_and_raw_text(tmp_path: Path) -> None:
    path, bad_at = _hand_written(tmp_path)
    report = _ingest(path, tmp_path / "out")
    quarantine = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas().sort_values("line")
    duplicate_line = 1 + [i for i, line in enumerate(path.read_text().splitlines()) if line == GOOD[-1]][0]
    by_line = {int(r.line): (r.reason, bytes(r.raw).decode()) for r in quarantine.itertuples()}
    assert by_line.pop(duplicate_line)[0] == "duplicate"
    assert by_line == {line: (reason, raw) for line, (raw, reason) in bad_at.items()}
    expected_counts = pd.Series([reason for _, reason in BAD] + ["duplicate"]).value_counts().to_dict()
    assert {k: v for k, v in report["quarantined_by_reason"].items() if v} == expected_counts


def test_gzip_and_the_published_header_give_the_same_events(tmp_path: Path) -> None:
    plain, _ = _hand_written(tmp_path / "plain")
    packed, _ = _hand_written(tmp_path / "gz", gz=True)
    # the CIKM Cup file spells its header sessionId;userId;itemId;timeframe;eventdate
    published, _ = _hand_written(tmp_path / "cikm", header="sessionId;userId;itemId;timeframe;eventdate")
    _ingest(plain, tmp_path / "out_plain")
    assert _ingest(packed, tmp_path / "out_gz")["compressed"] is True
    _ingest(published, tmp_path / "out_cikm")
    a = pq.read_table(tmp_path / "out_plain" / "events.parquet")
    assert a.num_rows == 7
    for other in ("out_gz", "out_cikm"):
        assert a.equals(pq.read_table(tmp_path / other / "events.parquet")), other


def test_read_events_maps_the_csv_like_ingest(tmp_path: Path) -> None:
    path, _ = _hand_written(tmp_path)
    frame = read_events(path, IngestConfig(format="diginetica", window_start=START, window_end=END))
    # the profiling view keeps the same-second duplicate that ingest quarantines
    assert len(frame) == 8
    assert sorted(frame["item_id"]) == sorted(int(line.split(";")[2]) for line in GOOD)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,item_id,category_id,behavior_type,timestamp\n1,2,3,pv,1511600000\n", "not a Diginetica"),
        ("1,2,3,pv,1511600000\n", "not a Diginetica"),
        ("session_id,user_id,item_id,timeframe,eventdate\n1,NA,5,100,2016-05-09\n", "not a Diginetica"),
        ("session;user;item;timeframe;eventdate\n1;NA;5;100;2016-05-09\n", "not a Diginetica"),
        ("session_id;item_id;user_id;timeframe;eventdate\n1;5;NA;100;2016-05-09\n", "not a Diginetica"),
        (HEADER + "\n", "no data rows"),
    ],
)
def test_a_file_in_another_format_stops_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "other.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        _ingest(path, tmp_path / "out")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_taobao_format_names_the_diginetica_file(tmp_path: Path) -> None:
    path, _ = _hand_written(tmp_path)
    with pytest.raises(InputError, match="set ingest.format=diginetica"):
        _ingest(path, tmp_path / "out", format="taobao")


def test_cli_wrong_header_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "taobao.csv"
    path.write_text("1,2,3,pv,1511600000\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drlrec.cli",
            "ingest",
            "--params",
            str(OVERLAY),
            "--input",
            str(path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1
        and proc.stderr.startswith("drlrec: error: ")
        and str(path) in proc.stderr
    )


# ---------------------------------------------------------------------------------------------- params overlay


def test_overlay_changes_only_what_it_names() -> None:
    base = read_params_yaml(PROJECT_ROOT / "params.yaml")
    overlay = yaml.safe_load(OVERLAY.read_text())
    merged = read_params_yaml(OVERLAY)
    assert "extends" not in merged
    for section, values in base.items():
        if section not in overlay:
            assert merged[section] == values, section
    assert merged["featurize"]["seq_len"] == base["featurize"]["seq_len"]  # merged key by key, not replaced
    params = load_params(OVERLAY, ("featurize.valid_days=3",))
    assert params.ingest.format == "diginetica" and params.featurize.valid_days == 3
    assert all(
        str(v).startswith("artifacts/diginetica")
        for k, v in vars(params.paths).items()
        if k not in ("raw_data", "expectations")
    )


def test_overlay_cycles_and_bad_extends_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_params(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "c.yaml")


# ---------------------------------------------------------------------------------------------- the real sample


def _tmp_overlay(tmp_path: Path) -> Path:
    """The Diginetica overlay with every path inside tmp_path (an overlay on the overlay)."""
    paths = {
        key: str(tmp_path / Path(value).name) for key, value in read_params_yaml(OVERLAY)["paths"].items()
    }
    paths["expectations"] = str(PROJECT_ROOT / "expectations" / "events_suite.json")
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump({"extends": str(OVERLAY), "base": {"progress": False}, "paths": paths}))
    return out


@pytest.mark.shared_data
@pytest.mark.slow  # ingest -> validate -> featurize stages on the real sample
def test_real_sample_ingests_validates_and_splits(tmp_path: Path, diginetica_sample: Path) -> None:
    from drlrec.features.featurize import REPORT_FILE
    from drlrec.features.split import SPLITS
    from drlrec.stages import featurize_stage, ingest_stage, validate_stage

    params = load_params(_tmp_overlay(tmp_path))
    ingested = ingest_stage(params, input_path=diginetica_sample)
    # 12,391 rows; 5 repeat a view of the same item in the same second of the session (duplicates)
    assert (ingested.rows_read, ingested.rows_kept, ingested.users) == (12_391, 12_386, 2_986)
    assert {k: v for k, v in ingested.quarantined_by_reason.items() if v} == {"duplicate": 5}

    validation = validate_stage(params)
    assert validation.success and validation.profile["behavior_mix"]["pv"] == 1.0

    featurize_stage(params)
    report = json.loads((Path(params.paths.features) / REPORT_FILE).read_text())
    assert report["events"] == 12_386 and report["users"] == 2_986
    assert report["categories_in_vocab"] == 1
    assert sum(report["splits"][s]["transitions"] for s in SPLITS) == 12_386
    for split in SPLITS:
        assert report["splits"][split]["users"] > 0
    for split in ("valid", "test"):
        # sessions are short: each lies in one split, so no state reaches back into an earlier split
        assert report["splits"][split]["context_rows"] == 0
    sessions = sum(report["splits"][s]["users"] for s in SPLITS)
    assert sessions == 2_986
    assert np.isfinite(report["splits"]["test"]["unknown_item_share"])


@pytest.mark.shared_data
@pytest.mark.slow  # the partitioned ingest (per-partition stage runs)
def test_partitioned_ingest_reads_the_diginetica_format(tmp_path: Path, diginetica_sample: Path) -> None:
    """`scale.partitions` > 1 (byte ranges of a plain file) ingests the Diginetica format exactly as the
    single pass does: same events in the same order, same quarantined rows."""
    from drlrec import partitioned
    from drlrec.stages import ingest_stage

    params = load_params(_tmp_overlay(tmp_path), ("scale.partitions=3",))
    plain = tmp_path / "train-item-views.csv"
    plain.write_bytes(gzip.decompress(diginetica_sample.read_bytes()))  # plain text: real byte ranges
    ingest_stage(params, plain, tmp_path / "single")
    partitioned.run_partitioned_ingest(params, plain, tmp_path / "parted")
    single, parted = (pq.read_table(tmp_path / d / "events.parquet") for d in ("single", "parted"))
    assert single.num_rows == 12_386 and single.equals(parted)
    quarantined = [
        pq.read_table(tmp_path / d / "quarantine.parquet").to_pandas().sort_values("line", kind="stable")
        for d in ("single", "parted")
    ]
    assert len(quarantined[0]) == 5 and quarantined[0].reset_index(drop=True).equals(quarantined[1].reset_index(drop=True))
