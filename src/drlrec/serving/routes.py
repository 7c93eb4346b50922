"""The API's routes (an APIRouter that app.create_app includes). A route only parses its arguments, calls
one Service method and shapes the answer; the Service (drlrec.serving.service) does the work."""

import asyncio
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from drlrec.serving import schemas
from drlrec.serving.service import BadRequest, Service

router = APIRouter()

_bearer = HTTPBearer(auto_error=False)


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """POST /interaction and /admin/*: `Authorization: Bearer $DRLREC_API_TOKEN`."""
    token = request.app.state.api_token
    if not token:
        raise StarletteHTTPException(503, "the server has no DRLREC_API_TOKEN; write routes are disabled")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise StarletteHTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
        raise StarletteHTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def service_of(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(service_of)]
UserId = Annotated[int, Path(ge=0, le=schemas.MAX_ID, description="raw user id")]


@router.get("/recommendations/{user_id}", response_model=schemas.Recommendations)
async def recommendations(
    user_id: UserId,
    service: ServiceDep,
    k: Annotated[int | None, Query(description="list length (1..serve.max_k)")] = None,
    exclude: Annotated[str | None, Query(description="comma-separated raw item ids never to return")] = None,
) -> dict[str, Any]:
    return (await service.recommend(user_id, k, exclude)).as_dict()


@router.post("/interaction", status_code=202, response_model=schemas.Accepted, dependencies=[Depends(require_token)])
async def interaction(body: schemas.Interaction, service: ServiceDep) -> dict[str, Any]:
    return await run_in_threadpool(
        service.record_interaction, body.user_id, body.item_id, body.category_id, body.behavior_type, body.timestamp
    )


@router.post("/admin/reload", response_model=schemas.Reload, dependencies=[Depends(require_token)])
async def reload(service: ServiceDep) -> dict[str, Any]:
    return await asyncio.to_thread(service.refresh_models)


@router.get("/health", response_model=schemas.Health)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=schemas.Ready)
async def ready(request: Request) -> JSONResponse:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"ready": False, "models": {}, "errors": {"service": "starting"}}, status_code=503)
    body = {"ready": service.store.ready, "models": service.store.versions(), "errors": dict(service.store.last_error)}
    return JSONResponse(body, status_code=200 if service.store.ready else 503)


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/stats")
async def stats(service: ServiceDep) -> dict[str, Any]:
    snap = service.metrics.snapshot()
    snap["redis"] = None if service.redis is None else {
        "url": service.redis.url.split("@")[-1], "breaker": service.redis.breaker.state,
        "errors": service.redis.errors, "breaker_opened": service.redis.breaker.opened,
    }
    snap["lru_users"] = len(service.cache.lru)
    snap["users_with_state"] = service.state.users
    snap["versions"] = service.store.versions()
    return snap


@router.get("/ab/results")
async def ab_results(service: ServiceDep) -> dict[str, Any]:
    from drlrec.data.logs import read_exposures, read_interactions
    from drlrec.errors import InputError
    from drlrec.serving.abtest import ab_report, read_predictions

    def build() -> dict[str, Any]:
        if not service.ab.enabled:
            raise BadRequest("the A/B test is off (ab.enabled: false)")
        try:
            predictions = read_predictions(service.params)
        except InputError:  # predictions of another experiment: the report goes without them
            predictions = None
        return ab_report(read_exposures(service.params.paths.exposures),
                         read_interactions(service.params.paths.interactions, missing_ok=True), service.ab, predictions)

    return await run_in_threadpool(build)
