"""Great Expectations validation of events.parquet. The only module that imports great_expectations.

The suite lives as JSON in `expectations/events_suite.json` (a GX 1.x ExpectationSuite). Each expectation
carries `meta.scope`, which says which table it is checked against:

- `rows`:  every record batch of `validate.sample_rows` rows of the file, in turn, so a 100M-row file is
  never one GX batch. Results are merged over batches: counts add up, failing row numbers are global.
- `users`: one row per user with the number of events (`user_id`, `events`), counted over the whole file.
- `mix`:   one row with the share of each behaviour in the whole file (`share_pv`, ... `share_buy`).

Numbers that belong to the configuration (the time window, id range, distribution bounds) are
`{"$PARAMETER": name}` placeholders in the suite, filled from params.yaml at run time.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from drlrec.config import IngestConfig, ValidateConfig
from drlrec.errors import InputError
from drlrec.schema import BEHAVIORS

SCOPES: tuple[str, ...] = ("rows", "users", "mix")
#: How many failing values and row numbers each expectation keeps for the report.
SAMPLE = 20
#: meta key holding an expectation's position in the suite JSON while it runs.
INDEX_KEY = "drlrec_index"


@dataclass
class Outcome:
    """One expectation, merged over every batch it ran on."""

    type: str
    scope: str
    kwargs: dict[str, Any]
    success: bool = True
    element_count: int = 0
    unexpected_count: int = 0
    observed_value: Any = None
    unexpected_values: list[Any] = field(default_factory=list)
    unexpected_rows: list[int] = field(default_factory=list)
    exception: str | None = None

    def describe(self) -> str:
        """One line: what was expected and what was found."""
        column = self.kwargs.get("column")
        what = self.type + (f"({column})" if column else "")
        if self.exception:
            return f"{what} could not run: {self.exception}"
        if self.unexpected_count:
            values = ", ".join(map(str, self.unexpected_values[:5]))
            rows = ", ".join(map(str, self.unexpected_rows[:5]))
            return f"{what}: {self.unexpected_count:,} of {self.element_count:,} rows fail (values {values}; rows {rows})"
        bounds = {k: v for k, v in self.kwargs.items() if k not in ("column", "batch_id")}
        return f"{what}: observed {self.observed_value!r}, expected {bounds}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.type,
            "scope": self.scope,
            "kwargs": self.kwargs,
            "success": self.success,
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "observed_value": self.observed_value,
            "unexpected_values": self.unexpected_values,
            "unexpected_rows": self.unexpected_rows,
            "exception": self.exception,
        }


@dataclass
class ValidationResult:
    """The merged outcome of the suite on one events file."""

    events: str
    suite: str
    rows: int
    batches: int
    outcomes: list[Outcome]
    profile: dict[str, Any]
    parameters: dict[str, Any]
    seconds: float

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def first_failure(self) -> str:
        failed = self.failed
        if not failed:
            return "none"
        more = f" (+{len(failed) - 1} more failed expectations)" if len(failed) > 1 else ""
        return failed[0].describe() + more

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "events": self.events,
            "suite": self.suite,
            "rows": self.rows,
            "batches": self.batches,
            "evaluated_expectations": self.evaluated,
            "successful_expectations": self.evaluated - len(self.failed),
            "failed_expectations": [o.to_dict() for o in self.failed],
            "profile": self.profile,
            "parameters": self.parameters,
            "results": [o.to_dict() for o in self.outcomes],
        }


def suite_parameters(cfg: ValidateConfig, ingest: IngestConfig) -> dict[str, Any]:
    """The values of the suite's `$PARAMETER` placeholders, from the configuration."""
    params: dict[str, Any] = {
        "window_start": int(ingest.window_start),
        "window_last": int(ingest.window_end) - 1,
        "max_id": int(cfg.max_id),
        "events_per_user_median_min": float(cfg.events_per_user_median[0]),
        "events_per_user_median_max": float(cfg.events_per_user_median[1]),
    }
    for name in BEHAVIORS:
        low, high = cfg.behavior_share_bounds[name]
        params[f"share_{name}_min"] = float(low)
        params[f"share_{name}_max"] = float(high)
    return params


def load_suite_json(path: Path) -> dict[str, Any]:
    """Read the suite JSON and check every expectation has a known scope."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"expectation suite not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"expectation suite {path} is not valid JSON: {exc}") from None
    for i, exp in enumerate(raw.get("expectations", [])):
        scope = (exp.get("meta") or {}).get("scope")
        if scope not in SCOPES:
            raise InputError(f"expectation #{i} ({exp.get('type')}) in {path} has meta.scope={scope!r}; use one of {SCOPES}")
    return raw


def _open_events(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise InputError(f"events file not found: {path} (run `drlrec ingest` first)")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from None


class _Runner:
    """One ephemeral GX context with a pandas data source; runs a sub-suite against a DataFrame."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.source = self.ctx.data_sources.add_pandas("drlrec")
        self.definitions: dict[str, Any] = {}

    def definition(self, scope: str, expectations: list[dict[str, Any]]):
        if scope not in self.definitions:
            suite = self.gx.ExpectationSuite(name=f"events_{scope}", expectations=expectations)
            suite = self.ctx.suites.add(suite)
            batch = self.source.add_dataframe_asset(scope).add_batch_definition_whole_dataframe(scope)
            self.definitions[scope] = self.ctx.validation_definitions.add(
                self.gx.ValidationDefinition(data=batch, suite=suite, name=f"validate_{scope}")
            )
        return self.definitions[scope]

    def run(self, scope: str, expectations: list[dict[str, Any]], frame, parameters: dict[str, Any]):
        definition = self.definition(scope, expectations)
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE},
        )
        return result.results


def _index(result: Any) -> int:
    """Position in the suite JSON of the expectation a GX result belongs to."""
    return int(result.expectation_config.meta[INDEX_KEY])


def _plain(value: Any) -> Any:
    """JSON-friendly version of a GX observed value."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _merge(outcome: Outcome, result: Any, offset: int) -> None:
    info = result.exception_info or {}
    raised = info.get("raised_exception") if isinstance(info, dict) else False
    if raised:
        outcome.success = False
        outcome.exception = outcome.exception or str(info.get("exception_message", "exception")).splitlines()[0]
        return
    outcome.success = outcome.success and bool(result.success)
    res = result.result or {}
    outcome.element_count += int(res.get("element_count", 0) or 0)
    outcome.unexpected_count += int(res.get("unexpected_count", 0) or 0)
    if "observed_value" in res and (outcome.observed_value is None or not result.success):
        outcome.observed_value = _plain(res["observed_value"])
    room = SAMPLE - len(outcome.unexpected_values)
    if room > 0:
        outcome.unexpected_values += _plain(list(res.get("partial_unexpected_list") or [])[:room])
        outcome.unexpected_rows += [int(i) + offset for i in list(res.get("partial_unexpected_index_list") or [])[:room]]


def validate_events(
    events: str | Path,
    suite_path: str | Path,
    cfg: ValidateConfig,
    ingest: IngestConfig,
    progress: bool = False,
) -> ValidationResult:
    """Run the suite on `events` batch by batch; return the merged result (never raises on a failed check).

    Memory is bounded by one record batch plus one (user, count) pair per user.
    """
    import pandas as pd
    from tqdm import tqdm

    started = time.perf_counter()
    events = Path(events)
    raw_suite = load_suite_json(Path(suite_path))
    parquet = _open_events(events)
    parameters = suite_parameters(cfg, ingest)
    # GX does not return results in suite order: tag each expectation with its index to match them back.
    by_scope: dict[str, list[dict[str, Any]]] = {s: [] for s in SCOPES}
    for i, exp in enumerate(raw_suite["expectations"]):
        by_scope[exp["meta"]["scope"]].append({**exp, "meta": {**exp["meta"], INDEX_KEY: i}})
    outcomes = [
        Outcome(type=exp["type"], scope=exp["meta"]["scope"], kwargs=_plain(_resolve(exp["kwargs"], parameters)))
        for exp in raw_suite["expectations"]
    ]

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = _Runner()
        behavior_counts = np.zeros(256, dtype=np.int64)
        user_counts: list[pa.Table] = []
        rows = 0
        batches = 0
        total = parquet.metadata.num_rows
        names = parquet.schema_arrow.names
        bar = tqdm(total=total, desc="validate", unit="rows", unit_scale=True, disable=None if progress else True, leave=False)
        batch_iter = parquet.iter_batches(batch_size=max(1, int(cfg.sample_rows)))
        # An empty file still gets the column and type checks, on a zero-row batch of its schema.
        for batch in batch_iter if total else [pa.RecordBatch.from_pylist([], schema=parquet.schema_arrow)]:
            frame = batch.to_pandas()
            for result in runner.run("rows", by_scope["rows"], frame, parameters):
                _merge(outcomes[_index(result)], result, rows)
            if "behavior" in names:
                codes = batch.column(names.index("behavior")).drop_null().to_numpy(zero_copy_only=False)
                behavior_counts += np.bincount(codes.astype(np.int64) & 0xFF, minlength=256)
            if "user_id" in names:
                users = pa.table({"user_id": batch.column(names.index("user_id"))})
                user_counts.append(users.group_by("user_id").aggregate([("user_id", "count")]))
            rows += batch.num_rows
            batches += 1
            bar.update(batch.num_rows)
        bar.close()

        # Whole-file profiles: events per user, behaviour shares.
        if user_counts:
            merged = pa.concat_tables(user_counts).group_by("user_id").aggregate([("user_id_count", "sum")])
            per_user = pd.DataFrame(
                {"user_id": merged.column("user_id").to_numpy(), "events": merged.column("user_id_count_sum").to_numpy()}
            )
        else:
            per_user = pd.DataFrame({"user_id": np.zeros(0, np.int64), "events": np.zeros(0, np.int64)})
        known = behavior_counts[: len(BEHAVIORS)]
        shares = {f"share_{b}": (float(known[i]) / rows if rows else float("nan")) for i, b in enumerate(BEHAVIORS)}
        mix = pd.DataFrame({k: [v] for k, v in shares.items()})
        for scope, frame in (("users", per_user), ("mix", mix)):
            if by_scope[scope]:
                for result in runner.run(scope, by_scope[scope], frame, parameters):
                    _merge(outcomes[_index(result)], result, 0)

    counts = per_user["events"].to_numpy()
    profile = {
        "rows": rows,
        "users": int(len(per_user)),
        "events_per_user": (
            {q: float(np.quantile(counts, p)) for q, p in (("min", 0), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("max", 1))}
            | {"mean": float(counts.mean())}
            if len(counts)
            else {}
        ),
        "behavior_mix": {b: shares[f"share_{b}"] for b in BEHAVIORS},
        "timestamp_range": _range(events, "timestamp") if "timestamp" in names and rows else None,
    }
    return ValidationResult(
        events=str(events),
        suite=str(suite_path),
        rows=rows,
        batches=batches,
        outcomes=outcomes,
        profile=profile,
        parameters=parameters,
        seconds=time.perf_counter() - started,
    )


def _resolve(kwargs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """kwargs with `$PARAMETER` placeholders replaced by their values (for the report)."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, dict) and "$PARAMETER" in value:
            value = parameters.get(value["$PARAMETER"], value)
        out[key] = value
    return out


def _range(path: Path, column: str) -> list[int]:
    """[min, max] of an integer column from the Parquet row-group statistics (no data read)."""
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.to_arrow_schema().names.index(column)
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max:
            return []
        lows.append(stats.min)
        highs.append(stats.max)
    return [int(min(lows)), int(max(highs))] if lows else []
