"""The test-period protocol: which events are targets (next item, next purchase), what is excluded,
the target types of the breakdown, and `evaluate_model`, which scores one model under it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from drlrec.evaluate.ranking import ITEM_BLOCK, rank_blocks, score_blocks
from drlrec.evaluate.statistics import (
    Interval,
    bootstrap_means,
    coverage_interval,
    list_metrics,
    per_event_values,
    set_metrics,
    user_bootstrap_means,
)
from drlrec.models.base import FIRST_REAL_ITEM, Recommender

PROTOCOL = (
    "Temporal split (train days 1-7, validation day 8, test day 9 by default; featurize.* in params.yaml). "
    "Every model is fitted on the train period only. Each test event is predicted from the user's history up to "
    "that event (the last N interactions, train-period history included). Two targets: the next interaction "
    "(any behaviour) and the next purchase (the test events that are buys). Full ranking over every item of the "
    "vocabulary except padding and unknown: no sampled negatives, no candidate lists. A target that is cold "
    "(unknown to the vocabulary) counts as a miss. Ties rank the lower item index first. HR@k, NDCG@k and MRR "
    "per event; Precision/Recall/F1/MAP@k per user from one list at the user's first test event against the set of "
    "items the user bought during the test period; catalogue coverage, intra-list category diversity and novelty "
    "(mean -log2 train popularity) of the top-{list_k} lists. Each event's target is one of: in_state (in the "
    "last-N state), in_history (a known item the user touched earlier, in any split, but not in the state), "
    "known_new (a known item new to the user) or cold (unknown to the vocabulary); HR/NDCG@10 are also reported "
    "within each type, and the reachable ceiling is the share of targets that are not cold. 95% CIs: percentile "
    "bootstrap over users (a resampled user brings all of their events: a cluster bootstrap of the event mean, "
    "for the per-event, per-user and per-list metrics; lists for coverage), {bootstrap} resamples, seed {seed}; a "
    "difference between two models is bootstrapped paired (the same resampled users for both)."
)

_USER_STRIDE = np.int64(1) << 34


class PriorBuys:
    """Which items each user bought before a given time, from the logged transitions of every split."""

    def __init__(self, splits: Sequence) -> None:
        users, items, times = [], [], []
        for t in splits:
            buy = t.action_behavior == 3
            users.append(t.user_id[buy])
            items.append(t.action_item[buy].astype(np.int64))
            times.append(t.timestamp[buy])
        users_a, items_a, times_a = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (users, items, times))
        order = np.lexsort((times_a, users_a))
        self.items = items_a[order]
        # one sorted key per buy: (dense user rank, time since the first buy), so a user's buys before t
        # are one searchsorted range
        self.uniq = np.unique(users_a)
        self.t0 = int(times_a.min()) if len(times_a) else 0
        self.keys = np.searchsorted(self.uniq, users_a[order]) * _USER_STRIDE + (times_a[order] - self.t0)

    def mask(self, users: np.ndarray, times: np.ndarray, n_items: int) -> np.ndarray:
        """[B, n_items] bool: items the user bought strictly before the time."""
        out = np.zeros((len(users), n_items), dtype=bool)
        rows, items = self.pairs(users, times, n_items)
        out[rows, items] = True
        return out

    def pairs(self, users: np.ndarray, times: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, items): for each of the B (user, time) rows, the items the user bought strictly before the
        time (what `mask` marks, without a [B, n_items] array)."""
        users = np.asarray(users, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if not len(self.keys) or not len(users):
            return empty
        rank = np.searchsorted(self.uniq, users)
        known = (rank < len(self.uniq)) & (self.uniq[np.minimum(rank, len(self.uniq) - 1)] == users)
        base = rank * _USER_STRIDE
        lo = np.searchsorted(self.keys, base, side="left")
        hi = np.searchsorted(self.keys, base + np.clip(times - self.t0, 0, _USER_STRIDE - 1), side="left")
        counts = np.where(known, hi - lo, 0)
        if not counts.sum():
            return empty
        rows = np.repeat(np.arange(len(users)), counts)
        starts = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        items = self.items[starts]
        ok = items < n_items
        return rows[ok].astype(np.int64), items[ok].astype(np.int64)


class FirstSeen:
    """When each user first interacted with each known item, from the logged transitions of every split."""

    def __init__(self, splits: Sequence, users: np.ndarray | None = None) -> None:
        """`users`: keep only these users' events (bounds memory on a large log; None = everyone)."""
        empty = np.zeros(0, np.int64)
        all_users = np.concatenate([empty, *(np.asarray(t.user_id, np.int64) for t in splits)])
        items = np.concatenate([empty, *(t.action_item.astype(np.int64) for t in splits)])
        times = np.concatenate([empty, *(np.asarray(t.timestamp, np.int64) for t in splits)])
        keep = items >= FIRST_REAL_ITEM
        if users is not None:
            keep &= np.isin(all_users, np.asarray(users, np.int64))
        all_users, items, times = all_users[keep], items[keep], times[keep]
        self.uniq = np.unique(all_users)
        self.width = np.int64(items.max() + 1 if len(items) else FIRST_REAL_ITEM)
        keys = np.searchsorted(self.uniq, all_users) * self.width + items  # one key per (user, item)
        order = np.lexsort((times, keys))
        keys, times = keys[order], times[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self.keys, self.first_time = keys[first], times[first]  # sorted keys, earliest time of each

    def before(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> np.ndarray:
        """[E] bool: the user interacted with the (known) item strictly before the time."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        out = np.zeros(len(users), dtype=bool)
        if not len(self.keys) or not len(users):
            return out
        rank = np.searchsorted(self.uniq, users)
        safe_rank = np.minimum(rank, len(self.uniq) - 1)
        ok = (self.uniq[safe_rank] == users) & (items >= FIRST_REAL_ITEM) & (items < self.width)
        probe = safe_rank * self.width + np.where(ok, items, 0)
        pos = np.minimum(np.searchsorted(self.keys, probe), len(self.keys) - 1)
        return ok & (self.keys[pos] == probe) & (self.first_time[pos] < np.asarray(times, np.int64))


#: Target types, in code order: every event's target is exactly one of them.
TARGET_TYPES: tuple[str, ...] = ("in_state", "in_history", "known_new", "cold")

IN_STATE, IN_HISTORY, KNOWN_NEW, COLD = range(len(TARGET_TYPES))

#: Cut-off of the HR/NDCG reported within each target type.
BREAKDOWN_K = 10


def target_types(test, index: np.ndarray, first_seen: FirstSeen) -> np.ndarray:
    """[E] int8 code into TARGET_TYPES of each test transition's target at `index`: in_state (a known item
    in the state's item_seq), in_history (known, touched by the user strictly before the event, not in
    the state), known_new (known, new to the user), cold (unknown or padding: no model can rank it)."""
    index = np.asarray(index, dtype=np.int64)
    targets = test.action_item[index].astype(np.int64)  # [E]
    known = targets >= FIRST_REAL_ITEM
    state_items = test.item_idx[test.state_rows(index)]  # [E, N]
    in_state = known & (state_items == targets[:, None]).any(axis=1)
    in_history = known & ~in_state & first_seen.before(test.user_id[index], targets, test.timestamp[index])
    codes = np.full(len(index), COLD, dtype=np.int8)
    codes[known] = KNOWN_NEW
    codes[in_history] = IN_HISTORY
    codes[in_state] = IN_STATE
    return codes


def type_breakdown(
    ranks: np.ndarray, types: np.ndarray, users: np.ndarray, n_boot: int, ci: float, seed: int, k: int = BREAKDOWN_K
) -> dict[str, Interval]:
    """Share of each target type, HR@k and NDCG@k within it, and `reachable` (the share not cold: the
    ceiling of HR@k for any model), each with a user-level bootstrap CI."""
    _, values = per_event_values(ranks, (k,))  # [E, 3]: hr, ndcg, rr
    types = np.asarray(types)
    indicators = np.column_stack([types[:, None] == np.arange(len(TARGET_TYPES))[None, :], types != COLD])
    shares = user_bootstrap_means(indicators.astype(np.float64), users, n_boot, ci, seed)
    out: dict[str, Interval] = {}
    for code, name in enumerate(TARGET_TYPES):  # four types, not a loop over events
        inside = types == code
        hr, ndcg = user_bootstrap_means(values[inside, :2], users[inside], n_boot, ci, seed)
        out.update({f"{name}/share": shares[code], f"{name}/hr_at_{k}": hr, f"{name}/ndcg_at_{k}": ndcg})
    out["reachable"] = shares[-1]
    return out


class TargetSet(NamedTuple):
    """One evaluation target: which test transitions, and the item to rank for each."""

    name: str
    index: np.ndarray  # [E] transition indices into the test split
    targets: np.ndarray  # [E] item index


def target_sets(test, max_events: int, seed: int) -> list[TargetSet]:
    """next_item: every test event (a seeded sample when max_events > 0); next_purchase: the buy events."""
    rng = np.random.default_rng(seed + 104729)
    all_index = np.arange(test.num_transitions)
    buys = all_index[test.action_behavior == 3]

    def cap(index: np.ndarray) -> np.ndarray:
        if max_events and len(index) > max_events:
            return np.sort(rng.choice(index, size=max_events, replace=False))
        return index

    nxt, buy = cap(all_index), cap(buys)
    return [
        TargetSet("next_item", nxt, test.action_item[nxt].astype(np.int64)),
        TargetSet("next_purchase", buy, test.action_item[buy].astype(np.int64)),
    ]


class EventRanks(NamedTuple):
    """Per-event results of one target set, kept so two models can be compared on the same events."""

    index: np.ndarray  # [E] transition indices into the test split (TargetSet.index)
    user_id: np.ndarray  # [E] int64 user of each event
    ranks: np.ndarray  # [E] int64 rank of the target (UNRANKABLE where it can't be ranked)
    target_type: np.ndarray  # [E] int8 code into TARGET_TYPES


class Evaluation(NamedTuple):
    """Everything `evaluate_model` measured: metric -> Interval per group, plus counts, and the per-event
    ranks of each target set (`events`, not serialized) for paired comparisons."""

    model: str
    groups: dict[str, dict[str, Interval]]
    counts: dict[str, int]
    seconds: float
    events: dict[str, EventRanks] | None = None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "counts": self.counts,  # no duration: metrics.json is a DVC output (MLflow has evaluate/seconds)
            "metrics": {g: {m: iv.as_dict() for m, iv in ms.items()} for g, ms in self.groups.items()},
        }


def _score_lists(model, test, index, targets, k_list, prior, n_items, batch_size, item_block=ITEM_BLOCK):
    """Ranks of the targets and the top-k_list lists, batch by batch (and block by block of items), with the
    same exclusions."""
    from drlrec.rl.logged import state_batch

    ranks = np.empty(len(index), dtype=np.int64)
    lists = np.full((len(index), k_list), -1, dtype=np.int64)
    for start in range(0, len(index), batch_size):
        sl = index[start : start + batch_size]
        blocks = score_blocks(model, state_batch(test, sl), item_block)
        mask = None if prior is None else prior.pairs(test.user_id[sl], test.timestamp[sl], n_items)
        ranks[start : start + len(sl)], items = rank_blocks(blocks, targets[start : start + len(sl)], k_list, mask,
                                                            item_block)
        lists[start : start + len(sl), : items.shape[1]] = items
    return ranks, lists


def evaluate_model(
    model: Recommender,
    test,
    history: Sequence,
    item_category: np.ndarray,
    item_counts: np.ndarray,
    cfg,
    seed: int = 0,
    name: str | None = None,
    progress: bool = False,
) -> Evaluation:
    """The protocol (see PROTOCOL) for one model on the test split.

    `history` are the earlier splits (train, valid) used to know what a user already bought;
    `item_counts` the train-period count of every item (novelty); `cfg` an EvaluateConfig."""
    import time

    from tqdm import tqdm

    started = time.perf_counter()
    n_items = int(len(item_category))
    ks = tuple(int(k) for k in cfg.ks)
    prior = PriorBuys([*history, test]) if cfg.exclude_bought else None
    groups: dict[str, dict[str, Interval]] = {}
    counts: dict[str, int] = {}
    events: dict[str, EventRanks] = {}
    sets = target_sets(test, cfg.max_events, seed)
    evaluated_users = np.unique(np.concatenate([test.user_id[s.index] for s in sets]))
    first_seen = FirstSeen([*history, test], users=evaluated_users)
    bar = tqdm(total=sum(len(s.index) for s in sets), desc=f"evaluate {name or model.name}", unit="events",
               disable=None if progress else True, leave=False)
    next_lists = np.zeros((0, cfg.list_k), dtype=np.int64)
    next_users = np.zeros(0, dtype=np.int64)
    for ts in sets:
        ranks, lists = _score_lists(model, test, ts.index, ts.targets, cfg.list_k, prior, n_items, cfg.batch_size,
                                    cfg.item_block)
        users = np.asarray(test.user_id[ts.index], dtype=np.int64)
        types = target_types(test, ts.index, first_seen)
        names, values = per_event_values(ranks, ks)
        groups[ts.name] = dict(zip(names, user_bootstrap_means(values, users, cfg.bootstrap, cfg.ci, seed), strict=True))
        groups[f"{ts.name}_by_type"] = type_breakdown(ranks, types, users, cfg.bootstrap, cfg.ci, seed)
        events[ts.name] = EventRanks(ts.index, users, ranks, types)
        counts[f"{ts.name}_events"] = len(ts.index)
        if ts.name == "next_item":
            next_lists, next_users = lists, users
        bar.update(len(ts.index))
    bar.close()

    # the paper's per-user metrics: one list at the user's first test event vs. the items bought in the test period
    buy = test.action_behavior == 3
    buyers, first = np.unique(test.user_id, return_index=True)
    has_buy = np.isin(buyers, test.user_id[buy])
    if cfg.max_events and has_buy.sum() > cfg.max_events:  # a seeded sample of the buyers, as for the events
        rng = np.random.default_rng(seed + 104729)
        has_buy[np.sort(rng.choice(np.flatnonzero(has_buy), size=has_buy.sum() - cfg.max_events, replace=False))] = False
    first = first[has_buy]
    buy_users, buy_items = test.user_id[buy], test.action_item[buy].astype(np.int64)
    order = np.lexsort((buy_items, buy_users))
    pairs = np.unique(np.stack([buy_users[order], buy_items[order]], axis=1), axis=0)
    bounds = np.searchsorted(pairs[:, 0], buyers[has_buy], side="left"), np.searchsorted(pairs[:, 0], buyers[has_buy], side="right")
    relevant = [pairs[a:b, 1] for a, b in zip(*bounds, strict=True)]
    _, user_lists = _score_lists(model, test, first, test.action_item[first].astype(np.int64), max(ks), prior,
                                 n_items, cfg.batch_size, cfg.item_block)
    names, values = set_metrics(user_lists, relevant, ks)
    groups["per_user_purchase"] = dict(zip(names, bootstrap_means(values, cfg.bootstrap, cfg.ci, seed), strict=True))
    counts["users_with_test_purchases"] = len(relevant)

    diversity, novelty = list_metrics(next_lists, item_category, item_counts)
    beyond = dict(zip(("diversity", "novelty"), user_bootstrap_means(np.stack([diversity, novelty], 1), next_users,
                                                                     cfg.bootstrap, cfg.ci, seed), strict=True))
    beyond = {f"coverage_at_{cfg.list_k}": coverage_interval(next_lists, n_items, cfg.bootstrap, cfg.ci, seed),
              f"diversity_at_{cfg.list_k}": beyond["diversity"], f"novelty_at_{cfg.list_k}": beyond["novelty"]}
    groups["beyond_accuracy"] = beyond
    return Evaluation(name or model.name, groups, counts, time.perf_counter() - started, events)


def protocol_text(cfg, seed: int) -> str:
    return PROTOCOL.format(list_k=cfg.list_k, bootstrap=cfg.bootstrap, seed=seed) + (
        " Items the user bought before the event are masked." if cfg.exclude_bought else ""
    )
