"""Redis behind a circuit breaker, and the per-user top-k cache (Redis with a TTL, an in-process LRU
when Redis is absent or down). A cache problem never fails a request: it only costs a recomputation.

Lists are cached per user in one Redis hash (`drlrec:rec:<user>`, field = variant|version|k|exclude), so a
new interaction invalidates all of a user's lists with one DEL. Each entry carries its own expiry time, and
the hash's TTL is refreshed on write, so no entry is served older than `ttl`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class CircuitBreaker:
    """Closed: calls go through. After `failures` consecutive failures: open for `reset_seconds` (calls are
    skipped). Then half-open: one trial call; success closes it, failure opens it again."""

    def __init__(self, failures: int = 3, reset_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.failures = max(1, failures)
        self.reset_seconds = reset_seconds
        self.clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()
        self.opened = 0  # times the breaker opened

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self._opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at >= self.reset_seconds and not self._trial:
                self._trial = True  # exactly one caller probes
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._trial = False

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                if self._opened_at is None or self._trial:
                    self.opened += 1
                self._opened_at = self.clock()
                self._trial = False


class RedisBackend:
    """A redis-py client with short timeouts and no retries, every call guarded by the breaker."""

    def __init__(self, url: str, timeout: float = 0.05, breaker: CircuitBreaker | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False, health_check_interval=0,
        )
        self.breaker = breaker or CircuitBreaker()
        self.errors = 0

    def call(self, fn: Callable[[Any], T], default: T) -> T:
        """fn(client), or `default` when the breaker is open or the call fails."""
        if not self.breaker.allow():
            return default
        try:
            result = fn(self.client)
        except Exception:  # any redis/socket error: the service goes on without Redis
            self.errors += 1
            self.breaker.failure()
            return default
        self.breaker.success()
        return result

    @property
    def up(self) -> bool:
        return self.breaker.state == "closed"

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


class LRUCache:
    """user -> {field: (expires_at, value)}, least recently used users evicted beyond `max_users`."""

    def __init__(self, max_users: int) -> None:
        self.max_users = max(1, max_users)
        self._data: OrderedDict[int, dict[str, tuple[float, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user: int, field: str, now: float) -> Any | None:
        with self._lock:
            entries = self._data.get(user)
            if entries is None:
                return None
            hit = entries.get(field)
            if hit is None or hit[0] <= now:
                return None
            self._data.move_to_end(user)
            return hit[1]

    def set(self, user: int, field: str, value: Any, expires_at: float) -> None:
        with self._lock:
            entries = self._data.get(user)
            if entries is None:
                entries = self._data[user] = {}
            else:
                self._data.move_to_end(user)
            entries[field] = (expires_at, value)
            while len(self._data) > self.max_users:
                self._data.popitem(last=False)

    def invalidate(self, user: int) -> None:
        with self._lock:
            self._data.pop(user, None)

    def __len__(self) -> int:
        return len(self._data)


class TopKCache:
    """Cached response payloads per (user, field): Redis when configured and healthy, else the LRU.
    Writes go to both, so the LRU is warm when Redis goes down."""

    def __init__(self, ttl: int, lru_size: int, redis: RedisBackend | None = None, clock: Callable[[], float] = time.time):
        self.ttl = ttl
        self.redis = redis
        self.lru = LRUCache(lru_size)
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    @staticmethod
    def _key(user: int) -> str:
        return f"drlrec:rec:{user}"

    def get(self, user: int, field: str) -> tuple[dict[str, Any] | None, str]:
        """(payload or None, where it came from: 'redis', 'lru' or 'miss')."""
        if not self.enabled:
            return None, "miss"
        now = self.clock()
        if self.redis is not None:
            raw = self.redis.call(lambda c: c.hget(self._key(user), field), _FAILED)
            if raw is not _FAILED:
                if raw is None:
                    return None, "miss"
                entry = json.loads(raw)
                return (entry["v"], "redis") if entry["e"] > now else (None, "miss")
        value = self.lru.get(user, field, now)
        return (value, "lru") if value is not None else (None, "miss")

    def set(self, user: int, field: str, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        expires = self.clock() + self.ttl
        self.lru.set(user, field, payload, expires)
        if self.redis is not None:
            raw = json.dumps({"e": expires, "v": payload}, separators=(",", ":"))
            key = self._key(user)

            def write(c):
                pipe = c.pipeline(transaction=False)
                pipe.hset(key, field, raw)
                pipe.expire(key, self.ttl)
                return pipe.execute()

            self.redis.call(write, None)

    def invalidate(self, user: int) -> None:
        self.lru.invalidate(user)
        if self.redis is not None:
            self.redis.call(lambda c: c.delete(self._key(user)), None)


class _Failed:
    pass


_FAILED: Any = _Failed()
