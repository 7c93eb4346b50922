"""bench/full_scale.py (`make full-scale`): the disk check and bad arguments fail in one line, and a small
run of the data stages (synth, ingest, featurize) prints and records every stage with its own peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "full_scale.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_too_little_disk_and_unknown_stages_fail_in_one_line(tmp_path: Path) -> None:
    out = run("--users", str(10**12), "--work", str(tmp_path))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "GB free" in out.stderr and "needs about" in out.stderr
    out = run("--only", "ingest,bake", "--work", str(tmp_path))
    assert out.returncode == 2 and "unknown stage(s) bake" in out.stderr
    assert not (tmp_path / "params.yaml").exists()  # nothing ran


def test_data_stages_on_a_small_file(tmp_path: Path) -> None:
    # validate is left out: its Great Expectations import alone costs ~25 s of the suite (tests/data covers it)
    out = run("--users", "200", "--only", "synth,ingest,featurize", "--work", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "full_scale.json").read_text())
    stages = {row["stage"]: row for row in report["stages"]}
    assert list(stages) == ["synth", "ingest", "featurize"]
    assert all(row["exit"] == 0 and row["peak_rss_gb"] > 0 and row["seconds"] > 0 for row in stages.values())
    # the generated file is the real file's order: users in lexicographic string order ("1", "10", "100", ...)
    users = [int(line.split(",", 1)[0]) for line in (tmp_path / "UserBehavior.csv").read_text().splitlines()]
    first_seen = list(dict.fromkeys(users))
    assert first_seen == sorted(first_seen, key=str) and len(first_seen) == 200
    assert stages["synth"]["rows"] == len(users) == stages["ingest"]["rows"]
    assert stages["featurize"]["rows_per_s"] > 0 and stages["featurize"]["output_mb"] > 0
    for name in stages:
        assert name in out.stdout
