"""Partitioned ingest + featurize on a local Dask cluster (Prefect DaskTaskRunner) == the single pass."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from drlrec import partitioned
from drlrec.config import load_params
from drlrec.stages import featurize_stage, ingest_stage, synth_stage


def _messy_log(clean: Path, out: Path) -> None:
    """The synthetic log made hard: a header, a block of users moved out of order (the external-sort path),
    exact duplicates far apart, and one row of every quarantine reason, spread over the byte ranges."""
    body = clean.read_text().splitlines()
    if not body[0][0].isdigit():
        body = body[1:]
    block = body[500:900]
    del body[500:900]
    body[2000:2000] = block
    body.insert(10, body[11])  # duplicate of the next row
    body.insert(len(body) - 5, body[100])  # duplicate far from its original (another byte range)
    for at, row in (
        (50, "x,1,2,pv,1511600000"),  # bad id
        (70, ""),  # blank line
        (len(body) // 3, "1,2,3"),  # field count
        (len(body) // 2, "5,6,7,click,1511600000"),  # unknown behaviour
        (2 * len(body) // 3, "5,6,7,pv,99"),  # out of window
        (len(body) - 20, "5,6,7,pv,15116x0000"),  # bad timestamp
    ):
        body.insert(at, row)
    out.write_text("user_id,item_id,category_id,behavior_type,timestamp\n" + "\n".join(body) + "\n")


def _assert_same_features(a: Path, b: Path) -> None:
    """Byte-identical featurize outputs: vocabularies, statistics, report and every split file."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert len([n for n in names if n.endswith(".npy")]) == 3 * 18  # 18 fields per split folder
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "featurize_report.json").read_text()) == json.loads((b / "featurize_report.json").read_text())


def _assert_same_ingest(a: Path, b: Path) -> int:
    single, parted = pq.read_table(a / "events.parquet"), pq.read_table(b / "events.parquet")
    assert single.num_rows > 10000 and single.equals(parted)  # same rows, same order, same types
    qa = pq.read_table(a / "quarantine.parquet").to_pandas().sort_values("line", kind="stable").reset_index(drop=True)
    qb = pq.read_table(b / "quarantine.parquet").to_pandas()
    assert qa.equals(qb)  # same rows, physical lines, reasons and raw text
    ra, rb = (json.loads((d / "ingest_report.json").read_text()) for d in (a, b))
    for key in ("rows_read", "rows_kept", "rows_quarantined", "quarantined_by_reason", "users", "input_sorted_by_user_time"):
        assert ra[key] == rb[key], key
    return len(qa)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("logs")
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml", ("base.progress=false",))
    clean = synth_stage(params, out=folder / "clean.csv", users=150)
    _messy_log(clean, folder / "messy.csv")
    with open(folder / "messy.csv", "rb") as src, gzip.open(folder / "messy.csv.gz", "wb") as dst:
        dst.write(src.read())
    return {"clean": clean, "messy": folder / "messy.csv", "gzip": folder / "messy.csv.gz"}


def test_partition_of_is_stable_and_spread() -> None:
    users = np.arange(100_000)
    part = partitioned.partition_of(users, 4)
    assert np.array_equal(part, partitioned.partition_of(users.copy(), 4))
    assert np.bincount(part, minlength=4).min() > 24_000  # consecutive ids spread evenly


@pytest.mark.parametrize("log", ["clean", "gzip"])
def test_partitioned_in_process_equals_single_pass(log: str, logs, params_path: Path, tmp_path: Path) -> None:
    params = load_params(params_path, ("scale.partitions=3",))
    ingest_stage(params, logs[log], tmp_path / "single")
    partitioned.run_partitioned_ingest(params, logs[log], tmp_path / "parted")
    assert _assert_same_ingest(tmp_path / "single", tmp_path / "parted") == (0 if log == "clean" else 8)
    featurize_stage(params, tmp_path / "single" / "events.parquet", tmp_path / "f1")
    partitioned.run_partitioned_featurize(params, tmp_path / "single" / "events.parquet", tmp_path / "f2")
    _assert_same_features(tmp_path / "f1", tmp_path / "f2")
    assert not (Path(params.paths.partitions) / "ingest").exists()  # work files removed


def test_four_partitions_on_local_dask_cluster_equal_single_pass(logs, params_path: Path, tmp_path: Path, prefect_harness) -> None:
    from flows.partitioned import partitioned_featurize_flow, partitioned_ingest_flow

    params = load_params(params_path)
    ingest_stage(params, logs["messy"], tmp_path / "single")
    featurize_stage(params, tmp_path / "single" / "events.parquet", tmp_path / "single" / "features")

    out = tmp_path / "dask"
    overrides = [
        "scale.partitions=4",
        f"paths.raw_data={logs['messy']}",
        f"paths.events={out / 'events.parquet'}",
        f"paths.quarantine={out / 'quarantine.parquet'}",
        f"paths.ingest_report={out / 'ingest_report.json'}",
        f"paths.features={out / 'features'}",
    ]
    dask_params = load_params(params_path, tuple(overrides))
    report = partitioned_ingest_flow(dask_params)
    assert report["sort_buckets"] == 4 and report["input_sorted_by_user_time"] is False
    assert _assert_same_ingest(tmp_path / "single", out) == 8  # 6 bad rows + 2 duplicates
    partitioned_featurize_flow(dask_params)
    _assert_same_features(tmp_path / "single" / "features", out / "features")
