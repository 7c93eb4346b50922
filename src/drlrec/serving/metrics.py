"""Service metrics in one prometheus_client registry per app: /metrics renders it as Prometheus text and
/stats reads the same samples back as JSON."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServiceMetrics:
    """Requests and errors by route, latency histograms, cache lookups, fallbacks, model versions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("drlrec_requests", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r)
        self.errors = Counter("drlrec_request_errors", "HTTP responses with status >= 400 by route and class", ["route", "kind"], registry=r)
        self.latency = Histogram("drlrec_request_latency_seconds", "Request latency by route", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.cache = Counter("drlrec_cache_lookups", "Top-k cache lookups by result (redis, lru, miss)", ["result"], registry=r)
        self.cache_hit_ratio = Gauge("drlrec_cache_hit_ratio", "Share of cache lookups that hit (since start)", registry=r)
        self.cache_hit_ratio.set_function(self._hit_ratio)
        self.fallbacks = Counter("drlrec_fallbacks", "Lists not ranked by the model, by reason", ["reason"], registry=r)
        self.model_info = Gauge("drlrec_model_info", "1 for each (alias, version) being served", ["alias", "version"], registry=r)
        self.model_reloads = Counter("drlrec_model_reloads", "Models swapped in (start and hot swaps)", registry=r)
        self.redis_up = Gauge("drlrec_redis_up", "1 when Redis is configured and its circuit breaker is closed", registry=r)
        self.interactions = Counter("drlrec_interactions", "Interactions acknowledged (fsynced to the log)", registry=r)
        self.exposures = Counter("drlrec_exposures", "Lists served by A/B variant", ["variant"], registry=r)

    def _hit_ratio(self) -> float:
        hits = self.cache.labels("redis")._value.get() + self.cache.labels("lru")._value.get()
        total = hits + self.cache.labels("miss")._value.get()
        return hits / total if total else 0.0

    def set_models(self, versions: dict[str, str | None]) -> None:
        self.model_info.clear()
        for alias, version in versions.items():
            if version is not None:
                self.model_info.labels(alias, version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The same figures as /metrics, as a JSON-ready dict."""
        requests: dict[str, dict[str, float]] = {}
        errors: dict[str, dict[str, float]] = {}
        latency: dict[str, dict[str, Any]] = {}
        cache: dict[str, float] = {}
        fallbacks: dict[str, float] = {}
        exposures: dict[str, float] = {}
        models: dict[str, str] = {}
        scalars: dict[str, float] = {}
        buckets: dict[str, list[tuple[float, float]]] = {}
        for family in self.registry.collect():
            for s in family.samples:
                name, labels, value = s.name, s.labels, s.value
                if name == "drlrec_requests_total":
                    key = f"{labels['method']} {labels['route']}"
                    requests.setdefault(key, {})[labels["status"]] = value
                elif name == "drlrec_request_errors_total":
                    errors.setdefault(labels["route"], {})[labels["kind"]] = value
                elif name == "drlrec_request_latency_seconds_count":
                    latency.setdefault(labels["route"], {})["count"] = value
                elif name == "drlrec_request_latency_seconds_sum":
                    latency.setdefault(labels["route"], {})["sum_seconds"] = value
                elif name == "drlrec_request_latency_seconds_bucket":
                    buckets.setdefault(labels["route"], []).append((float(labels["le"]), value))
                elif name == "drlrec_cache_lookups_total":
                    cache[labels["result"]] = value
                elif name == "drlrec_fallbacks_total":
                    fallbacks[labels["reason"]] = value
                elif name == "drlrec_exposures_total":
                    exposures[labels["variant"]] = value
                elif name == "drlrec_model_info" and value == 1:
                    models[labels["alias"]] = labels["version"]
                elif name in ("drlrec_cache_hit_ratio", "drlrec_redis_up", "drlrec_model_reloads_total", "drlrec_interactions_total"):
                    scalars[name] = value
        for route, rows in buckets.items():
            info = latency.setdefault(route, {})
            count = info.get("count", 0.0)
            info["mean_ms"] = 1000 * info.get("sum_seconds", 0.0) / count if count else None
            for q in (0.5, 0.95, 0.99):
                bound = next((le for le, c in sorted(rows) if count and c >= q * count), None)
                info[f"p{int(q * 100)}_ms_at_most"] = None if bound is None else (1000 * bound if bound != float("inf") else "inf")
        hits = cache.get("redis", 0.0) + cache.get("lru", 0.0)
        total = hits + cache.get("miss", 0.0)
        return {
            "requests": requests,
            "errors": errors,
            "latency": latency,
            "cache": {**cache, "hit_rate": hits / total if total else 0.0},
            "fallbacks": fallbacks,
            "exposures": exposures,
            "models": models,
            "model_reloads": scalars.get("drlrec_model_reloads_total", 0.0),
            "interactions": scalars.get("drlrec_interactions_total", 0.0),
            "redis_up": bool(scalars.get("drlrec_redis_up", 0.0)),
        }
