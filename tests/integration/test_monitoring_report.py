"""The HTML drift report: self-contained, with the drift table, and rendered by headless chromium."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from drlrec import monitoring
from drlrec.config import DriftConfig, FeaturizeConfig, MonitorConfig, SynthConfig
from drlrec.data import synth

SYNTH = dataclasses.replace(SynthConfig(), users=800)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = synth.generate(SYNTH, 3, progress=False).to_pandas()
    train = events[events["timestamp"] < SYNTH.start + 7 * 86400]
    shifted = synth.generate_drift(SYNTH, DriftConfig(), 3, progress=False).to_pandas()
    run = monitoring.monitor(
        monitoring.build_reference(train, MonitorConfig()),
        monitoring.window_of(monitoring.sort_events(shifted), 1.0),
        np.unique(train["item_id"].to_numpy()),
        MonitorConfig(),
        FeaturizeConfig(),
    )
    assert run.result.drift
    return monitoring.write_report(run, tmp_path_factory.mktemp("monitoring"))


def test_report_files_and_self_contained_html(report: Path) -> None:
    assert {p.name for p in report.iterdir()} == {"report.html", "report.json", "decision.txt"}
    page = (report / "report.html").read_text(encoding="utf-8")
    assert 'id="drift-table"' in page and "<b>DRIFT</b>" in page
    assert "<td>category</td>" in page and "Data Drift" in page  # our table, then Evidently's report
    # self-contained: no script or stylesheet fetched from elsewhere
    assert "<script src=\"http" not in page and "<link rel=\"stylesheet\" href=\"http" not in page
    decision = (report / "decision.txt").read_text()
    assert decision.startswith("drift: ") and decision.count("\n") == 1


def test_headless_chromium_screenshot_shows_the_drift_table(report: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread
    from system_tools import system_tool  # skips without chromium (fails under DRLREC_REQUIRE_SYSTEM_TOOLS=1)

    browser = shutil.which("chromium-browser") or system_tool("chromium")

    shot = tmp_path / "report.png"
    command = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
               f"--screenshot={shot}", "--window-size=1400,1600", (report / "report.html").as_uri()]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    image = imread(shot)[..., :3]  # [H, W, 3] floats in [0, 1]
    assert image.shape[:2] == (1600, 1400)
    assert image.std() > 0.05  # not blank
    top = image[:900]  # the summary and the drift table sit at the top of the page
    dark = (top.max(axis=2) < 0.3).mean()  # text and table borders
    drift_rows = ((np.abs(top - np.array([0xFE, 0xE4, 0xE2]) / 255)).max(axis=2) < 0.02).mean()  # #fee4e2 rows
    assert dark > 0.005, "no text rendered at the top of the report"
    assert drift_rows > 0.01, "no highlighted drift rows rendered in the drift table"
