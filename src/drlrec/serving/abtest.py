"""A/B tests: deterministic assignment of users to variants, and the per-variant report of the exposure and
interaction logs (CTR and conversion with Wilson CIs, two-proportion z-tests, sample-ratio-mismatch check).

An exposure is one served list. An interaction is attributed to the latest exposure of the same user that
showed the same item at or before the interaction's timestamp; an exposure is *clicked* when at least one
interaction (any behaviour) is attributed to it and *converted* when one of them is a buy. CTR and
conversion are shares of exposures, so both are proportions of the same denominator and compare with a
two-proportion z-test. The sample-ratio-mismatch check compares users per variant with the traffic split.

Before a test, `drlrec ab predict` estimates each arm's CTR and conversion, in the same terms, from the
exposure log of the policy already serving (with exploration: drlrec.ope_logs, list-level DR) and writes
them to paths.ab_predictions; the report then shows, beside each arm's observed values, what OPE predicted
for it and whether the observed value falls inside the predicted CI.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drlrec.config import ABConfig, VariantConfig
from drlrec.errors import ConfigError
from drlrec.schema import BUY

_BUCKETS = 10_000


def check_ab_config(cfg: ABConfig) -> None:
    """Variants named once, traffic shares >= 0 summing to 1, the control among them."""
    if not cfg.variants:
        raise ConfigError("ab.variants: at least one variant is needed")
    names = [v.name for v in cfg.variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"ab.variants: names must be unique (got {names})")
    if any(v.traffic < 0 for v in cfg.variants):
        raise ConfigError("ab.variants: traffic shares must be >= 0")
    total = sum(v.traffic for v in cfg.variants)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"ab.variants: traffic shares must sum to 1 (got {total:g})")
    if cfg.control not in names:
        raise ConfigError(f"ab.control {cfg.control!r} is not one of the variants {names}")
    if not 0.5 < cfg.confidence < 1.0:
        raise ConfigError(f"ab.confidence must be in (0.5, 1) (got {cfg.confidence})")


def user_bucket(user_id: int | np.ndarray, salt: str) -> np.ndarray | int:
    """Bucket in [0, 10000) of sha256(f"{salt}:{user_id}"): uniform, stable across processes and restarts."""
    if np.ndim(user_id) == 0:
        digest = hashlib.sha256(f"{salt}:{int(user_id)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % _BUCKETS
    return np.array([user_bucket(int(u), salt) for u in np.asarray(user_id).ravel()], dtype=np.int64)


def assign_variant(user_id: int, cfg: ABConfig) -> VariantConfig:
    """The variant of a user: the bucket falls into the variants' cumulative traffic shares (in order)."""
    bucket = user_bucket(user_id, cfg.salt)
    edge = 0.0
    for variant in cfg.variants:
        edge += variant.traffic * _BUCKETS
        if bucket < round(edge):
            return variant
    return cfg.variants[-1]


# ------------------------------------------------------------------------------------------------ stats


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (well behaved near 0 and 1 and for small n)."""
    from scipy.stats import norm

    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of p2 vs p1: (z, two-sided p-value); (0, 1) when undefined."""
    from scipy.stats import norm

    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return float(z), float(2 * norm.sf(abs(z)))


def srm_check(observed: list[int], expected_share: list[float], alpha: float) -> dict[str, Any]:
    """Chi-square goodness of fit of users per variant against the configured traffic split."""
    from scipy.stats import chisquare

    total = int(sum(observed))
    keep = [i for i, share in enumerate(expected_share) if share > 0]
    if total == 0 or len(keep) < 2:
        return {"chi2": 0.0, "p_value": 1.0, "mismatch": False, "observed": observed, "expected": [0.0] * len(observed)}
    obs = np.array([observed[i] for i in keep], dtype=float)
    exp = np.array([expected_share[i] for i in keep], dtype=float)
    exp = exp / exp.sum() * obs.sum()
    chi2, p_value = chisquare(obs, exp)
    expected = [float(expected_share[i] * total) for i in range(len(observed))]
    return {
        "chi2": float(chi2), "p_value": float(p_value), "mismatch": bool(p_value < alpha),
        "observed": [int(o) for o in observed], "expected": expected,
    }


# ------------------------------------------------------------------------------------------------ logs


def attribute(exposures: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    """Exposures with `clicked` and `converted` flags (see the module doc). Vectorized: the exposures are
    exploded to (user, item, time) rows and each interaction finds its latest one with merge_asof."""
    out = exposures.reset_index(drop=True).copy()
    out["exposure"] = np.arange(len(out))
    out["clicked"] = False
    out["converted"] = False
    if out.empty or interactions.empty:
        return out
    shown = out[["exposure", "user_id", "served_at", "items"]].copy()
    shown["item_id"] = shown["items"].astype(str).str.split()
    shown = shown.explode("item_id").dropna(subset=["item_id"])
    shown["item_id"] = pd.to_numeric(shown["item_id"], errors="coerce")
    shown = shown.dropna(subset=["item_id"]).astype({"item_id": np.int64})
    # served_at is float seconds, interaction timestamps whole seconds: compare at whole seconds
    shown["t"] = np.floor(shown["served_at"].to_numpy(dtype=float)).astype(np.int64)
    acts = interactions[["user_id", "item_id", "behavior", "timestamp"]].rename(columns={"timestamp": "t"})
    acts = acts.astype({"t": np.int64}).sort_values("t", kind="stable")
    shown = shown.sort_values(["t", "exposure"], kind="stable")
    matched = pd.merge_asof(
        acts, shown[["t", "user_id", "item_id", "exposure"]], on="t", by=["user_id", "item_id"],
        direction="backward",
    ).dropna(subset=["exposure"])
    exposure = matched["exposure"].astype(np.int64).to_numpy()
    out.loc[np.unique(exposure), "clicked"] = True
    bought = exposure[matched["behavior"].to_numpy() == BUY]
    out.loc[np.unique(bought), "converted"] = True
    return out


def ab_predict(params: Any, logs: str | None = None, interactions: str | None = None,
               loader: Any = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """OPE's prediction for every arm of `params.ab`, from logs served before the test: the arm's model
    (its alias, loaded by `loader(alias) -> ModelBundle`, default the registry) under the exploration the
    arm will serve with (`serve.exploration`), estimated with list-level weights so that the value is the
    report's own CTR (share of lists clicked) and conversion (share of lists that led to a buy). An arm
    that cannot be estimated (a popularity arm, an alias that does not load, no support in the logs) gets
    `reason` instead of figures. One-line InputError when the logs themselves are unusable."""
    from drlrec.errors import InputError
    from drlrec.ope_logs import estimate_lists, model_lists, policy_impressions, read_logs
    from drlrec.registry import load_model
    from drlrec.serving.exploration import describe

    cfg = params.ab
    check_ab_config(cfg)
    load = loader or (lambda ref: load_model(ref, tracking_uri=tracking_uri, name=params.register.model_name))
    path, exposures, events = read_logs(params, logs, interactions)
    lists, _ = model_lists(exposures)
    if lists.empty:
        raise InputError(f"{path}: no model-ranked list with its state and propensities to predict from")
    setting = describe(params.serve.exploration)
    n_boot, seed = params.evaluate.bootstrap, params.base.seed
    arms: dict[str, dict[str, Any]] = {}
    for variant in cfg.variants:
        arm: dict[str, Any] = {"alias": variant.alias, "policy": variant.policy}
        if variant.policy != "model":
            arm["reason"] = "a popularity arm shows one list to everyone: the model's logs do not support it"
        else:
            try:
                serving, imp = policy_impressions(params, load(variant.alias), variant.alias, exposures, events, setting, load)
                arm["version"] = serving.version
                arm["lists_supported"] = int((np.unique(imp.exposure[imp.list_target > 0])).size)
                for reward in ("click", "conversion"):
                    arm[reward] = estimate_lists(imp, reward, n_boot, seed)
            except InputError as exc:
                arm["reason"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - e.g. an alias not in the registry: the arm has no prediction
                arm["reason"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        arms[variant.name] = arm
    served = pd.to_numeric(lists["served_at"], errors="coerce")
    return {
        "experiment": cfg.experiment, "logs": str(path), "n_lists": int(len(lists)), "users": int(lists["user_id"].nunique()),
        "logs_from": float(served.min()), "logs_until": float(served.max()),
        "logged_exploration": sorted(set(lists["exploration"].astype(str))), "arm_exploration": setting,
        "estimator": "dr", "weights": "list", "bootstrap": n_boot, "confidence": 0.95,
        "definitions": "per arm: the list-level doubly robust estimate (weights P_arm(list) / P_logged(list), reward "
        "model = the logs' mean) of the share of lists clicked (CTR) and of lists that led to a buy (conversion), "
        "with user-level bootstrap CIs, from lists served before the test",
        "variants": arms,
    }


def _utc(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_predictions(result: dict[str, Any]) -> str:
    when = _utc
    lines = [f"OPE prediction per arm of {result['experiment']!r}: {result['n_lists']:,} lists of {result['users']:,} users "
             f"served {when(result['logs_from'])} to {when(result['logs_until'])} (logged exploration "
             f"{', '.join(result['logged_exploration'])}; arms served with {result['arm_exploration']}; list-level DR, "
             f"{result['confidence']:.0%} user-level CIs)"]
    for name, arm in result["variants"].items():
        if "reason" in arm:
            lines.append(f"{name:<14} no prediction: {arm['reason']}")
            continue
        parts = []
        for reward, label in (("click", "CTR"), ("conversion", "conv")):
            e = arm[reward]["estimates"]["dr"]
            parts.append(f"{label} {e['value']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}] (ESS {e['ess']:,.0f})")
        lines.append(f"{name:<14} v{arm['version']:<5} " + "  ".join(parts))
    return "\n".join(lines)


def _predicted(row: dict[str, Any], arm: dict[str, Any] | None) -> dict[str, Any] | None:
    """The prediction of one arm beside its observed values (None: no prediction file or entry)."""
    if arm is None:
        return None
    if "reason" in arm:
        return {"reason": arm["reason"]}
    out: dict[str, Any] = {"version": arm["version"],
                           "version_matches": row["model_versions"] in ([], [str(arm["version"])])}
    for reward, metric in (("click", "ctr"), ("conversion", "conversion")):
        e = arm[reward]["estimates"]["dr"]
        out[metric] = e["value"]
        out[f"{metric}_ci"] = [e["ci_low"], e["ci_high"]]
        out[f"{metric}_inside"] = bool(row["exposures"] > 0 and e["ci_low"] <= row[metric] <= e["ci_high"])
    return out


def ab_report(exposures: pd.DataFrame, interactions: pd.DataFrame, cfg: ABConfig,
              predictions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The A/B report as a JSON-ready dict (see the module doc for the definitions). `predictions`: the
    output of `ab_predict` (OPE before the test), shown per arm as `predicted`."""
    from scipy.stats import norm

    check_ab_config(cfg)
    scored = attribute(exposures, interactions)
    names = [v.name for v in cfg.variants]
    extra = sorted(set(scored["variant"].astype(str)) - set(names)) if len(scored) else []
    rows: dict[str, dict[str, Any]] = {}
    for name in names + extra:
        part = scored[scored["variant"].astype(str) == name] if len(scored) else scored
        n = int(len(part))
        clicks, conversions = int(part["clicked"].sum()), int(part["converted"].sum())
        rows[name] = {
            "users": int(part["user_id"].nunique()) if n else 0,
            "exposures": n,
            "clicked": clicks,
            "converted": conversions,
            "ctr": clicks / n if n else 0.0,
            "ctr_ci": list(wilson_interval(clicks, n, cfg.confidence)),
            "conversion": conversions / n if n else 0.0,
            "conversion_ci": list(wilson_interval(conversions, n, cfg.confidence)),
            "model_versions": sorted(set(part["model_version"].astype(str))) if n else [],
        }
    control = rows[cfg.control]
    alpha = 1 - cfg.confidence
    tests = []
    for name in names:
        if name == cfg.control:
            continue
        row = rows[name]
        for metric, key in (("ctr", "clicked"), ("conversion", "converted")):
            z, p = two_proportion_z(control[key], control["exposures"], row[key], row["exposures"])
            diff = row[metric] - control[metric]
            n1, n2 = control["exposures"], row["exposures"]
            se = math.sqrt(control[metric] * (1 - control[metric]) / max(n1, 1) + row[metric] * (1 - row[metric]) / max(n2, 1))
            zc = float(norm.ppf(0.5 + cfg.confidence / 2))
            tests.append({
                "variant": name, "control": cfg.control, "metric": metric,
                "control_value": control[metric], "variant_value": row[metric],
                "difference": diff, "difference_ci": [diff - zc * se, diff + zc * se],
                "relative_lift": diff / control[metric] if control[metric] > 0 else None,
                "z": z, "p_value": p, "significant": bool(p < alpha),
            })
    if predictions is not None:
        for name, row in rows.items():
            row["predicted"] = _predicted(row, predictions.get("variants", {}).get(name))
    srm = srm_check([rows[n]["users"] for n in names], [v.traffic for v in cfg.variants], cfg.srm_alpha)
    best = max(names, key=lambda n: rows[n]["ctr"]) if any(rows[n]["exposures"] for n in names) else None
    winner = None
    if best is not None:
        if best == cfg.control:
            beaten = [t for t in tests if t["metric"] == "ctr"]
            winner = best if beaten and all(t["significant"] and t["difference"] < 0 for t in beaten) else None
        else:
            test = next(t for t in tests if t["variant"] == best and t["metric"] == "ctr")
            winner = best if test["significant"] and test["difference"] > 0 else None
    return {
        "experiment": cfg.experiment,
        "salt": cfg.salt,
        "control": cfg.control,
        "confidence": cfg.confidence,
        "definitions": "exposure = one served list; clicked = an interaction on one of its items, attributed to "
        "the user's latest list showing the item; converted = such an interaction is a buy; CTR and "
        "conversion are shares of exposures; CIs are Wilson intervals; tests are pooled two-proportion z-tests "
        "against the control; SRM is a chi-square test of users per variant against the traffic split.",
        "variants": rows,
        "tests": tests,
        "srm": srm,
        "winner_by_ctr": winner,
        "prediction": None if predictions is None else {
            k: predictions.get(k) for k in ("logs", "n_lists", "logs_from", "logs_until", "arm_exploration", "estimator", "weights")},
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report."""
    lines = [f"A/B experiment {report['experiment']!r} (control {report['control']}, "
             f"{report['confidence']:.0%} CIs)"]
    lines.append(f"{'variant':<14}{'users':>7}{'lists':>8}{'CTR':>9}  {'CTR CI':<17}{'conv':>8}  {'conv CI':<17}versions")
    for name, r in report["variants"].items():
        lines.append(
            f"{name:<14}{r['users']:>7}{r['exposures']:>8}{r['ctr']:>9.4f}  "
            f"[{r['ctr_ci'][0]:.4f}, {r['ctr_ci'][1]:.4f}] {r['conversion']:>8.4f}  "
            f"[{r['conversion_ci'][0]:.4f}, {r['conversion_ci'][1]:.4f}] {','.join(r['model_versions']) or '-'}"
        )
    for t in report["tests"]:
        lines.append(
            f"z-test {t['variant']} vs {t['control']} {t['metric']}: diff {t['difference']:+.4f} "
            f"[{t['difference_ci'][0]:+.4f}, {t['difference_ci'][1]:+.4f}], z={t['z']:.2f}, p={t['p_value']:.3g}"
            f"{' (significant)' if t['significant'] else ''}"
        )
    srm = report["srm"]
    lines.append(
        f"sample-ratio check: users {srm['observed']} vs expected {[round(e, 1) for e in srm['expected']]}, "
        f"chi2={srm['chi2']:.2f}, p={srm['p_value']:.3g} -> {'MISMATCH' if srm['mismatch'] else 'ok'}"
    )
    lines.append(f"better variant by CTR: {report['winner_by_ctr'] or 'none significant'}")
    if report.get("prediction"):
        meta = report["prediction"]
        until = _utc(meta["logs_until"])
        lines.append(f"OPE prediction before the test ({meta['estimator'].upper()}, {meta['weights']}-level weights, "
                     f"{meta['n_lists']:,} lists logged up to {until}):")
        lines.append(f"{'variant':<14}{'obs CTR':>9}  {'predicted CTR [CI]':<27}{'inside':<8}{'obs conv':>9}  "
                     f"{'predicted conv [CI]':<27}inside")
        for name, r in report["variants"].items():
            p = r.get("predicted")
            if p is None or "reason" in p:
                lines.append(f"{name:<14}{r['ctr']:>9.4f}  no prediction{': ' + p['reason'] if p else ''}")
                continue
            mark = "" if p["version_matches"] else f"  (predicted for v{p['version']}, served {','.join(r['model_versions'])})"
            lines.append(
                f"{name:<14}{r['ctr']:>9.4f}  {p['ctr']:.4f} [{p['ctr_ci'][0]:.4f}, {p['ctr_ci'][1]:.4f}]  "
                f"{'yes' if p['ctr_inside'] else 'no':<8}{r['conversion']:>9.4f}  {p['conversion']:.4f} "
                f"[{p['conversion_ci'][0]:.4f}, {p['conversion_ci'][1]:.4f}]  {'yes' if p['conversion_inside'] else 'no'}{mark}"
            )
    return "\n".join(lines)


def read_predictions(params: Any, path: str | Path | None = None) -> dict[str, Any] | None:
    """The saved `drlrec ab predict` output (paths.ab_predictions, or `path`); None when there is none.
    A prediction made for another experiment is a one-line InputError."""
    import json

    from drlrec.errors import InputError

    target = Path(path or params.paths.ab_predictions)
    if not target.is_file():
        if path:
            raise InputError(f"{target}: no such predictions file (run `drlrec ab predict` first)")
        return None
    try:
        result = json.loads(target.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{target}: not a predictions file ({exc.msg})") from None
    if result.get("experiment") != params.ab.experiment:
        raise InputError(f"{target}: predictions of experiment {result.get('experiment')!r}, not {params.ab.experiment!r} "
                         "(run `drlrec ab predict` again)")
    return result
