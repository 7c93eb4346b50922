"""`drlrec serve`: the recommendation API in the foreground (uvicorn), optionally with a private redis-server."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys

from drlrec.config import Params
from drlrec.serving.run import redis_server


def serve_stage(params: Params, host: str | None = None, port: int | None = None, with_redis: bool = False) -> None:
    """Run the API in the foreground until interrupted."""
    import uvicorn

    from drlrec.serving.app import create_app
    from drlrec.settings import load_settings

    settings = load_settings()
    token = settings.api_token
    if not token:
        token = secrets.token_urlsafe(24)
        os.environ["DRLREC_API_TOKEN"] = token
        print(f"serve: DRLREC_API_TOKEN is not set; this run's token is {token}", file=sys.stderr)
    host = host or params.serve.host
    port = params.serve.port if port is None else port
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url
        if with_redis:
            redis = stack.enter_context(redis_server())
            redis_url = redis.url
            print(f"serve: redis-server pid {redis.pid} on {redis.url}", file=sys.stderr)
        app = create_app(params, redis_url=redis_url or "", api_token=token)
        print(f"serve: http://{host}:{port} (cache: {'redis ' + redis_url if redis_url else 'in-process LRU'})",
              file=sys.stderr, flush=True)
        # uvicorn re-raises the SIGTERM it caught once it has shut down; exit normally instead, so the
        # ExitStack still stops redis-server
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)
