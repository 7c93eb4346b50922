"""`drlrec ope --policy ALIAS_OR_VERSION`: a candidate estimated from the service's own logs."""

from __future__ import annotations

from typing import Any

from drlrec.config import Params


def ope_stage(params: Params, policy: str, logs: str | None = None, interactions: str | None = None,
              candidate_exploration: str = "off", out_dir: str | None = None, tracking_uri: str | None = None,
              loader: Any = None, weights: str = "slot") -> dict[str, Any]:
    """`drlrec ope`: estimate `policy` (a registry alias or version) from the exposure and interaction logs;
    print the table, write <out_dir>/ope-<policy>.json and .md, and log them to MLflow.
    `loader(alias_or_version) -> ModelBundle` (default: drlrec.registry.load_model)."""
    from pathlib import Path

    from drlrec.atomic import write_json, write_text
    from drlrec.errors import InputError
    from drlrec.ope_logs import estimate_policy, format_table
    from drlrec.registry import load_model
    from drlrec.tracking import start_run

    load = loader or (lambda ref: load_model(ref, tracking_uri=tracking_uri, name=params.register.model_name))
    if not Path(logs or params.paths.exposures).is_file():
        raise InputError(f"{logs or params.paths.exposures}: no exposure log (serve recommendations first, or pass --logs)")
    result = estimate_policy(params, load(policy), policy, logs, interactions, candidate_exploration, load, weights)
    out = Path(out_dir or Path(params.paths.artifacts) / "ope")
    stem = f"ope-{policy}"
    table = format_table(result)
    write_json(out / f"{stem}.json", result)
    write_text(out / f"{stem}.md", table)
    with start_run(f"ope-{policy}", tracking_uri=tracking_uri, tags={"stage": "ope", "policy": policy,
                                                                    "candidate_version": result["candidate_version"]}) as run:
        run.log_params({"policy": policy, "candidate_exploration": candidate_exploration, "logs": result["logs"],
                        "bootstrap": result["bootstrap"], "weights": weights})
        run.log_metrics({f"ope/{reward}/{name}{suffix}": e[key]
                         for reward in ("click", "conversion") for name, e in result[reward]["estimates"].items()
                         for suffix, key in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))})
        run.log_metrics({"ope/n_impressions": result["n_impressions"], "ope/unsupported_mass": result["unsupported_mass"]})
        for suffix in ("json", "md"):
            run.log_artifact(out / f"{stem}.{suffix}")
    print(table)
    return result
