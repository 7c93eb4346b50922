"""`drlrec ab predict` and `drlrec ab report`: OPE's prediction per arm before an A/B test, and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drlrec.config import Params


def ab_predict_stage(params: Params, logs: str | None = None, interactions: str | None = None,
                     out: str | Path | None = None, loader: Any = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """`drlrec ab predict`: ab_predict, print a table, write the JSON (paths.ab_predictions)."""
    from drlrec.atomic import write_json
    from drlrec.serving.abtest import ab_predict, format_predictions

    result = ab_predict(params, logs, interactions, loader=loader, tracking_uri=tracking_uri)
    print(format_predictions(result))
    target = Path(out or params.paths.ab_predictions)
    write_json(target, result)
    print(f"ab predictions: {target}")
    return result


def ab_report_stage(params: Params, out: str | Path | None = None, predictions: str | Path | None = None) -> dict[str, Any]:
    """`drlrec ab report`: read paths.exposures and paths.interactions (and OPE's predictions, when
    `drlrec ab predict` made them), print the table, write the JSON."""
    from drlrec.atomic import write_json
    from drlrec.data.logs import read_exposures, read_interactions
    from drlrec.serving.abtest import ab_report, format_report, read_predictions

    report = ab_report(read_exposures(params.paths.exposures), read_interactions(params.paths.interactions, missing_ok=True),
                       params.ab, read_predictions(params, predictions))
    print(format_report(report))
    target = Path(out or params.paths.ab_report)
    write_json(target, report)
    print(f"ab report: {target}")
    return report
