"""Config: params.yaml loads into typed frozen dataclasses; overrides parse as YAML; mistakes are clear errors."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from drlrec import config as config_module
from drlrec.config import Params, load_params, params_from_dict, params_to_dict
from drlrec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_project_params_equal_the_documented_defaults() -> None:
    """params.yaml and the dataclass defaults say the same thing (no silent drift between the two)."""
    loaded = load_params(ROOT / "params.yaml")
    assert params_to_dict(loaded) == params_to_dict(Params())


def test_every_config_field_has_a_docstring() -> None:
    tree = ast.parse(Path(config_module.__file__).read_text())
    checked = 0
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config")):
        body = cls.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                assert documented, f"{cls.name}.{stmt.target.id} has no docstring"
                checked += 1
    assert checked > 20


def test_overrides_are_typed_yaml(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml", ["synth.users=123", "ingest.compression=lz4", "base.progress=false"])
    assert params.synth.users == 123
    assert params.ingest.compression == "lz4"
    assert params.base.progress is False
    params = load_params(ROOT / "params.yaml", ["synth.behavior_mix=[0.7, 0.1, 0.1, 0.1]"])
    assert params.synth.behavior_mix == (0.7, 0.1, 0.1, 0.1)


def test_config_is_frozen() -> None:
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.synth.users = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["synth.userz=5"], "unknown key"),
        (["nosuch.key=1"], "unknown key"),
        (["synth.users=many"], "expected an integer"),
        (["synth.users=1.5"], "expected an integer"),
        (["base.progress=maybe"], "expected true or false"),
        (["synth.behavior_mix=[1, 2]"], "expected 4 values"),
        (["synthusers=3"], "expected section.key=value"),
        (["synth.users"], "expected section.key=value"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_params(ROOT / "params.yaml", overrides)
    assert "\n" not in str(info.value)


def test_missing_and_malformed_params_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_missing_sections_take_defaults() -> None:
    assert params_from_dict({"synth": {"users": 7}}).ingest == Params().ingest


def test_params_to_dict_round_trips() -> None:
    params = load_params(ROOT / "params.yaml")
    again = params_from_dict(yaml.safe_load(yaml.safe_dump(params_to_dict(params))))
    assert again == params
