"""The service's own logs as impressions for off-policy evaluation (drlrec.ope), with a candidate's
probabilities: what `drlrec ope --policy ALIAS_OR_VERSION` estimates from.

- Impressions: every model-ranked exposure (policy `model`, with its state logged) is exploded into one row
  per slot: the shown item, its logged propensity, and its rewards. An interaction is attributed to the
  latest exposure of the same user that showed the same item at or before its time (the A/B report's
  rule, drlrec.serving.abtest.attribute, per slot): `click` = any interaction, `conversion` = a buy.
- The candidate: the model behind the alias or version ranks every logged state again (the state the
  logging model saw, rebuilt from the exposure row), and its policy (`ope.candidate_exploration`, the
  greedy list by default) gives `target_prob`, its slot marginal of the logged item
  (drlrec.serving.exploration.slot_marginals).
- Support: a list logged with exploration `off` was the only list that state could get; when the
  candidate ranks any such state differently, its value has no support in the logs and nothing is
  estimated (a one-line InputError). With exploration on, the candidate's probability mass on items the
  logger could not show at that slot (the logging model's own top-M, re-ranked from the same state, under
  the logged setting) is reported as `unsupported_mass`: the part of the value no estimator sees.
- The direct method's reward model (for DR) is fitted on the logs: the mean reward per slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from drlrec.errors import InputError
from drlrec.schema import BUY
from drlrec.serving.exploration import parse as parse_exploration

#: rows of states ranked per forward pass
CHUNK = 256


@dataclass
class Impressions:
    """One row per (logged list, slot); arrays [n]."""

    exposure: np.ndarray
    user_id: np.ndarray
    slot: np.ndarray
    item_id: np.ndarray
    pscore: np.ndarray
    click: np.ndarray
    conversion: np.ndarray
    target_prob: np.ndarray
    list_pscore: np.ndarray  # [n] P(the logged list | state) under the logging policy (the row's list)
    list_target: np.ndarray  # [n] P(the logged list | state) under the candidate
    unsupported: np.ndarray  # [n] the candidate's mass at this slot on items the logger could not show there
    version: np.ndarray  # [n] str: the model version that served the row's list
    exploration: list[str]
    n_lists: int
    n_lists_skipped: int


def model_lists(exposures: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The exposures a model ranked from a logged state (policy `model`, state present), and how many
    other rows (popularity lists, fallbacks, lists of a log without states) were left out."""
    if "policy" not in exposures.columns or exposures.empty:
        return exposures.iloc[:0], len(exposures)
    keep = (exposures["policy"].astype(str) == "model") & (exposures["state_items"].astype(str).str.len() > 0) \
        & (exposures["propensities"].astype(str).str.len() > 0)
    return exposures[keep].reset_index(drop=True), int((~keep).sum())


def slot_rewards(lists: pd.DataFrame, interactions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The lists exploded to one row per slot (exposure, user_id, served_at, slot, item_id, pscore) with
    `click` and `conversion` attributed from the interactions; and the largest list length."""
    rows = lists[["user_id", "served_at", "items", "propensities"]].copy()
    rows["exposure"] = np.arange(len(rows))
    rows["item_id"] = rows["items"].astype(str).str.split()
    rows["pscore"] = rows["propensities"].astype(str).str.split()
    if (rows["item_id"].str.len() != rows["pscore"].str.len()).any():
        raise InputError("exposure log: a row has another number of propensities than items")
    shown = rows.explode(["item_id", "pscore"]).dropna(subset=["item_id"])
    shown["slot"] = shown.groupby("exposure").cumcount()
    shown = shown.astype({"item_id": np.int64, "pscore": np.float64})
    shown["t"] = np.floor(shown["served_at"].to_numpy(dtype=float)).astype(np.int64)
    shown = shown.reset_index(drop=True)
    shown["row"] = np.arange(len(shown))
    shown["click"] = 0.0
    shown["conversion"] = 0.0
    if len(interactions):
        acts = interactions[["user_id", "item_id", "behavior", "timestamp"]].rename(columns={"timestamp": "t"})
        acts = acts.astype({"t": np.int64}).sort_values("t", kind="stable")
        ordered = shown.sort_values(["t", "row"], kind="stable")
        matched = pd.merge_asof(acts, ordered[["t", "user_id", "item_id", "row"]], on="t", by=["user_id", "item_id"],
                                direction="backward").dropna(subset=["row"])
        hit = matched["row"].astype(np.int64).to_numpy()
        shown.loc[np.unique(hit), "click"] = 1.0
        shown.loc[np.unique(hit[matched["behavior"].to_numpy() == BUY]), "conversion"] = 1.0
    k_max = int(shown["slot"].max()) + 1 if len(shown) else 0
    return shown[["exposure", "user_id", "served_at", "slot", "item_id", "pscore", "click", "conversion"]], k_max


def logged_histories(lists: pd.DataFrame) -> list[Any]:
    """The state each list was ranked from (drlrec.serving.state.History), rebuilt from its row."""
    from drlrec.serving.state import History

    def ints(text: str) -> np.ndarray:
        return np.array(str(text).split(), dtype=np.int64)

    return [History(ints(r.state_items), ints(r.state_categories), ints(r.state_behaviors), ints(r.state_timestamps),
                    int(r.history_total)) for r in lists.itertuples()]


def ranked_lists(serving: Any, histories: list[Any], size: int, progress: bool = False) -> list[Any]:
    """Each state's top-`size` (drlrec.serving.recommender.Ranked) under `serving`, CHUNK states a pass."""
    from tqdm import tqdm

    out: list[Any] = []
    starts = range(0, len(histories), CHUNK)
    for start in tqdm(starts, desc="ope: ranking logged states", unit="chunk", disable=not progress):
        out.extend(serving.recommend_batch([(h, size, []) for h in histories[start:start + CHUNK]]))
    return out


def build_impressions(
    exposures: pd.DataFrame, interactions: pd.DataFrame, candidate: Any, candidate_cfg: Any,
    logger_of: Any = None, progress: bool = False,
) -> Impressions:
    """Impressions of the model-ranked lists, with the candidate's slot probabilities. `candidate`: a
    ServingModel; `candidate_cfg`: its exploration setting; `logger_of(version) -> ServingModel | None`:
    the logging model of a version (for the support of exploring lists; None skips that check)."""
    from drlrec.serving.exploration import list_probability, slot_marginals

    lists, skipped = model_lists(exposures)
    if lists.empty:
        raise InputError("exposure log: no model-ranked list with its state and propensities "
                         "(serve a model with this drlrec version: older logs lack the columns OPE needs)")
    shown, k = slot_rewards(lists, interactions)
    unknown = float((candidate.bundle.item_vocab.encode(shown["item_id"].to_numpy()) < 2).mean())
    if unknown > 0.5:  # indices 0 and 1: padding and unknown
        raise InputError(f"exposure log: {unknown:.0%} of the shown items are not in the candidate's vocabulary "
                         "(a log of another catalogue or data version)")
    histories = logged_histories(lists)
    settings = lists["exploration"].astype(str).tolist()
    size = max(int(getattr(candidate_cfg, "top_m", 0) or 0), k + 1) if candidate_cfg.mode != "off" else k
    ranked = ranked_lists(candidate, histories, max(size, k), progress)
    exposure = shown["exposure"].to_numpy()
    slot = shown["slot"].to_numpy()
    item = shown["item_id"].to_numpy()
    target = np.zeros(len(shown))
    list_target = np.zeros(len(shown))
    logged_list = pd.to_numeric(lists["list_propensity"], errors="coerce").to_numpy(dtype=np.float64)
    list_pscore = logged_list[shown["exposure"].to_numpy()]
    unsupported = np.zeros(len(shown))
    row_start = np.searchsorted(exposure, np.arange(len(lists)))
    differs = 0
    logger_cache: dict[tuple[str, str], Any] = {}
    for e, ranking in enumerate(ranked):
        first = row_start[e]
        n_slots = (row_start[e + 1] if e + 1 < len(lists) else len(shown)) - first
        ids = ranking.item_id.astype(np.int64)
        marg = slot_marginals(ranking.score.astype(np.float64)[:size], n_slots, candidate_cfg)  # [M, n_slots]
        logged = item[first:first + n_slots]
        position = {int(i): p for p, i in enumerate(ids[: marg.shape[0]].tolist())}
        for j, it in enumerate(logged.tolist()):
            p = position.get(int(it))
            target[first + j] = marg[p, j] if p is not None and j < marg.shape[1] else 0.0
        at = [position.get(int(it)) for it in logged.tolist()]
        list_target[first:first + n_slots] = 0.0 if None in at else list_probability(
            ranking.score.astype(np.float64)[:size], np.array(at, dtype=np.int64), candidate_cfg)
        if settings[e] == "off":
            if candidate_cfg.mode != "off" or ids[:n_slots].tolist() != logged.tolist():
                differs += 1
            continue
        if logger_of is None:
            continue
        key = (str(lists["model_version"].iloc[e]), settings[e])
        if key not in logger_cache:
            logger_cache[key] = logger_of(key[0])
        logger = logger_cache[key]
        if logger is None:
            continue
        cfg = parse_exploration(settings[e])
        mine = logger.recommend(histories[e], max(cfg.top_m, n_slots + 1), [])
        logger_marg = slot_marginals(mine.score.astype(np.float64), n_slots, cfg)
        logger_pos = {int(i): p for p, i in enumerate(mine.item_id.astype(np.int64).tolist())}
        for j in range(min(n_slots, marg.shape[1])):
            mass = 0.0
            for p in np.flatnonzero(marg[:, j] > 0).tolist():
                q = logger_pos.get(int(ids[p]))
                if q is None or logger_marg[q, j] == 0.0:
                    mass += marg[p, j]
            unsupported[first + j] = mass
    if differs:
        raise InputError(
            f"exposure log: {differs} of {len(lists)} lists were served without exploration and the candidate "
            f"ranks them differently: its value has no support in these logs (serve with serve.exploration on)"
        )
    return Impressions(
        exposure=exposure, user_id=shown["user_id"].to_numpy(dtype=np.int64), slot=slot, item_id=item,
        pscore=shown["pscore"].to_numpy(), click=shown["click"].to_numpy(), conversion=shown["conversion"].to_numpy(),
        target_prob=target, list_pscore=list_pscore, list_target=list_target, unsupported=unsupported,
        version=lists["model_version"].astype(str).to_numpy()[exposure], exploration=sorted(set(settings)),
        n_lists=len(lists), n_lists_skipped=skipped,
    )


def estimate(imp: Impressions, reward: str, n_boot: int = 1000, seed: int = 42, weights: str = "slot") -> dict[str, Any]:
    """observed / IPS / SNIPS / DR of one reward (`click` or `conversion`) with CIs and ESS, and DR minus
    the logged value (paired, same resamples). The DR reward model: the logs' mean reward per slot.

    `weights`: `slot` (default) weighs an impression by the per-slot marginals (obp's independent IPS: many
    effective samples, but biased when a slot's reward depends on the list's other items, e.g. a user who
    acts on at most one item of a list); `list` by P_candidate(list) / P_logging(list) for every impression of
    the list: unbiased whatever the items do to each other, at far fewer effective samples.
    bench/ope_check.py measures both in the simulator."""
    from drlrec.ope import BootstrapConfig, ImpressionLog, estimate_all, paired_difference, slot_mean_reward

    if weights not in ("list", "slot"):
        raise InputError(f"OPE weights: {weights!r} is not list or slot")
    r = getattr(imp, reward)
    q = slot_mean_reward(imp.slot, r)
    if weights == "list":
        if not np.all(np.isfinite(imp.list_pscore)) or np.any(imp.list_pscore <= 0):
            raise InputError("exposure log: lists without a list propensity (logged by an older drlrec): use --weights slot")
        pscore, target = imp.list_pscore, imp.list_target
    else:
        pscore, target = imp.pscore, imp.target_prob
    log = ImpressionLog(group=imp.user_id, slot=imp.slot, reward=r, pscore=pscore, target_prob=target,
                        q_logged=q, q_target=q)
    cfg = BootstrapConfig(n_boot=n_boot, seed=seed)
    estimates = estimate_all(log, cfg)
    lift = paired_difference(log, cfg, candidate="dr", baseline="observed")
    return {"estimates": {k: v.to_dict() for k, v in estimates.items()}, "dr_minus_observed": lift.to_dict(),
            "observed_by_version": observed_by_version(imp, r, cfg)}


def observed_by_version(imp: Impressions, reward: np.ndarray, cfg: Any) -> dict[str, dict[str, Any]]:
    """The logged (on-policy) value of each serving version's own lists, with its user-level CI: what a
    version's impressions earned, apart from the lists other versions served into the same log."""
    from drlrec.ope import ImpressionLog, estimate_all

    out = {}
    for version in sorted(set(imp.version.tolist())):
        rows = imp.version == version
        ones = np.ones(int(rows.sum()))
        log = ImpressionLog(group=imp.user_id[rows], slot=imp.slot[rows], reward=reward[rows], pscore=ones, target_prob=ones)
        out[version] = estimate_all(log, cfg)["observed"].to_dict()
    return out


def list_rewards(imp: Impressions, reward: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row per logged list, in the A/B report's terms (drlrec.serving.abtest): the list's reward is 1
    when any of its slots has it (clicked: any interaction; converted: a buy). Returns (user_id, reward,
    logging list propensity, candidate list probability), each [lists]."""
    exposure, first = np.unique(imp.exposure, return_index=True)
    reached = np.zeros(len(exposure))
    np.maximum.at(reached, np.searchsorted(exposure, imp.exposure), getattr(imp, reward).astype(np.float64))
    return imp.user_id[first], reached, imp.list_pscore[first], imp.list_target[first]


def estimate_lists(imp: Impressions, reward: str, n_boot: int = 1000, seed: int = 42) -> dict[str, Any]:
    """observed / IPS / SNIPS / DR of a *list's* reward (`click`: the list was clicked, the A/B report's
    CTR; `conversion`: it led to a buy), weighted by P_candidate(list) / P_logging(list): what an A/B arm
    serving the candidate should observe. The DR reward model: the logs' mean list reward."""
    from drlrec.ope import BootstrapConfig, ImpressionLog, estimate_all, paired_difference

    user, r, pscore, target = list_rewards(imp, reward)
    if not np.all(np.isfinite(pscore)) or np.any(pscore <= 0):
        raise InputError("exposure log: lists without a list propensity (logged by an older drlrec): no list-level estimate")
    q = np.full(len(r), r.mean())
    log = ImpressionLog(group=user, slot=np.zeros(len(r), dtype=np.int64), reward=r, pscore=pscore,
                        target_prob=target, q_logged=q, q_target=q)
    cfg = BootstrapConfig(n_boot=n_boot, seed=seed)
    estimates = estimate_all(log, cfg)
    lift = paired_difference(log, cfg, candidate="dr", baseline="observed")
    return {"estimates": {k: v.to_dict() for k, v in estimates.items()}, "dr_minus_observed": lift.to_dict()}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"# Off-policy estimate of {result['policy']} (version {result['candidate_version']}, "
        f"policy {result['candidate_exploration']})",
        "",
        f"{result['n_impressions']:,} impressions of {result['n_lists']:,} model-ranked lists "
        f"({result['n_lists_skipped']:,} other rows left out) from {result['users']:,} users; logged exploration: "
        f"{', '.join(result['logged_exploration'])}; {result['weights']}-level importance weights, user-level bootstrap 95% CIs "
        f"({result['bootstrap']} resamples); unsupported mass {result['unsupported_mass']:.4f}.",
        "",
        "| reward | estimator | value per impression | 95% CI | ESS |",
        "|---|---|---:|---|---:|",
    ]
    for reward in ("click", "conversion"):
        for name, e in result[reward]["estimates"].items():
            label = "observed (logging policy)" if name == "observed" else name
            lines.append(f"| {reward} | {label} | {e['value']:.4f} | [{e['ci_low']:.4f}, {e['ci_high']:.4f}] | {e['ess']:,.0f} |")
        d = result[reward]["dr_minus_observed"]
        lines.append(f"| {reward} | DR − observed (paired) | {d['value']:+.4f} | [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] | |")
    return "\n".join(lines) + "\n"


def read_logs(params: Any, logs: str | None = None, interactions: str | None = None) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """(exposure log path, exposures, interactions); a missing exposure log is a one-line InputError."""
    from pathlib import Path

    from drlrec.data.logs import read_exposures, read_interactions

    exposure_path = Path(logs or params.paths.exposures)
    if not exposure_path.is_file():
        raise InputError(f"{exposure_path}: no exposure log (serve recommendations first, or pass --logs)")
    return (exposure_path, read_exposures(exposure_path),
            read_interactions(interactions or params.paths.interactions, missing_ok=True))


def policy_impressions(params: Any, candidate: Any, label: str, exposures: pd.DataFrame, events: pd.DataFrame,
                 candidate_exploration: str, logger_loader: Any) -> tuple[Any, Impressions]:
    from drlrec.serving.recommender import ServingModel

    serving = ServingModel(candidate, label)

    def logger_of(version: str):
        if logger_loader is None:
            return None
        try:
            return ServingModel(logger_loader(version), f"v{version}")
        except Exception:  # noqa: BLE001 - a logger that cannot be loaded: its support is not checked
            return None

    return serving, build_impressions(exposures, events, serving, parse_exploration(candidate_exploration), logger_of,
                                      progress=params.base.progress)


def estimate_policy(params: Any, candidate: Any, label: str, logs: str | None = None, interactions: str | None = None,
                    candidate_exploration: str = "off", logger_loader: Any = None, weights: str = "slot") -> dict[str, Any]:
    """The OPE result of `candidate` (a ModelBundle, shown as `label`) on the logs: impressions, click and
    conversion estimates (see `estimate`), unsupported mass. `logger_loader(version) -> ModelBundle` loads a
    logging model for the support check (None: not checked). One-line InputError on unusable logs."""
    exposure_path, exposures, events = read_logs(params, logs, interactions)
    serving, imp = policy_impressions(params, candidate, label, exposures, events, candidate_exploration, logger_loader)
    n_boot = params.evaluate.bootstrap
    return {
        "policy": label, "candidate_version": serving.version, "candidate_exploration": candidate_exploration,
        "logs": str(exposure_path), "n_lists": imp.n_lists, "n_lists_skipped": imp.n_lists_skipped,
        "n_impressions": len(imp.slot), "users": int(len(np.unique(imp.user_id))),
        "logged_exploration": imp.exploration, "bootstrap": n_boot,
        "unsupported_mass": float(imp.unsupported.mean()) if len(imp.unsupported) else 0.0,
        "weights": weights,
        "click": estimate(imp, "click", n_boot, params.base.seed, weights),
        "conversion": estimate(imp, "conversion", n_boot, params.base.seed, weights),
    }


def ope_gate(result: dict[str, Any], reward: str, margin: float,
             champion_version: str | None = None) -> tuple[bool, str, dict[str, float]]:
    """register.ope_gate's rule: pass when DR's lower CI bound is not below the champion's observed value
    minus `margin`. The champion's observed value is that of the lists its version served
    (`observed_by_version`); without a champion version, or when the log holds no list of it, the value
    of every logged list. Returns (passed, reason, figures for the version's tags)."""
    estimates = result[reward]["estimates"]
    dr, observed = estimates["dr"], estimates["observed"]
    by_version = result[reward].get("observed_by_version") or {}
    whose = "logged"
    if champion_version is not None and str(champion_version) in by_version:
        observed = by_version[str(champion_version)]
        whose = f"champion v{champion_version}'s lists"
    figures = {"ope_dr": dr["value"], "ope_dr_ci_low": dr["ci_low"], "ope_observed": observed["value"],
               "ope_impressions": float(result["n_impressions"]), "ope_unsupported_mass": result["unsupported_mass"]}
    floor = observed["value"] - margin
    if dr["ci_low"] < floor:
        return False, (f"OPE gate: DR {reward} lower bound {dr['ci_low']:.4f} < {whose} {observed['value']:.4f} "
                       f"- margin {margin:g}"), figures
    return True, f"OPE gate: DR {reward} lower bound {dr['ci_low']:.4f} >= {whose} {observed['value']:.4f} - margin {margin:g}", figures
