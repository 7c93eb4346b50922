"""CLI: --help is fast because heavy libraries load lazily; every command takes --params and --set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from drlrec.cli import build_parser

HEAVY = ("pandas", "pyarrow", "numpy", "torch", "great_expectations", "mlflow", "evidently", "prefect", "dvc", "sklearn")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from drlrec.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: drlrec" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "HEAVY=", f"--help imported: {proc.stderr.strip()}"


def test_every_command_takes_params_and_set() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"synth", "stats", "ingest", "validate"} <= set(sub.choices)
    for name, command in sub.choices.items():
        options = {o for action in command._actions for o in action.option_strings}
        assert {"--params", "--set"} <= options, name


def test_set_is_repeatable() -> None:
    args = build_parser().parse_args(["ingest", "--set", "ingest.block_size_mb=4", "--set", "base.seed=1"])
    assert args.overrides == ["ingest.block_size_mb=4", "base.seed=1"]


def test_bad_override_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "drlrec.cli", "ingest", "--set", "ingest.nope=1"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("drlrec: error: ")


@pytest.mark.parametrize("command", ["synth", "stats", "ingest", "validate"])
def test_command_help_explains(command: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "drlrec.cli", command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--params" in proc.stdout and len(proc.stdout.splitlines()) > 5
