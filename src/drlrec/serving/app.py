"""The FastAPI app factory: lifespan (load the models once, poll the registry), guards, error handlers, and
the routes of drlrec.serving.routes (each parses, calls one Service method and shapes the answer). Every error a client can cause is a 4xx with a
one-line `detail`; anything else is a 500 with a fixed message (the traceback goes to the server log only).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from drlrec.config import Params
from drlrec.serving.model_store import ModelSource, RegistrySource
from drlrec.serving.routes import router
from drlrec.serving.service import BadRequest, Service

log = logging.getLogger("drlrec.serving")


class _BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """Pure ASGI: refuses bodies over `max_body` (413), times every request into the metrics by route
    template, and turns any exception that escaped into a plain 500 without a traceback."""

    def __init__(self, app, max_body: int, service_getter) -> None:
        self.app = app
        self.max_body = max_body
        self.service_getter = service_getter

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    await self._json(send, 413, f"request body larger than serve.max_body_bytes={self.max_body}")
                    self._record(scope, 413, started)
                    return
        seen = 0
        too_big = {"flag": False, "replaced": False}

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    too_big["flag"] = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            # the framework may turn the read error into its own 400: answer 413 instead
            if too_big["flag"]:
                if message["type"] == "http.response.start" and not too_big["replaced"]:
                    too_big["replaced"] = True
                    status["code"], status["sent"] = 413, True
                    await self._json(send, 413, f"request body larger than serve.max_body_bytes={self.max_body}")
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not status["sent"]:
                status["code"] = 413
                await self._json(send, 413, f"request body larger than serve.max_body_bytes={self.max_body}")
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not status["sent"]:
                status["code"] = 500
                await self._json(send, 500, "internal server error")
        self._record(scope, status["code"], started)

    @staticmethod
    async def _json(send, code: int, detail: str) -> None:
        import json

        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope, code: int, started: float) -> None:
        service = self.service_getter()
        if service is None:
            return
        route = scope.get("route")
        label = getattr(route, "path", None) or "unmatched"
        m = service.metrics
        m.requests.labels(label, scope.get("method", ""), str(code)).inc()
        m.latency.labels(label).observe(time.perf_counter() - started)
        if code >= 400:
            m.errors.labels(label, "5xx" if code >= 500 else "4xx").inc()


def _validation_message(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed JSON body", []
    parts, clean = [], []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        msg = e.get("msg", "invalid value")
        if e.get("type") == "literal_error" and loc and loc[-1] == "behavior_type":
            msg = "unknown behaviour; expected one of pv, cart, fav, buy"
        parts.append(f"{where}: {msg}")
        clean.append({"field": where, "message": msg})
    return 422, "; ".join(parts), clean


def create_app(
    params: Params | None = None,
    source: ModelSource | None = None,
    redis_url: str | None = None,
    api_token: str | None = None,
    tracking_uri: str | None = None,
) -> FastAPI:
    """The service as a FastAPI app. Defaults: params.yaml, the MLflow registry (MLFLOW_TRACKING_URI or
    the local store), DRLREC_REDIS_URL and DRLREC_API_TOKEN from the environment."""
    from drlrec.config import load_params
    from drlrec.settings import apply_offline_env, load_settings

    apply_offline_env()
    settings = load_settings()
    params = params or load_params()
    redis_url = redis_url if redis_url is not None else settings.redis_url
    token = api_token if api_token is not None else settings.api_token
    source = source or RegistrySource(params.register.model_name, tracking_uri or settings.mlflow_tracking_uri)
    holder: dict[str, Service | None] = {"service": None}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import torch

        torch.set_num_threads(max(1, params.serve.torch_threads))
        service = await asyncio.to_thread(Service, params, source, redis_url)
        holder["service"] = service
        app.state.service = service
        await asyncio.to_thread(service.refresh_models)  # the champion (and variants) loaded once here

        async def poll() -> None:
            while True:
                await asyncio.sleep(params.serve.poll_seconds)
                await asyncio.to_thread(service.refresh_models)

        poller = asyncio.create_task(poll()) if params.serve.poll_seconds > 0 else None
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            service.close()

    app = FastAPI(title="drlrec", version="1", lifespan=lifespan,
                  description="Sequential recommendations from the registry's champion (DQN-LSTM).")
    app.state.api_token = token
    app.add_middleware(GuardMiddleware, max_body=params.serve.max_body_bytes, service_getter=lambda: holder["service"])

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, detail, errors = _validation_message(exc)
        return JSONResponse({"detail": detail, "errors": errors} if errors else {"detail": detail}, status_code=code)

    @app.exception_handler(BadRequest)
    async def on_bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.include_router(router)
    return app
