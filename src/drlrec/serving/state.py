"""Per-user online state: each user's last `history_events` raw interactions and their total count.

It starts from the end of the data (paths.events, read vectorized) followed by the service's own
interaction log (so a restarted service knows what it acknowledged), and every POST /interaction appends
to it. With Redis configured, Redis holds it (a list and a counter per user, shared by every API process)
and the in-process copy is kept in step as the fallback while Redis is down; on a read the copy that has
seen more of the user's events wins.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np

from drlrec.serving.cache import RedisBackend


class History(NamedTuple):
    """One user's recent raw interactions, oldest first, and how many the user has in all."""

    item_id: np.ndarray  # [p] int64
    category_id: np.ndarray  # [p] int64
    behavior: np.ndarray  # [p] int64 behaviour codes
    timestamp: np.ndarray  # [p] int64
    total: int  # events of the user in all (>= p)

    @classmethod
    def empty(cls) -> History:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, 0)


class BaseHistories(NamedTuple):
    """The last `keep` events of every user, as flat arrays grouped by user (sorted user ids)."""

    users: np.ndarray  # [U] int64 sorted
    offsets: np.ndarray  # [U + 1] int64 rows of user u: offsets[u]:offsets[u + 1]
    total: np.ndarray  # [U] int64 events per user in the source
    item_id: np.ndarray  # [R] int64
    category_id: np.ndarray  # [R] int64
    behavior: np.ndarray  # [R] int8
    timestamp: np.ndarray  # [R] int64
    item_counts: tuple[np.ndarray, np.ndarray, np.ndarray]  # (item ids, their categories, events), most first


def last_events_per_user(
    user: np.ndarray, item: np.ndarray, category: np.ndarray, behavior: np.ndarray, timestamp: np.ndarray, keep: int,
    top_items: int = 2000,
) -> BaseHistories:
    """Vectorized: group rows by user (stable, so each user's rows keep their order), keep each user's last
    `keep` rows and count events per user; also the `top_items` most frequent items (popularity without a model)."""
    user = np.asarray(user, dtype=np.int64)
    if len(user) and np.any(user[1:] < user[:-1]):
        order = np.argsort(user, kind="stable")
        user, item, category, behavior, timestamp = (np.asarray(a)[order] for a in (user, item, category, behavior, timestamp))
    n = len(user)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if n else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    total = ends - starts
    end_of_row = np.repeat(ends, total)
    kept = (end_of_row - np.arange(n)) <= keep  # [n] among the user's last `keep` rows
    kept_per_user = np.minimum(total, keep)
    offsets = np.r_[0, np.cumsum(kept_per_user)].astype(np.int64)
    ids, counts = np.unique(np.asarray(item, dtype=np.int64), return_counts=True)
    top = np.lexsort((ids, -counts))[:top_items]
    # category of each top item: its last occurrence (items have one category)
    item64 = np.asarray(item, dtype=np.int64)
    last_pos = np.zeros(len(ids), dtype=np.int64)
    if n:
        pos = np.searchsorted(ids, item64)
        last_pos[pos] = np.arange(n)  # later rows overwrite: the last occurrence wins
    top_categories = np.asarray(category, dtype=np.int64)[last_pos[top]] if n else np.zeros(0, np.int64)
    return BaseHistories(
        users=user[starts] if n else np.zeros(0, np.int64),
        offsets=offsets,
        total=total.astype(np.int64),
        item_id=item64[kept],
        category_id=np.asarray(category, dtype=np.int64)[kept],
        behavior=np.asarray(behavior, dtype=np.int8)[kept],
        timestamp=np.asarray(timestamp, dtype=np.int64)[kept],
        item_counts=(ids[top], top_categories, counts[top].astype(np.int64)),
    )


def load_base_histories(events_path: str | Path, log_path: str | Path | None, keep: int) -> BaseHistories:
    """The users' last `keep` events at the end of events.parquet followed by the interaction log."""
    import pyarrow.parquet as pq

    from drlrec.data.logs import read_interactions

    columns = ["user_id", "item_id", "category_id", "behavior", "timestamp"]
    parts = []
    events_path = Path(events_path)
    if events_path.is_file():
        table = pq.read_table(events_path, columns=columns)
        parts.append({c: table.column(c).to_numpy() for c in columns})
    if log_path is not None:
        logged = read_interactions(log_path, missing_ok=True)
        if len(logged):
            parts.append({c: logged[c].to_numpy() for c in columns})
    if not parts:
        parts.append({c: np.zeros(0, dtype=np.int64) for c in columns})
    cols = {c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in columns}
    return last_events_per_user(
        cols["user_id"], cols["item_id"], cols["category_id"], cols["behavior"], cols["timestamp"], keep
    )


def _encode(item: int, category: int, behavior: int, timestamp: int) -> str:
    return f"{item},{category},{behavior},{timestamp}"


class UserStateStore:
    """Recent interactions per user: in process, and in Redis when a backend is given (see the module doc)."""

    def __init__(self, base: BaseHistories, keep: int, redis: RedisBackend | None = None) -> None:
        self.base = base
        self.keep = keep
        self.redis = redis
        self._online: dict[int, deque] = {}
        self._online_count: dict[int, int] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------- in process

    def _base(self, user: int) -> History:
        pos = int(np.searchsorted(self.base.users, user))
        if pos >= len(self.base.users) or self.base.users[pos] != user:
            return History.empty()
        lo, hi = self.base.offsets[pos], self.base.offsets[pos + 1]
        return History(
            self.base.item_id[lo:hi], self.base.category_id[lo:hi], self.base.behavior[lo:hi].astype(np.int64),
            self.base.timestamp[lo:hi], int(self.base.total[pos]),
        )

    def local(self, user: int) -> History:
        base = self._base(user)
        with self._lock:
            online = list(self._online.get(user, ()))
            extra = self._online_count.get(user, 0)
        if not online:
            return base
        add = np.asarray(online, dtype=np.int64).reshape(-1, 4)
        joined = [np.concatenate([b, add[:, j]])[-self.keep :] for j, b in enumerate(base[:4])]
        return History(*joined, base.total + extra)

    # -------------------------------------------------------------------------------- redis

    @staticmethod
    def _keys(user: int) -> tuple[str, str]:
        return f"drlrec:hist:{user}", f"drlrec:cnt:{user}"

    def _from_redis(self, user: int) -> History | None:
        if self.redis is None:
            return None
        hist_key, count_key = self._keys(user)

        def read(c):
            pipe = c.pipeline(transaction=False)
            pipe.lrange(hist_key, 0, -1)
            pipe.get(count_key)
            return pipe.execute()

        result = self.redis.call(read, None)
        if result is None:
            return None
        rows, count = result
        if not rows:
            return History.empty()
        arr = np.array([[int(x) for x in r.split(b",")] for r in rows], dtype=np.int64)  # [p, 4]
        return History(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], int(count or len(rows)))

    def seed_redis(self, fingerprint: str, chunk: int = 2000) -> int:
        """Write every user's base history to Redis once per data fingerprint; returns users written
        (0 when already seeded or Redis is unavailable)."""
        if self.redis is None:
            return 0
        marker = f"drlrec:seeded:{fingerprint}"
        if self.redis.call(lambda c: c.exists(marker), 1):
            return 0
        written = 0
        for lo in range(0, len(self.base.users), chunk):
            users = self.base.users[lo : lo + chunk]

            def write(c, lo=lo, users=users):
                pipe = c.pipeline(transaction=False)
                for i, user in enumerate(users, start=lo):
                    a, b = self.base.offsets[i], self.base.offsets[i + 1]
                    hist_key, count_key = self._keys(int(user))
                    pipe.delete(hist_key)
                    pipe.rpush(hist_key, *[
                        _encode(int(self.base.item_id[j]), int(self.base.category_id[j]), int(self.base.behavior[j]),
                                int(self.base.timestamp[j])) for j in range(a, b)
                    ])
                    pipe.set(count_key, int(self.base.total[i]))
                return pipe.execute()

            if self.redis.call(write, None) is None:
                return written
            written += len(users)
        self.redis.call(lambda c: c.set(marker, "1"), None)
        return written

    # -------------------------------------------------------------------------------- API

    def history(self, user: int) -> History:
        """The user's recent events: Redis or the in-process copy, whichever has seen more of them."""
        local = self.local(user)
        remote = self._from_redis(user)
        if remote is None or remote.total < local.total:
            return local
        return remote

    def append(self, user: int, item: int, category: int, behavior: int, timestamp: int) -> None:
        with self._lock:
            events = self._online.get(user)
            if events is None:
                events = self._online[user] = deque(maxlen=self.keep)
            events.append((item, category, behavior, timestamp))
            self._online_count[user] = self._online_count.get(user, 0) + 1
        if self.redis is not None:
            hist_key, count_key = self._keys(user)
            base_total = self._base(user).total

            def write(c):
                pipe = c.pipeline(transaction=False)
                pipe.rpush(hist_key, _encode(item, category, behavior, timestamp))
                pipe.ltrim(hist_key, -self.keep, -1)
                pipe.incr(count_key)
                return pipe.execute()

            result = self.redis.call(write, None)
            if result is not None and int(result[2]) == 1 and base_total:
                # the counter was missing (Redis lost its data): rebuild this user's entry from the local copy
                local = self.local(user)

                def rebuild(c):
                    pipe = c.pipeline(transaction=False)
                    pipe.delete(hist_key)
                    pipe.rpush(hist_key, *[_encode(*map(int, row)) for row in zip(*local[:4], strict=True)])
                    pipe.set(count_key, local.total)
                    return pipe.execute()

                self.redis.call(rebuild, None)

    @property
    def users(self) -> int:
        return len(self.base.users)
