"""Where the service's models come from, and the hot swap.

`ModelStore` holds one ServingModel per registry alias the service needs (serve.alias, or every A/B
variant's alias). `refresh` asks the source which version each alias points at; a moved alias is loaded
and warmed up *beside* the model in use, then swapped in with one reference assignment, so a request
always holds one complete model from start to end and no request fails during a swap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Protocol

from drlrec.serving.recommender import ServingModel

log = logging.getLogger("drlrec.serving")


class ModelSource(Protocol):
    """What the store needs from a registry."""

    def version(self, alias: str) -> str | None: ...

    def load(self, alias: str) -> Any: ...


class RegistrySource:
    """The MLflow registry (drlrec.registry): `alias_version` for polling, `load_champion` to load."""

    def __init__(self, name: str, tracking_uri: str | None = None) -> None:
        self.name = name
        self.tracking_uri = tracking_uri

    def version(self, alias: str) -> str | None:
        from drlrec.registry import alias_version

        return alias_version(alias, tracking_uri=self.tracking_uri, name=self.name)

    def load(self, alias: str) -> Any:
        from drlrec.registry import load_champion

        return load_champion(alias, tracking_uri=self.tracking_uri, name=self.name)


class ModelStore:
    """alias -> ServingModel, replaced atomically by `refresh`."""

    def __init__(self, source: ModelSource, aliases: list[str], serve: Any = None) -> None:
        self.source = source
        self.serve = serve  # ServeConfig: its retrieval settings are applied to every model loaded
        self.aliases = list(dict.fromkeys(aliases))
        self._models: dict[str, ServingModel] = {}
        self._refresh_lock = threading.Lock()
        self.last_error: dict[str, str] = {}
        self.reloads = 0
        self.last_check: float | None = None

    def get(self, alias: str) -> ServingModel | None:
        return self._models.get(alias)

    def versions(self) -> dict[str, str | None]:
        models = self._models
        return {alias: (models[alias].version if alias in models else None) for alias in self.aliases}

    @property
    def ready(self) -> bool:
        return bool(self._models)

    def refresh(self) -> dict[str, Any]:
        """Check every alias; load and swap in the ones that moved. Never raises: a failed check or load
        keeps the model in use and is reported in `last_error` (and in the returned summary)."""
        with self._refresh_lock:
            changed: dict[str, Any] = {}
            self.last_check = time.time()
            for alias in self.aliases:
                current = self._models.get(alias)
                try:
                    version = self.source.version(alias)
                    if version is None:
                        self.last_error[alias] = f"alias {alias!r} does not exist in the registry"
                        continue
                    if current is not None and current.version == str(version):
                        self.last_error.pop(alias, None)
                        continue
                    same = next((m for m in self._models.values() if m.version == str(version)), None)
                    if same is not None:  # another alias serves this version already: share it
                        model = same
                    else:
                        retrieval = {} if self.serve is None else {"retrieval": self.serve.retrieval, "ann": self.serve.ann}
                        model = ServingModel(self.source.load(alias), alias, **retrieval)
                        model.warm_up()
                except Exception as exc:  # the registry or a bundle failed: keep serving what we have
                    self.last_error[alias] = f"{type(exc).__name__}: {exc}"
                    log.warning("model refresh for %s failed: %s", alias, self.last_error[alias])
                    continue
                self._models = {**self._models, alias: model}  # the swap: one reference assignment
                self.last_error.pop(alias, None)
                self.reloads += 1
                changed[alias] = {"from": current.version if current else None, "to": model.version}
                log.info("serving %s version %s", alias, model.version)
            return {"changed": changed, "versions": self.versions(), "errors": dict(self.last_error)}


class BundleDirSource:
    """Bundle folders on disk as a registry stand-in (development and tests): alias -> (version, folder).
    `set(alias, version, folder)` moves an alias, as a promotion in the registry would."""

    def __init__(self, aliases: dict[str, tuple[str, str]]) -> None:
        self._aliases = dict(aliases)
        self._lock = threading.Lock()

    def set(self, alias: str, version: str, folder: str) -> None:
        with self._lock:
            self._aliases[alias] = (str(version), str(folder))

    def version(self, alias: str) -> str | None:
        with self._lock:
            entry = self._aliases.get(alias)
        return None if entry is None else entry[0]

    def load(self, alias: str) -> Any:
        from drlrec.bundle import load_bundle
        from drlrec.errors import RegistryError

        with self._lock:
            entry = self._aliases.get(alias)
        if entry is None:
            raise RegistryError(f"alias {alias!r} is not set")
        return load_bundle(entry[1], version=entry[0])


class DynamicBatcher:
    """Requests that arrive while the model is busy are scored together in the next forward pass (no
    waiting window: a lone request goes at once). One worker thread; results come back through futures."""

    def __init__(self, max_batch: int = 32) -> None:
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="drlrec-batcher", daemon=True)
        self._thread.start()
        self.batches = 0
        self.requests = 0

    def submit(self, model: ServingModel, history, k: int, exclude: list[int]) -> Future:
        future: Future = Future()
        self._queue.put((model, history, k, exclude, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            pending = [first]
            while len(pending) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                pending.append(item)
            by_model: dict[int, list] = {}
            for item in pending:  # a swap can put two models in one drain
                by_model.setdefault(id(item[0]), []).append(item)
            for group in by_model.values():
                model = group[0][0]
                try:
                    results = model.recommend_batch([(h, k, e) for _, h, k, e, _ in group])
                except Exception as exc:  # the caller falls back to popularity
                    for *_, future in group:
                        future.set_exception(exc)
                    continue
                self.batches += 1
                self.requests += len(group)
                for (*_, future), result in zip(group, results, strict=True):
                    future.set_result(result)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)
