"""Shared fixtures: the real Taobao slices in ../shared/data (skip, or fail under DRLREC_REQUIRE_SHARED_DATA=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drlrec.settings import apply_offline_env, load_settings

apply_offline_env()
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _shared_file(name: str) -> Path:
    settings = load_settings()
    path = settings.shared_data_dir / name
    if not path.is_file():
        message = f"real data slice {path} is absent (set DRLREC_SHARED_DATA to the folder holding it)"
        if settings.require_shared_data:
            pytest.fail(f"DRLREC_REQUIRE_SHARED_DATA=1 but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def taobao_head() -> Path:
    """../shared/data/taobao_userbehavior_head.csv.gz: 30,959 rows, 294 whole user histories."""
    return _shared_file("taobao_userbehavior_head.csv.gz")


@pytest.fixture(scope="session")
def taobao_timewindow() -> Path:
    """../shared/data/taobao_userbehavior_timewindow_jason-wang1.csv.gz: 110,300 rows in a 2-hour window."""
    return _shared_file("taobao_userbehavior_timewindow_jason-wang1.csv.gz")


@pytest.fixture(scope="session")
def diginetica_sample() -> Path:
    """../shared/data/diginetica_sample_train-item-views_srgnn.csv.gz (Diginetica session format)."""
    return _shared_file("diginetica_sample_train-item-views_srgnn.csv.gz")


@pytest.fixture()
def params_path(tmp_path: Path) -> Path:
    """A copy of the project's params.yaml whose paths all point inside tmp_path."""
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["base"]["progress"] = False
    for key, value in raw["paths"].items():
        if key == "expectations":
            raw["paths"][key] = str(PROJECT_ROOT / value)
        else:
            raw["paths"][key] = str(tmp_path / value)
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
