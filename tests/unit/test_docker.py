"""docker/: the compose file and the Dockerfile checked without a Docker engine.

Every service runs a real command (a drlrec subcommand parsed by drlrec's own parser, or the redis, MLflow
or Prefect server command parsed by that program's CLI), the URIs in its environment are the ones
settings.py reads and point at the ports the servers listen on, and the image installs exactly
requirements.lock.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from drlrec.cli import build_parser
from drlrec.config import load_params
from drlrec.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "DRLREC_REDIS_URL", "DRLREC_API_TOKEN", "DRLREC_API_URL")


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    return compose["services"]


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_compose_has_every_service_with_a_healthcheck(services) -> None:
    assert {"redis", "mlflow", "prefect-server", "worker", "api"} <= set(services)
    for name, service in services.items():
        assert isinstance(service.get("command"), list) and service["command"], name
        if service.get("restart") == "no":  # one-shot jobs (data-init) end; there is nothing to probe
            continue
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] == "CMD" and len(test) > 1, name


def test_every_command_is_a_real_drlrec_or_server_command(services) -> None:
    parser = build_parser()
    seen = set()
    for name, service in services.items():
        command = [str(part) for part in service["command"]]
        program = command[0]
        if program == "drlrec":
            args = parser.parse_args(command[1:])  # SystemExit (test error) on an unknown subcommand or flag
            assert args.command == command[1] and callable(args.handler), name
            seen.add(command[1])
        elif program == "redis-server":
            options = command[1:]
            assert all(o.startswith("--") for o in options[::2]), name  # `--directive value` pairs
            assert {"--port", "--bind"} <= set(options[::2])
        elif command[:2] == ["mlflow", "server"]:
            from mlflow.cli import server

            server.make_context("mlflow server", command[2:])  # click: raises on an unknown option
        elif command[:3] == ["prefect", "server", "start"]:
            from prefect.cli.server import server_app

            server_app.parse_args(command[2:], exit_on_error=False, print_error=False)
        else:
            pytest.fail(f"service {name} runs {shlex.join(command)}: neither drlrec nor a known server")
    assert {"deploy", "serve"} <= seen


def test_uris_ports_and_environment_agree_with_settings(services) -> None:
    settings_source = (ROOT / "src" / "drlrec" / "settings.py").read_text()
    read_by_settings = set(re.findall(r'env\.get\("([A-Z_]+)"', settings_source))
    assert set(URI_VARIABLES) <= read_by_settings

    redis_port = int(_option(services["redis"]["command"], "--port"))
    mlflow_port = int(_option(services["mlflow"]["command"], "--port"))
    prefect_port = int(_option(services["prefect-server"]["command"], "--port"))
    api_command = services["api"]["command"]
    api_port = int(_option(api_command, "--port"))
    assert api_port == load_params(ROOT / "params.yaml").serve.port
    assert _option(api_command, "--host") == "0.0.0.0"  # reachable from the other containers
    published = {name: [str(p) for p in s.get("ports", [])] for name, s in services.items()}
    for name, port in (("redis", redis_port), ("mlflow", mlflow_port), ("prefect-server", prefect_port), ("api", api_port)):
        assert f"{port}:{port}" in published[name], name
        health = " ".join(services[name]["healthcheck"]["test"])
        assert str(port) in health or "PREFECT_API_URL" in health, name

    for name in ("worker", "api"):
        env = _env(services[name])
        assert set(URI_VARIABLES) <= set(env), name
        assert all(k in read_by_settings or k.startswith(("PREFECT_", "MLFLOW_")) for k in env), name
        settings = load_settings(env)
        mlflow = urlparse(settings.mlflow_tracking_uri)
        assert (mlflow.scheme, mlflow.hostname, mlflow.port) == ("http", "mlflow", mlflow_port)
        prefect = urlparse(settings.prefect_api_url)
        assert (prefect.hostname, prefect.port, prefect.path) == ("prefect-server", prefect_port, "/api")
        redis = urlparse(settings.redis_url)
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", redis_port)
        api = urlparse(settings.api_url)
        assert (api.hostname, api.port) == ("api", api_port)
        assert settings.api_token and "DRLREC_API_TOKEN" in settings.api_token  # ${DRLREC_API_TOKEN:?...}
        depends = services[name].get("depends_on", {})
        assert {"mlflow", "redis"} <= set(depends), name

    # MLflow accepts the Host header the other containers send
    assert f"mlflow:{mlflow_port}" in _option(services["mlflow"]["command"], "--allowed-hosts").split(",")
    # the MLflow backend store lives on a volume
    store = _option(services["mlflow"]["command"], "--backend-store-uri")
    assert store.startswith("sqlite:////mlflow/") and any(v.endswith(":/mlflow") for v in services["mlflow"]["volumes"])


def test_data_and_artifacts_are_shared_volumes_where_params_expect_them(services) -> None:
    params = load_params(ROOT / "params.yaml")
    workdir = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)[-1]
    data_dir = f"{workdir}/{Path(params.paths.raw_data).parent}"
    artifacts_dir = f"{workdir}/{params.paths.artifacts}"
    for name in ("worker", "api"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(data_dir) == "data" and mounts.get(artifacts_dir) == "artifacts", name
    assert {"data", "artifacts", "mlflow"} <= set(yaml.safe_load(COMPOSE.read_text())["volumes"])


def test_dockerfile_installs_exactly_the_lock() -> None:
    text = DOCKERFILE.read_text()
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2  # multi-stage: build, runtime
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, flags=re.M)  # CPU torch unless the build arg says cu*
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert user and user[-1] not in ("root", "0")

    installs = [shlex.split(line.split("pip install", 1)[1]) for line in lines if line.startswith("RUN") and "pip install" in line]
    torch, lock, project = installs  # exactly three pip installs, in this order
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in " ".join(torch)
    assert torch[-1] == "$(grep -E '^torch==' requirements.lock)"  # torch's version from the lock, alone
    assert lock == ["-c", "requirements.lock", "-r", "requirements.lock"]
    assert project == ["--no-deps", "."]
    copies = [line for line in lines if line.startswith("COPY") and "requirements.lock" in line]
    assert copies and lines.index(copies[0]) < min(i for i, line in enumerate(lines) if "pip install" in line)

    pins = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", p) for p in pins)  # exact pins only
    assert len([p for p in pins if re.match(r"^torch==", p)]) == 1  # the grep yields one line


def test_dockerignore_keeps_data_out_and_the_build_inputs_in() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "artifacts", "mlflow.db", "mlruns"} <= ignored
    needed = {"requirements.lock", "pyproject.toml", "README.md", "src", "flows", "params.yaml", "expectations"}
    assert not needed & ignored
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied |= {token for token in line.split()[1:-1] if not token.startswith("--")}
    assert copied == needed, copied ^ needed
