"""`drlrec summary`: a report of what the pipeline produced (not a stage: it writes nothing)."""

from __future__ import annotations

import json
from pathlib import Path

from drlrec.config import Params


def summary_report(params: Params) -> str:
    """Print (and return) what the pipeline produced: the test metrics table, the registry decision,
    where every artifact is, and how to open the MLflow and Prefect UIs."""
    from drlrec.tracking import default_tracking_uri

    lines: list[str] = []
    metrics_path = Path(params.paths.metrics)
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        lines += [f"Test metrics of {metrics.get('model')} ({metrics_path}; value [95% bootstrap CI]):", ""]
        lines.append(f"  {'target':<14} {'HR@10':<26} {'NDCG@10':<26} {'MRR':<26}")
        for group in ("next_item", "next_purchase"):
            row = metrics.get("metrics", {}).get(group, {})
            cells = [
                f"{row[m]['value']:.4f} [{row[m]['ci_low']:.4f}, {row[m]['ci_high']:.4f}]" if m in row else "-"
                for m in ("hr_at_10", "ndcg_at_10", "mrr")
            ]
            lines.append(f"  {group:<14} " + " ".join(f"{c:<26}" for c in cells))
        counts = metrics.get("counts", {})
        lines += ["  " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()), ""]
    else:
        lines += [f"No test metrics yet ({metrics_path} is missing: run `dvc repro`).", ""]
    registry_path = Path(params.paths.registry)
    if registry_path.is_file():
        d = json.loads(registry_path.read_text())
        champ = d.get("champion_value")
        lines += [
            f"Registry: {d['model_name']} version {d['version']} registered as @challenger; "
            f"{'promoted to @champion' if d['promoted'] else 'not promoted'} ({d['reason']}). "
            f"@champion = version {d.get('champion')}"
            + ("" if champ is None else f"; previous champion {d['metric']} {champ:.4f}"),
            "",
        ]
    artifacts = [
        ("events (typed Parquet)", params.paths.events),
        ("quarantined rows", params.paths.quarantine),
        ("validation result", params.paths.validation),
        ("features", params.paths.features),
        ("trained model", params.paths.model),
        ("test metrics", params.paths.metrics),
        ("reports (tables, charts)", params.paths.reports),
        ("simulator and policies", params.paths.simulator),
        ("registered bundle", params.paths.bundle),
        ("gate decision", params.paths.registry),
    ]
    lines.append("Artifacts:")
    lines += [f"  {name:<26} {path}" for name, path in artifacts if Path(path).exists()]
    uri = default_tracking_uri()
    lines += [
        "",
        f"MLflow runs and registry: {uri}",
        "  Both UIs:   .venv/bin/drlrec ui   (MLflow UI + Prefect server on free 127.0.0.1 ports; Ctrl-C stops both)",
        "              then PREFECT_API_URL=<its printed API URL> .venv/bin/drlrec deploy (scheduled flows)",
    ]
    text = "\n".join(lines)
    print(text)
    return text
