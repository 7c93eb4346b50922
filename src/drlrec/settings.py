"""Settings that come from the environment only: server URIs, tokens and the shared-data location."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variables that keep every library offline; applied by `apply_offline_env`.
OFFLINE_ENV: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
}


@dataclass(frozen=True)
class Settings:
    """Runtime settings read from the environment (never from params.yaml)."""

    mlflow_tracking_uri: str | None
    """MLFLOW_TRACKING_URI; None means the project's local SQLite store."""
    prefect_api_url: str | None
    """PREFECT_API_URL; None means Prefect's ephemeral local API."""
    redis_url: str | None
    """DRLREC_REDIS_URL, e.g. redis://127.0.0.1:6379/0; None means the in-process cache."""
    api_token: str | None
    """DRLREC_API_TOKEN: bearer token for POST /interaction and /admin routes."""
    api_url: str
    """DRLREC_API_URL: where clients reach the serving API."""
    shared_data_dir: Path
    """DRLREC_SHARED_DATA: folder with the real Taobao slices (default ../shared/data)."""
    require_shared_data: bool
    """DRLREC_REQUIRE_SHARED_DATA=1 turns a missing shared-data folder from a skip into a failure."""


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: os.environ)."""
    env = dict(os.environ if env is None else env)
    project_root = Path(__file__).resolve().parents[2]
    return Settings(
        mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
        prefect_api_url=env.get("PREFECT_API_URL") or None,
        redis_url=env.get("DRLREC_REDIS_URL") or None,
        api_token=env.get("DRLREC_API_TOKEN") or None,
        api_url=env.get("DRLREC_API_URL", "http://127.0.0.1:8000"),
        shared_data_dir=Path(env.get("DRLREC_SHARED_DATA", project_root.parent / "shared" / "data")),
        require_shared_data=env.get("DRLREC_REQUIRE_SHARED_DATA", "") not in ("", "0", "false"),
    )


def apply_offline_env() -> None:
    """Turn telemetry and update checks off for every library we call (keeps user-set values)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
