"""The service behind the routes: variant assignment, cache, user state, model or popularity, the logs."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from drlrec.config import Params, VariantConfig
from drlrec.data.logs import ExposureLog, InteractionLog
from drlrec.schema import BEHAVIOR_CODE
from drlrec.serving import exploration
from drlrec.serving.abtest import assign_variant, check_ab_config
from drlrec.serving.cache import CircuitBreaker, RedisBackend, TopKCache
from drlrec.serving.metrics import ServiceMetrics
from drlrec.serving.model_store import DynamicBatcher, ModelSource, ModelStore
from drlrec.serving.recommender import Ranked
from drlrec.serving.state import History, UserStateStore, load_base_histories

log = logging.getLogger("drlrec.serving")


class BadRequest(ValueError):
    """A client error with a one-line message (422)."""


class Lookup(NamedTuple):
    """The cheap part of a request (event loop): who serves the user, and the cached list if any."""

    variant: VariantConfig
    model: Any  # the ServingModel of the variant's alias (None: no model loaded)
    field: str  # the cache field of (variant, policy, version, k, exclusions, exploration)
    payload: dict[str, Any] | None  # the cached list (None: compute it)


@dataclass(frozen=True)
class Served:
    """One answered GET /recommendations: the list shown and how it was made (schemas.Recommendations)."""

    user_id: int
    items: list[dict[str, Any]]
    model_version: str | None
    fallback: str | None
    variant: str
    cached: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Service:
    """Everything a request needs, built once per app (see app.create_app)."""

    def __init__(self, params: Params, source: ModelSource, redis_url: str | None = None) -> None:
        self.params = params
        self.serve = params.serve
        self.ab = params.ab
        if self.ab.enabled:
            check_ab_config(self.ab)
            self.variants = list(self.ab.variants)
            self.control = next(v for v in self.variants if v.name == self.ab.control)
        else:
            self.control = VariantConfig(name=self.serve.alias, alias=self.serve.alias, traffic=1.0)
            self.variants = [self.control]
        self.exploration = self.serve.exploration
        self.explore_label = exploration.describe(self.exploration)
        self.rng = np.random.default_rng(params.base.seed)  # exploration draws (a lock: FastAPI's thread pool)
        self.rng_lock = threading.Lock()
        self.metrics = ServiceMetrics()
        self.store = ModelStore(source, [self.control.alias] + [v.alias for v in self.variants], self.serve)
        self.redis: RedisBackend | None = None
        if redis_url:
            breaker = CircuitBreaker(self.serve.breaker_failures, self.serve.breaker_reset_seconds)
            self.redis = RedisBackend(redis_url, self.serve.redis_timeout, breaker)
        self.metrics.redis_up.set_function(lambda: 1.0 if self.redis is not None and self.redis.up else 0.0)
        self.batcher = DynamicBatcher(self.serve.max_batch)
        self.cache = TopKCache(self.serve.cache_ttl, self.serve.lru_size, self.redis)
        paths = params.paths
        self.interaction_log = InteractionLog(paths.interactions)
        self.exposure_log = ExposureLog(paths.exposures) if self.serve.log_exposures else None
        started = time.perf_counter()
        base = load_base_histories(paths.events, paths.interactions, self.serve.history_events)
        self.state = UserStateStore(base, self.serve.history_events, self.redis)
        self.seeded = self.state.seed_redis(self._data_fingerprint()) if self.redis is not None else 0
        log.info("user state: %d users in %.2fs (%d written to Redis)", self.state.users, time.perf_counter() - started, self.seeded)

    def _data_fingerprint(self) -> str:
        parts = []
        for path in (self.params.paths.events, self.params.paths.interactions):
            p = Path(path)
            st = p.stat() if p.is_file() else None
            parts.append(f"{p.resolve()}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}")
        return hashlib.sha256("|".join(parts + [str(self.serve.history_events)]).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------------------------------ models

    def refresh_models(self) -> dict[str, Any]:
        result = self.store.refresh()
        if result["changed"]:
            self.metrics.model_reloads.inc(len(result["changed"]))
        self.metrics.set_models(result["versions"])
        return result

    def variant_of(self, user_id: int) -> VariantConfig:
        return assign_variant(user_id, self.ab) if self.ab.enabled else self.control

    # ------------------------------------------------------------------------------------------ reads

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.serve.max_k:
            raise BadRequest(f"k must be between 1 and serve.max_k={self.serve.max_k} (got {k})")

    @staticmethod
    def parse_exclude(text: str | None, limit: int = 1000) -> list[int]:
        if text is None or not text.strip():
            return []
        out = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or int(part) > 2**62:
                raise BadRequest(f"exclude: expected comma-separated non-negative integer item ids (got {part[:40]!r})")
            out.append(int(part))
        if len(out) > limit:
            raise BadRequest(f"exclude: at most {limit} item ids (got {len(out)})")
        return out

    async def recommend(self, user_id: int, k: int | None, exclude: str | None) -> Served:
        """GET /recommendations/{user_id}: check the arguments, look the user up (event loop), rank in the
        thread pool when the cache has no list, and draw, log and return what is shown."""
        from starlette.concurrency import run_in_threadpool

        k = self.serve.default_k if k is None else k
        self.check_k(k)
        excluded = self.parse_exclude(exclude)
        found = self.lookup(user_id, k, excluded)
        payload = found.payload
        if payload is None:
            payload = await run_in_threadpool(self.compute, user_id, k, excluded, found)
        return self.respond(user_id, payload, found, found.payload is not None, k)

    def lookup(self, user_id: int, k: int, exclude: list[int]) -> Lookup:
        """Cheap part (event loop): variant, model, cache."""
        variant = self.variant_of(user_id)
        model = self.store.get(variant.alias)
        if model is None and variant.alias != self.control.alias:
            variant = self.control  # the variant's alias is not loadable: the control serves its users
            model = self.store.get(variant.alias)
        version = model.version if model is not None else None
        exclude_key = hashlib.blake2b(",".join(map(str, sorted(set(exclude)))).encode(), digest_size=8).hexdigest() if exclude else "-"
        field = f"{variant.name}|{variant.policy}|{version}|{k}|{exclude_key}|{self.explore_label}"
        payload, where = self.cache.get(user_id, field) if model is not None else (None, "miss")
        if self.cache.enabled:
            self.metrics.cache.labels(where).inc()
        return Lookup(variant, model, field, payload)

    def compute(self, user_id: int, k: int, exclude: list[int], found: Lookup) -> dict[str, Any]:
        """Expensive part (thread pool): state, ranking, cache fill. With exploration on, a model list holds
        the model's top-M (serve.exploration.top_m, at least k + 1): `respond` draws the k shown from it."""
        variant, model = found.variant, found.model
        fallback = None
        history = None
        explore = False
        if model is None:
            fallback = "no_model"
            items, categories, counts = self.state.base.item_counts
            keep = [i for i in range(len(items)) if int(items[i]) not in set(exclude)][:k]
            ranked = Ranked(items[keep], categories[keep], counts[keep].astype("float32"))
        else:
            history = self.state.history(user_id)
            if history.total < self.serve.cold_start_min_events or len(history.item_id) == 0:
                fallback = "cold_start"
                ranked = model.popularity(k, exclude)
            elif variant.policy == "popularity":
                ranked = model.popularity(k, exclude)
            else:
                explore = self.exploration.mode != "off"
                size = max(self.exploration.top_m, k + 1) if explore else k
                try:
                    ranked = self.batcher.submit(model, history, size, exclude).result()
                except Exception:
                    log.exception("model %s failed for user %s; serving popularity", model.version, user_id)
                    fallback = "model_error"
                    explore = False
                    ranked = model.popularity(k, exclude)
        if fallback:
            self.metrics.fallbacks.labels(fallback).inc()
        payload = {
            "items": [
                {"item_id": int(i), "category_id": int(c), "score": float(s)}
                for i, c, s in zip(ranked.item_id.tolist(), ranked.category_id.tolist(), ranked.score.tolist(), strict=True)
            ],
            "model_version": model.version if model is not None else None,
            "fallback": fallback,
            "explore": explore,
            # the state the list was ranked from, logged with every exposure of it (cached ones too)
            "history": None if history is None else [int(history.total)] + [
                [int(v) for v in part] for part in (history.item_id, history.category_id, history.behavior, history.timestamp)
            ],
        }
        if model is not None:
            self.cache.set(user_id, found.field, payload)
        return payload

    def shown(self, payload: dict[str, Any], k: int) -> tuple[list[dict[str, Any]], list[float], float]:
        """The k items shown from a payload, each one's slot propensity and the list's probability: a draw
        from the top-M when the payload explores (serve.exploration), else its first k with probability 1."""
        items = payload["items"]
        if not payload.get("explore") or len(items) <= 1:
            return items[:k], [1.0] * len(items[:k]), 1.0
        scores = np.array([it["score"] for it in items], dtype=np.float64)
        with self.rng_lock:
            choice = exploration.explore(scores, k, self.exploration, self.rng)
        return [items[i] for i in choice.positions.tolist()], choice.propensity.tolist(), choice.list_propensity

    def respond(self, user_id: int, payload: dict[str, Any], found: Lookup, cached: bool, k: int | None = None) -> Served:
        """The k shown (drawn when the payload explores), logged as one exposure."""
        variant = found.variant
        items, propensities, list_propensity = self.shown(payload, len(payload["items"]) if k is None else k)
        if self.exposure_log is not None:
            stored = payload.get("history")
            history = None if stored is None else History(*(np.asarray(part, dtype=np.int64) for part in stored[1:]), stored[0])
            model_list = payload["fallback"] is None and variant.policy == "model"
            self.exposure_log.append(
                time.time(), user_id, variant.name, variant.alias, str(payload["model_version"]),
                payload["fallback"] or "", cached, [it["item_id"] for it in items],
                policy="model" if model_list else "popularity",
                exploration=self.explore_label if payload.get("explore") else "off",
                propensities=propensities, history=history, list_propensity=list_propensity,
            )
        self.metrics.exposures.labels(variant.name).inc()
        return Served(user_id, items, payload["model_version"], payload["fallback"], variant.name, cached)

    # ------------------------------------------------------------------------------------------ writes

    def record_interaction(self, user_id: int, item_id: int, category_id: int, behavior: str, timestamp: int | None) -> dict[str, Any]:
        """Durable first (append + fsync), then the online state and the cache."""
        ts = int(time.time()) if timestamp is None else int(timestamp)
        self.interaction_log.append(user_id, item_id, category_id, behavior, ts)
        self.metrics.interactions.inc()
        self.state.append(user_id, item_id, category_id, BEHAVIOR_CODE[behavior], ts)
        self.cache.invalidate(user_id)
        return {"status": "accepted", "user_id": user_id, "variant": self.variant_of(user_id).name}

    def close(self) -> None:
        self.batcher.close()
        self.interaction_log.close()
        if self.exposure_log is not None:
            self.exposure_log.close()
        if self.redis is not None:
            self.redis.close()
