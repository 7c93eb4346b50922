"""Validate: the GX suite passes on good data, names each kind of bad data, merges batches exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drlrec.config import IngestConfig, ValidateConfig
from drlrec.data.ingest import ingest_file
from drlrec.data.validate import load_suite_json, validate_events
from drlrec.errors import InputError
from drlrec.schema import EVENTS_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "expectations" / "events_suite.json"
START = 1511539200
END = 1512316800


def _events(n: int = 5000, users: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "user_id": np.sort(rng.integers(1, users + 1, n)).astype(np.int64),
            "item_id": rng.integers(1, 10**6, n).astype(np.int64),
            "category_id": rng.integers(1, 5000, n).astype(np.int64),
            "behavior": rng.choice(4, n, p=[0.88, 0.06, 0.035, 0.025]).astype(np.int8),
            "timestamp": rng.integers(START, END, n).astype(np.int64),
        }
    )
    return df


def _write(df: pd.DataFrame, path: Path, schema: pa.Schema | None = EVENTS_SCHEMA) -> Path:
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False) if schema else pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path)
    return path


def _validate(path: Path, **cfg):
    return validate_events(path, SUITE, ValidateConfig(**cfg), IngestConfig())


def _failed(result) -> dict[tuple[str, str | None], object]:
    return {(o.type, o.kwargs.get("column")): o for o in result.failed}


def test_suite_json_is_a_gx_suite_with_scopes() -> None:
    import great_expectations as gx

    raw = load_suite_json(SUITE)
    suite = gx.ExpectationSuite(**raw)
    assert len(suite.expectations) == len(raw["expectations"]) >= 20
    types = {e["type"] for e in raw["expectations"]}
    for needed in (
        "expect_table_columns_to_match_ordered_list",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_median_to_be_between",
    ):
        assert needed in types


def test_good_events_pass(tmp_path: Path) -> None:
    df = _events()
    result = _validate(_write(df, tmp_path / "e.parquet"))
    assert result.success, result.first_failure()
    assert result.rows == len(df)
    assert result.profile["users"] == df.user_id.nunique()
    mix = df.behavior.value_counts(normalize=True).sort_index().tolist()
    assert list(result.profile["behavior_mix"].values()) == pytest.approx(mix)
    assert result.profile["events_per_user"]["median"] == df.groupby("user_id").size().median()


def test_batches_merge_to_the_single_batch_result(tmp_path: Path) -> None:
    df = _events(n=5000)
    df.loc[[10, 2500, 4999], "timestamp"] = END  # first second outside the window
    path = _write(df, tmp_path / "e.parquet")
    whole = _validate(path, sample_rows=10_000)
    parts = _validate(path, sample_rows=700)
    assert (whole.batches, parts.batches) == (1, 8)
    assert not whole.success and not parts.success
    for a, b in zip(whole.outcomes, parts.outcomes, strict=True):
        assert (a.type, a.success, a.unexpected_count) == (b.type, b.success, b.unexpected_count)
    assert whole.profile == parts.profile
    bad = _failed(parts)[("expect_column_values_to_be_between", "timestamp")]
    assert bad.unexpected_count == 3
    assert bad.unexpected_rows == [10, 2500, 4999]  # global row numbers, not per batch
    assert bad.unexpected_values == [END] * 3
    assert len(parts.failed) == 1


@pytest.mark.parametrize(
    ("mutate", "expectation", "column"),
    [
        (lambda df: df.assign(behavior=df.behavior.where(df.index != 7, 9).astype(np.int8)), "expect_column_values_to_be_in_set", "behavior"),
        (lambda df: df.assign(timestamp=df.timestamp.where(df.index != 3, START - 1)), "expect_column_values_to_be_between", "timestamp"),
        (lambda df: df.assign(item_id=df.item_id.where(df.index != 3, -5)), "expect_column_values_to_be_between", "item_id"),
        (lambda df: df.assign(user_id=df.user_id.where(df.index != 0, -1)), "expect_column_values_to_be_between", "user_id"),
        (lambda df: df.assign(behavior=np.zeros(len(df), np.int8)), "expect_column_values_to_be_between", "share_pv"),
        (lambda df: df.assign(behavior=np.full(len(df), 3, np.int8)), "expect_column_values_to_be_between", "share_buy"),
        (lambda df: df.assign(user_id=np.arange(len(df), dtype=np.int64)), "expect_column_median_to_be_between", "events"),
    ],
    ids=["unknown-behaviour", "before-window", "negative-item", "negative-user", "all-pv", "all-buy", "one-event-per-user"],
)
def test_bad_values_fail_the_named_expectation(tmp_path: Path, mutate, expectation: str, column: str) -> None:
    result = _validate(_write(mutate(_events()), tmp_path / "e.parquet"), events_per_user_median=(2.0, 2000.0))
    assert not result.success
    assert (expectation, column) in _failed(result), result.first_failure()


def test_wrong_types_nulls_and_columns_fail(tmp_path: Path) -> None:
    df = _events()
    wide = df.assign(behavior=df.behavior.astype(np.int64))
    result = _validate(_write(wide, tmp_path / "wide.parquet", schema=None))
    assert ("expect_column_values_to_be_of_type", "behavior") in _failed(result)

    nullable = pa.schema([pa.field(f.name, f.type, nullable=True) for f in EVENTS_SCHEMA])
    table = pa.Table.from_pandas(df, schema=nullable, preserve_index=False)
    ts = table.column("timestamp").to_pylist()
    ts[5] = None
    table = table.set_column(4, "timestamp", pa.array(ts, pa.int64()))
    pq.write_table(table, tmp_path / "nulls.parquet")
    result = _validate(tmp_path / "nulls.parquet")
    failed = _failed(result)
    assert failed[("expect_column_values_to_not_be_null", "timestamp")].unexpected_rows == [5]

    result = _validate(_write(df.drop(columns=["category_id"]), tmp_path / "narrow.parquet", schema=None))
    assert ("expect_table_columns_to_match_ordered_list", None) in _failed(result)
    assert ("expect_column_values_to_be_of_type", "category_id") in _failed(result)  # reported, not a crash
    report = json.loads(json.dumps(result.to_dict()))  # the report is plain JSON
    assert report["success"] is False


def test_empty_events_fail(tmp_path: Path) -> None:
    result = _validate(_write(_events().iloc[:0], tmp_path / "e.parquet"))
    assert not result.success
    assert ("expect_table_row_count_to_be_between", None) in _failed(result)


def test_missing_or_unreadable_events_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        _validate(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet"):
        _validate(tmp_path / "junk.parquet")


def _cli(params_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drlrec.cli", "validate", "--params", str(params_path), *args], capture_output=True, text=True
    )


def test_cli_fails_with_one_line_exit_1_and_writes_the_report(tmp_path: Path, params_path: Path) -> None:
    df = _events()
    df.loc[42, "behavior"] = 6
    events = _write(df, tmp_path / "bad.parquet")
    out = tmp_path / "report"
    proc = _cli(params_path, "--events", str(events), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("drlrec: error: ") and "expect_column_values_to_be_in_set(behavior)" in lines[0]
    report = json.loads((out / "validation.json").read_text())
    assert report["success"] is False
    [failure] = report["failed_expectations"]
    assert failure["unexpected_rows"] == [42] and failure["unexpected_values"] == [6]


def test_cli_passes_and_missing_events_exit_2(tmp_path: Path, params_path: Path) -> None:
    events = _write(_events(), tmp_path / "good.parquet")
    proc = _cli(params_path, "--events", str(events), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r" / "validation.json").read_text())["success"] is True
    proc = _cli(params_path, "--events", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "r2"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
    assert not (tmp_path / "r2").exists()


def test_only_validate_module_imports_great_expectations() -> None:
    importers = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "src").rglob("*.py")
        if "great_expectations" in p.read_text() and "import" in p.read_text()
    ]
    importers = [p for p in importers if any(
        line.lstrip().startswith(("import great_expectations", "from great_expectations"))
        for line in (ROOT / p).read_text().splitlines()
    )]
    assert importers == ["src/drlrec/data/validate.py"]


def test_taobao_head_slice_validates(tmp_path: Path, taobao_head: Path) -> None:
    out = tmp_path / "out"
    ingest_file(taobao_head, out / "events.parquet", out / "quarantine.parquet", out / "ingest_report.json", IngestConfig())
    result = _validate(out / "events.parquet")
    assert result.success, result.first_failure()
    assert result.rows == 30_944 and result.profile["users"] == 294
