"""Serving benchmark: a real `drlrec serve` on 127.0.0.1 (model from a temporary MLflow registry) under wrk.

  cached:   1,000 users whose lists are in the cache, target 1,000 requests/s (24 connections x 20 ms pause)
  uncached: model inference on every request (serve.cache_ttl 0), a 100k-item DQN-LSTM (default model: params,
            random weights: the cost of a forward pass does not depend on the weights), 20,000 users,
            target 200 requests/s (12 connections x 30 ms pause)

wrk (Debian's, not wrk2) has no fixed-rate mode: each connection pauses between requests, so the offered
rate is at most connections * 1000 / (pause + latency); the achieved rate is printed. Prints p50/p95/p99,
RPS and errors. Run: python bench/serve/bench_serve.py [--duration 20] [--exploration epsilon:0.1:m50] [--retrieval scan]
(--exploration: each scenario also with serve.exploration on, after the same scenario with it off)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"


def build_bundle(folder: Path, n_items: int, n_categories: int, seed: int = 0) -> None:
    """A bundle with an n_items vocabulary: random DQN-LSTM (default ModelConfig), vocabularies, stats."""
    import torch

    from drlrec.atomic import write_json
    from drlrec.bundle import FEATURIZE_FILE, ITEMS_FILE, META_FILE, MODEL_FILE
    from drlrec.config import FeaturizeConfig, ModelConfig
    from drlrec.features.featurize import TrainGlobals
    from drlrec.features.steps import fit_train_stats
    from drlrec.features.vocab import Vocab
    from drlrec.models.dqn_lstm import DQNLSTM

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    item_raw = np.arange(1, n_items - 1, dtype=np.int64) * 3  # n_items - 2 known items (+ pad, unknown)
    category_raw = np.arange(1, n_categories - 1, dtype=np.int64) * 7
    item_vocab, category_vocab = Vocab(item_raw), Vocab(category_raw)
    item_category = np.zeros(n_items, dtype=np.int32)
    item_category[2:] = rng.integers(2, n_categories, size=n_items - 2)
    events = 500_000
    item_idx = (rng.zipf(1.3, size=events) % (n_items - 2) + 2).astype(np.int32)
    behavior = rng.choice(4, size=events, p=[0.9, 0.05, 0.03, 0.02]).astype(np.int8)
    cfg = FeaturizeConfig()
    stats = fit_train_stats(item_idx, item_category[item_idx], behavior, n_items, n_categories, cfg)
    TrainGlobals(item_vocab, category_vocab, stats).save(folder)
    # seeded weights: the same random model in every run (an ANN index's recall depends a lot on the model:
    # recall@10 at 4.2M items, IVF4096 nprobe 128, was 0.96 on one unseeded model and 0.66 on another)
    torch.manual_seed(seed)
    model = DQNLSTM(n_items, n_categories, ModelConfig(), score_with="ce")
    model.save(folder / MODEL_FILE)
    write_json(folder / META_FILE, {"model": "dqn_lstm", "n_items": n_items, "n_categories": n_categories,
                                    "note": "benchmark model: default ModelConfig, random weights"})
    write_json(folder / FEATURIZE_FILE, dataclasses.asdict(cfg))
    with open(folder / ITEMS_FILE, "wb") as fh:
        np.savez(fh, item_category=item_category, popularity=np.asarray(stats.item_count, dtype=np.int64))
    return item_vocab, category_vocab, item_category


def write_events(path: Path, users: int, per_user: int, item_vocab, category_vocab, item_category, seed: int = 1) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drlrec.schema import EVENTS_SCHEMA

    rng = np.random.default_rng(seed)
    n = users * per_user
    idx = rng.integers(2, item_vocab.size, size=n)
    table = pa.table({
        "user_id": np.repeat(np.arange(1, users + 1, dtype=np.int64), per_user),
        "item_id": item_vocab.decode(idx),
        "category_id": category_vocab.decode(item_category[idx]),
        "behavior": rng.choice(4, size=n, p=[0.9, 0.05, 0.03, 0.02]).astype(np.int8),
        "timestamp": np.tile(1512000000 + 60 * np.arange(per_user, dtype=np.int64), users),
    }, schema=EVENTS_SCHEMA)
    pq.write_table(table, path)


def start_server(params_path: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "drlrec.cli", "serve", "--params", str(params_path), "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not become ready")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def run_wrk(port: int, users: int, first: int, connections: int, delay_ms: int, duration: int) -> dict[str, float]:
    env = {**os.environ, "BENCH_USERS": str(users), "BENCH_FIRST_USER": str(first), "BENCH_DELAY_MS": str(delay_ms)}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(HERE / "load.lua"),
           f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=20, help="seconds of load per scenario")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--exploration", default="off", metavar="SETTING",
                    help="serve.exploration for both scenarios, as the exposure log writes it: off (default), "
                         "epsilon:0.1:m50 or boltzmann:t1:m50; with a setting other than off each scenario also runs "
                         "with exploration off in the same process, for the ratio")
    ap.add_argument("--retrieval", choices=("exact", "scan", "ann"), default=None,
                    help="serve.retrieval for both scenarios (default: params.yaml's): exact = model.recommend, "
                         "scan = the same top-k in one faiss pass, ann = faiss index + re-scoring")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    from drlrec.config import load_params, params_to_dict
    from drlrec.registry import register_model
    from drlrec.serving.run import free_port
    from drlrec.settings import apply_offline_env

    apply_offline_env()
    import yaml

    work = Path(tempfile.mkdtemp(prefix="drlrec-bench-serve-"))
    try:
        t0 = time.perf_counter()
        vocab, cvocab, item_category = build_bundle(work / "bundle", args.items, 2000)
        write_events(work / "events.parquet", 20_000, 20, vocab, cvocab, item_category)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        params = load_params(ROOT / "params.yaml")
        register_model(params, work / "bundle", {"metrics": {"next_item": {"ndcg_at_10": {"value": 0.0}}}},
                       split_id="bench", tracking_uri=uri, project_root=ROOT)
        print(f"setup: {args.items:,}-item bundle, 20,000 users x 20 events, registered in {uri} "
              f"({time.perf_counter() - t0:.1f}s)")
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DRLREC_API_TOKEN": TOKEN, "DRLREC_REDIS_URL": ""}
        from drlrec.serving.exploration import parse as parse_exploration

        explore = parse_exploration(args.exploration)
        settings = ["off"] if explore.mode == "off" else ["off", args.exploration]
        rows = []
        scenarios = [(*row, setting) for row in (("cached", 600, 1000, 24, 20, 1000), ("uncached", 0, 20000, 12, 30, 200))
                     for setting in settings]
        for scenario, ttl, users, connections, delay, target, setting in scenarios:
            name = scenario if setting == "off" else f"{scenario}+{setting}"
            tag = name.replace(":", "_").replace("+", "_")
            raw = params_to_dict(params)
            raw["paths"].update(events=str(work / "events.parquet"), interactions=str(work / f"{tag}-interactions.csv"),
                                exposures=str(work / f"{tag}-exposures.csv"))
            raw["serve"].update(cache_ttl=ttl, poll_seconds=0)
            if args.retrieval is not None:
                raw["serve"]["retrieval"] = args.retrieval
            if setting != "off":
                cfg = parse_exploration(setting)
                raw["serve"]["exploration"] = {"mode": cfg.mode, "epsilon": cfg.epsilon, "top_m": cfg.top_m,
                                               "temperature": cfg.temperature, "mc_samples": cfg.mc_samples}
            raw["ab"]["enabled"] = False
            params_path = work / f"{tag}.yaml"
            params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
            port = free_port()
            process = start_server(params_path, port, env, work / f"{tag}.log")
            try:
                if ttl:  # fill the cache first
                    import httpx

                    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                        for user in range(1, users + 1):
                            client.get(f"/recommendations/{user}?k=10").raise_for_status()
                run_wrk(port, users, 1, connections, delay, 3)  # warm-up
                result = run_wrk(port, users, 1, connections, delay, args.duration)
                import httpx

                stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
            finally:
                stop_server(process)
            errors = int(result["non2xx"] + result["connect_errors"] + result["read_errors"] + result["write_errors"]
                         + result["timeouts"])
            rows.append((name, target, result, errors, stats["cache"]["hit_rate"]))
        print(f"\nwrk -t1, closed loop with a per-connection pause; {args.duration}s per scenario; "
              f"one uvicorn worker; {os.cpu_count()} CPUs shared by server and wrk; "
              f"serve.retrieval {args.retrieval or params.serve.retrieval}")
        print(f"{'scenario':<34}{'target rps':>11}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'requests':>10}{'errors':>8}{'hit rate':>10}")
        for name, target, r, errors, hit in rows:
            print(f"{name:<34}{target:>11}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                  f"{r['max_ms']:>9.2f}{int(r['requests']):>10}{errors:>8}{hit:>10.3f}")
        print(json.dumps({name: {**r, "errors": errors, "target_rps": target, "cache_hit_rate": hit}
                          for name, target, r, errors, hit in rows}))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
