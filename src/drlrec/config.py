"""Typed, frozen configuration loaded from params.yaml: one dataclass per section, a docstring per field.

Loading has no side effects: nothing is created, no URI is set. Overrides use the CLI's
`--set section.key=value` syntax; values are parsed as YAML, so `--set synth.users=500` is an int.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drlrec.errors import ConfigError

# Tianchi UserBehavior nominal window: [2017-11-25 00:00, 2017-12-04 00:00) in UTC+8.
TAOBAO_WINDOW_START = 1511539200
TAOBAO_WINDOW_END = 1512316800


@dataclass(frozen=True)
class BaseConfig:
    """Settings shared by every stage."""

    seed: int = 42
    """Global random seed; every stage derives its generators from it."""
    progress: bool = True
    """Show progress bars on long work (they go to stderr and are hidden when it is not a terminal)."""


@dataclass(frozen=True)
class PathsConfig:
    """Every path the pipeline reads or writes, declared once (dvc.yaml reads them as ${paths.*})."""

    raw_data: str = "data/UserBehavior.csv"
    """The raw behaviour log (header-less Taobao CSV, plain or .gz); data/ is tracked by data.dvc."""
    artifacts: str = "artifacts"
    """Folder for every stage output (never under data/)."""
    events: str = "artifacts/events.parquet"
    """Typed, validated events written by ingest, sorted by user then time."""
    quarantine: str = "artifacts/quarantine.parquet"
    """Rows rejected by ingest, each with its line number, reason and raw bytes."""
    ingest_report: str = "artifacts/ingest_report.json"
    """Ingest counts: rows read, kept, quarantined, and quarantined by reason."""
    validation: str = "artifacts/validation.json"
    """Great Expectations result for events.parquet: success and the failed expectations."""
    expectations: str = "expectations/events_suite.json"
    """The Great Expectations suite, versioned with the code."""


@dataclass(frozen=True)
class SynthConfig:
    """The calibrated Taobao-like log generator (`drlrec synth`)."""

    users: int = 2000
    """Number of users to generate."""
    items: int = 60000
    """Size of the item catalogue the generator draws from."""
    categories: int = 1500
    """Number of categories; every item belongs to exactly one."""
    start: int = TAOBAO_WINDOW_START
    """First second of the generated window (Unix seconds)."""
    days: int = 9
    """Length of the generated window in days."""
    events_median: float = 75.0
    """Target median events per user (the full Taobao file: about 75)."""
    events_mean: float = 101.0
    """Target mean events per user (the full Taobao file: about 101); mean > median gives the long tail."""
    events_max: int = 5000
    """Hard cap on events for a single user."""
    behavior_mix: tuple[float, float, float, float] = (0.896, 0.055, 0.029, 0.020)
    """Target share of pv, cart, fav, buy."""
    item_zipf: float = 1.05
    """Zipf exponent of item popularity inside a category."""
    category_zipf: float = 1.1
    """Zipf exponent of category popularity."""
    preferred_categories: int = 4
    """How many preferred categories each user has."""
    preference_strength: float = 0.8
    """Probability that an event falls in one of the user's preferred categories."""
    preference_drift: float = 0.15
    """Probability per day that one preferred category is replaced by another."""
    session_gap: int = 1800
    """Seconds of inactivity that end a session (30 minutes)."""
    session_events_mean: float = 12.0
    """Mean number of events in a session."""
    review_rate: float = 0.35
    """Probability that a pv re-views an item the user already viewed."""
    buy_after_view: float = 0.9
    """Share of buys (and carts/favs) made on an item the user viewed earlier: the funnel."""


@dataclass(frozen=True)
class IngestConfig:
    """Streaming CSV -> typed Parquet with quarantine (`drlrec ingest`)."""

    window_start: int = TAOBAO_WINDOW_START
    """First valid timestamp (inclusive), Unix seconds. Default 2017-11-25 00:00 UTC+8."""
    window_end: int = TAOBAO_WINDOW_END
    """End of the valid window (exclusive), Unix seconds. Default 2017-12-04 00:00 UTC+8."""
    block_size_mb: int = 16
    """Bytes of CSV parsed per Arrow record batch; peak memory scales with this, not with the file."""
    bucket_rows: int = 4_000_000
    """Most rows sorted in memory at once; larger inputs are range-partitioned by user on disk first."""
    compression: str = "zstd"
    """Parquet compression codec for events.parquet."""


@dataclass(frozen=True)
class ValidateConfig:
    """Great Expectations validation of events.parquet (`drlrec validate`)."""

    sample_rows: int = 1_000_000
    """Rows given to the GX batch at once; bigger files are checked batch by batch."""
    max_id: int = 2**62
    """Largest id accepted for users, items and categories."""
    behavior_share_bounds: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "pv": (0.70, 0.97),
            "cart": (0.01, 0.15),
            "fav": (0.005, 0.10),
            "buy": (0.002, 0.08),
        }
    )
    """Accepted [low, high] share of each behaviour in the whole file."""
    events_per_user_median: tuple[float, float] = (1.0, 2000.0)
    """Accepted range of the median number of events per user."""


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    base: BaseConfig = field(default_factory=BaseConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)


# ----------------------------------------------------------------------------------------------------------
# loading


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a type annotation, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()
        }
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}" if where else name) for name, value in data.items()}
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (value as YAML) into (["section", "key"], value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc.__class__.__name__})") from exc
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of the raw params dict with `section.key=value` overrides applied."""
    import copy

    merged = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {key} is not a section")
        node[keys[-1]] = value
    return merged


def read_params_yaml(path: str | Path) -> dict[str, Any]:
    """Read params.yaml as a plain dict (missing file or bad YAML -> ConfigError)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def params_from_dict(data: dict[str, Any]) -> Params:
    """Build Params from a dict; missing sections and keys take their defaults, unknown keys are errors."""
    return _build(Params, data, "")


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Load params.yaml with optional `section.key=value` overrides."""
    return params_from_dict(apply_overrides(read_params_yaml(path), overrides))


def params_to_dict(params: Any) -> dict[str, Any]:
    """Plain-dict view of a config (tuples become lists), e.g. for logging to MLflow or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(params).items()}
