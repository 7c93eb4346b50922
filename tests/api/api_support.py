"""Shared pieces of the API tests (constants, params builders, a uvicorn server in a thread); the fixtures
that use them are in conftest.py. A module of its own name, so `from api_support import ...` is never
confused with another folder's conftest."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: where the session's small pipeline lives (built by the autouse fixture below, removed after the session)
PIPELINE_ROOT = Path(tempfile.mkdtemp(prefix="drlrec-api-tests-"))
ARTIFACTS = PIPELINE_ROOT / "artifacts"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: big enough that the trained model clearly beats popularity in the simulator, small enough for ~1 minute
API_PIPELINE = (
    "synth.users=2000",
    "synth.items=60000",
    "synth.categories=1500",
    "model.item_dim=32",
    "model.hidden=64",
    "model.layers=1",
    "model.fc=[64,64]",
    "train.steps=250",
    "train.batch_size=128",
    "train.eval_every=250",
    "train.checkpoint_every=250",
    "train.candidates=1024",
    "train.eval_max_events=2000",
    "simulator.threads=2",
    "simulator.calibration_max_events=5000",
)


def make_params(tmp_path: Path, **sections):
    """The project's params with the serving outputs in tmp_path, events from artifacts/ (read only),
    and `sections` replacing fields: make_params(tmp, serve={"cache_ttl": 0}, ab={"enabled": False})."""
    from drlrec.config import VariantConfig, load_params

    params = load_params(PROJECT_ROOT / "params.yaml")
    paths = dataclasses.replace(
        params.paths, events=str(ARTIFACTS / "events.parquet"), interactions=str(tmp_path / "interactions.csv"),
        exposures=str(tmp_path / "exposures.csv"), ab_report=str(tmp_path / "ab_report.json"),
        ab_predictions=str(tmp_path / "ab_predictions.json"),
    )
    params = dataclasses.replace(params, paths=paths)
    for name, changes in sections.items():
        changes = dict(changes)
        if "variants" in changes:
            changes["variants"] = tuple(v if isinstance(v, VariantConfig) else VariantConfig(**v) for v in changes["variants"])
        params = dataclasses.replace(params, **{name: dataclasses.replace(getattr(params, name), **changes)})
    return params


def write_params_yaml(params, path: Path) -> Path:
    import yaml

    from drlrec.config import params_to_dict

    path.write_text(yaml.safe_dump(params_to_dict(params), sort_keys=False))
    return path


class ServerThread:
    """A real uvicorn server on 127.0.0.1:<free port> in a thread of the test process."""

    def __init__(self, app) -> None:
        import uvicorn

        from drlrec.serving.run import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
