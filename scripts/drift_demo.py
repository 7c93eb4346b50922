"""`make drift-demo`: serving -> a shifted period replayed through POST /interaction -> the monitoring flow
detects drift -> the raw data gets a new DVC version -> retrain -> the registry gate picks the champion.

Everything happens in a private workspace (default artifacts/drift-demo/, a git + DVC repository of its
own, with its own MLflow store and Prefect home), so the project's data, registry and history are untouched.
The sizes are small so the whole demo runs in a few minutes on 2 CPU cores; the figures are the demo's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: demo-sized pipeline (the figures are the demo's, not the project's)
DEMO_OVERRIDES = (
    "base.progress=false",
    "synth.users=800",
    "synth.items=8000",
    "synth.categories=300",
    "model.hidden=64",
    "model.layers=1",
    "model.fc=[128,64]",
    "train.steps=600",
    "train.eval_every=150",
    "train.checkpoint_every=150",
    "train.eval_max_events=1500",
    "train.candidates=1024",
    "evaluate.bootstrap=100",
    "evaluate.max_events=5000",
    "serve.poll_seconds=2",
    "ab.enabled=false",
    "monitor.min_rows=500",
)


def say(step: str, text: str = "") -> None:
    print(f"\n=== {step}" + (f": {text}" if text else ""), flush=True)


def sh(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"drift-demo: {' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace(root: Path) -> Path:
    """A fresh git + DVC repository with a demo params.yaml whose paths all live inside it."""
    import yaml

    from drlrec.config import apply_overrides

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["paths"] = {k: str(PROJECT / v) if k == "expectations" else str(root / v) for k, v in raw["paths"].items()}
    raw = apply_overrides(raw, list(DEMO_OVERRIDES))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    sh(["git", "init", "-q"], root)
    sh(["git", "config", "user.email", "drift-demo@drlrec.local"], root)
    sh(["git", "config", "user.name", "drlrec drift demo"], root)
    sh([str(BIN / "dvc"), "init", "-q"], root)
    sh([str(BIN / "dvc"), "config", "core.analytics", "false"], root)
    sh([str(BIN / "dvc"), "config", "core.check_update", "false"], root)
    (root / ".gitignore").write_text("/artifacts/\n/mlflow.db\n/mlartifacts/\n/.prefect/\n/*.log\n")
    return root / "params.yaml"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"drift-demo: the API exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"drift-demo: the API at {url} was not ready after {timeout:.0f} s")


def replay(url: str, token: str, events, workers: int = 8) -> dict[str, int]:
    """POST every event (raw schema, logged timestamp kept) and ask for a user's list before every 4th."""
    import httpx

    from drlrec.schema import BEHAVIORS

    rows = list(events.itertuples(index=False))
    headers = {"Authorization": f"Bearer {token}"}
    counts = {"posted": 0, "failed": 0, "lists": 0}

    def send(chunk: list) -> tuple[int, int, int]:
        posted = failed = lists = 0
        with httpx.Client(base_url=url, timeout=30) as client:
            for i, e in enumerate(chunk):
                if i % 4 == 0:
                    lists += client.get(f"/recommendations/{e.user_id}", params={"k": 10}).status_code == 200
                body = {"user_id": int(e.user_id), "item_id": int(e.item_id), "category_id": int(e.category_id),
                        "behavior_type": BEHAVIORS[int(e.behavior)], "timestamp": int(e.timestamp)}  # fmt: skip
                ok = client.post("/interaction", json=body, headers=headers).status_code == 202
                posted += ok
                failed += not ok
        return posted, failed, lists

    # each worker replays whole users, in time order, so every user's online state sees its events in order
    by_user: dict[int, list] = {}
    for e in rows:
        by_user.setdefault(int(e.user_id), []).append(e)
    chunks: list[list] = [[] for _ in range(workers)]
    for i, user_rows in enumerate(by_user.values()):
        chunks[i % workers].extend(user_rows)
    with ThreadPoolExecutor(workers) as pool:
        for posted, failed, lists in pool.map(send, chunks):
            counts["posted"] += posted
            counts["failed"] += failed
            counts["lists"] += lists
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=PROJECT / "artifacts" / "drift-demo")
    args = parser.parse_args(argv)
    started = time.time()
    root = args.workspace.resolve()
    params_file = workspace(root)
    env = os.environ.copy()
    env |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DRLREC_API_TOKEN": "drift-demo-token",
    }
    env.pop("PREFECT_API_URL", None)  # the demo's retrain runs as a subflow of the monitoring flow
    os.environ.update(env)
    os.environ.pop("PREFECT_API_URL", None)
    os.chdir(root)
    from drlrec import registry
    from drlrec.config import load_params
    from drlrec.monitoring import sort_events
    from drlrec.stages import synth_stage

    params = load_params(params_file)
    say("1/6 data", f"workspace {root} (own git + DVC repository, MLflow store and Prefect home)")
    synth_stage(params)
    sh([str(BIN / "dvc"), "add", "data"], root)
    sh(["git", "add", "data.dvc", ".gitignore", "params.yaml", ".dvc"], root)
    sh(["git", "commit", "-q", "-m", "data: the generated training log"], root)
    print(f"generated {params.paths.raw_data}; dvc add data; git commit (data.dvc)")

    say("2/6 first champion", "training flow (ingest -> validate -> featurize -> train -> evaluate -> register)")
    from flows.training_flow import training_flow

    first = training_flow(str(params_file))["register"]
    print(f"registered version {first['version']}: {first['metric']} = {first['challenger_value']:.4f}; {first['reason']}")

    say("3/6 serving", "drlrec serve on the champion")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api_log = open(root / "serve.log", "w")
    api = subprocess.Popen(
        [str(BIN / "drlrec"), "serve", "--params", str(params_file), "--port", str(port)],
        cwd=root, env=env, stdout=api_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_ready(url, api)
        import httpx

        print(f"API ready at {url}: {httpx.get(f'{url}/health', timeout=5).json()}")
        say("4/6 shifted period", f"drlrec synth --drift ({params.drift}), replayed through POST /interaction")
        shifted = synth_stage(params, out=root / "artifacts" / "shifted.csv", drift=True)
        from drlrec.data.logs import read_interactions

        events = sort_events(read_interactions(shifted))
        counts = replay(url, env["DRLREC_API_TOKEN"], events)
        print(f"replayed {counts['posted']:,} interactions ({counts['failed']} failed), served {counts['lists']:,} lists")
        print(f"interaction log {params.paths.interactions}: {sum(1 for _ in open(params.paths.interactions)):,} rows")

        say("5/6 monitoring flow", "Evidently drift report; on drift: append + dvc add + git commit, retrain, gate")
        from flows.monitoring_flow import monitoring_flow

        out = monitoring_flow(str(params_file))
        result = out["result"]
        print(f"decision: {result['decision']}")
        print(f"action: {out['action']}")
        if out.get("retrain"):
            decision = out["retrain"]["register"]
            print(f"data: {out['appended']['rows']:,} interactions appended; {out['versioned']}")
            print(f"retrained on the window {out['training_window']} ({out['retrain']['mode']})")
            print(
                f"registry gate on the new data ({decision['metric']}, test split of the slid window): "
                f"new model v{decision['version']} {decision['challenger_value']:.4f} vs champion "
                f"v{decision['champion_version']} {decision['champion_value']:.4f} "
                f"({decision['champion_value_source']}) -> {'PROMOTED' if decision['promoted'] else 'kept out'}"
            )
        print("git log of the workspace:\n" + sh(["git", "log", "--oneline"], root).rstrip())

        say("6/6 serving after the gate")
        champion = registry.alias_version("champion", env["MLFLOW_TRACKING_URI"])
        deadline = time.time() + 30
        version = None
        while time.time() < deadline:
            body = httpx.get(f"{url}/recommendations/{int(events['user_id'].iloc[0])}", timeout=10).json()
            version = str(body.get("model_version"))
            if version == champion:
                break
            time.sleep(1)
        print(f"registry @champion = v{champion}; the API now answers with model_version {version}")
        print(f"\nOpen the drift report: file://{out['report']}")
        print(f"(decision: {Path(out['report']).with_name('decision.txt')}; JSON: {Path(out['report']).with_name('report.json')})")
        print(f"drift demo done in {time.time() - started:.0f} s")
    finally:
        api.terminate()
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
        api_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
