"""A/B test simulated end to end: SimulatedEnv users get lists from the API, act on them through
POST /interaction, and `drlrec ab report` must find the better variant (the statistics and the pieces are in
tests/unit/test_serving_pieces.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from api_support import ARTIFACTS, AUTH, TOKEN, make_params, write_params_yaml

pytestmark = pytest.mark.filterwarnings("ignore")


def test_simulated_ab_test_finds_the_better_variant(tmp_path, source, capsys):
    """Variant `model` (the trained DQN-LSTM) against `popularity` (its popularity list), 50/50."""
    from fastapi.testclient import TestClient

    from drlrec.cli import main
    from drlrec.config import EnvConfig
    from drlrec.rl.envs import simulated_env
    from drlrec.rl.simulator import UserSimulator
    from drlrec.serving.app import create_app

    sim_path = ARTIFACTS / "simulator" / "simulator.npz"
    if not sim_path.is_file():
        pytest.skip("artifacts/simulator/simulator.npz is missing (drlrec simulate)")
    params = make_params(
        tmp_path, serve={"poll_seconds": 0},
        ab={"experiment": "model-vs-popularity", "control": "popularity", "variants": [
            {"name": "popularity", "alias": "champion", "traffic": 0.5, "policy": "popularity"},
            {"name": "model", "alias": "champion", "traffic": 0.5, "policy": "model"}]},
    )
    params_path = write_params_yaml(params, tmp_path / "params.yaml")
    bundle = source.load("champion")
    env = simulated_env(ARTIFACTS / "features", ARTIFACTS / "events.parquet", UserSimulator.load(sim_path), EnvConfig(k=10, max_steps=5))
    rng = np.random.default_rng(7)
    users = np.arange(50_000_000, 50_000_120)
    session = env.start_batch(len(users), rng)
    states = env.batch_states(session)
    now = int(time.time())
    app = create_app(params, source=source, redis_url="", api_token=TOKEN)
    with TestClient(app) as client:
        # each simulated user's start state becomes their history in the service
        raw_items = bundle.item_vocab.decode(states.item_seq)
        raw_categories = bundle.category_vocab.decode(states.category_seq)
        for row, user in enumerate(users):
            seq_len = states.item_seq.shape[1]
            for pos in range(seq_len):
                if raw_items[row, pos] < 0 or raw_categories[row, pos] < 0:
                    continue  # padding or an item unknown to the vocabulary
                r = client.post("/interaction", headers=AUTH, json={
                    "user_id": int(user), "item_id": int(raw_items[row, pos]), "category_id": int(raw_categories[row, pos]),
                    "behavior_type": ("pv", "cart", "fav", "buy")[states.behavior_seq[row, pos] - 1],
                    "timestamp": now - 60 * (seq_len - pos)})
                assert r.status_code == 202
        while not session.finished.all():
            lists = np.zeros((len(users), 10), dtype=np.int64)
            for row in np.flatnonzero(~session.finished):
                body = client.get(f"/recommendations/{users[row]}", params={"k": 10}).json()
                ids = bundle.item_vocab.encode(np.array([it["item_id"] for it in body["items"]], dtype=np.int64))
                lists[row, : len(ids)] = ids
            out = env.step_batch(session, lists, rng)
            for row in np.flatnonzero(out.item >= 0):
                item = int(out.item[row])
                r = client.post("/interaction", headers=AUTH, json={
                    "user_id": int(users[row]), "item_id": int(bundle.item_vocab.decode(item)),
                    "category_id": int(bundle.category_vocab.decode(bundle.item_category[item])),
                    "behavior_type": ("pv", "cart", "fav", "buy")[int(out.behavior[row])]})
                assert r.status_code == 202
        results = client.get("/ab/results").json()
    assert main(["ab", "report", "--params", str(params_path)]) == 0
    printed = capsys.readouterr().out
    print(printed)
    report = json.loads((tmp_path / "ab_report.json").read_text())
    assert report["winner_by_ctr"] == "model", printed
    ctr = next(t for t in report["tests"] if t["metric"] == "ctr")
    assert ctr["variant"] == "model" and ctr["significant"] and ctr["difference"] > 0
    assert report["srm"]["mismatch"] is False
    assert results["variants"]["model"]["exposures"] == report["variants"]["model"]["exposures"]
    assert "better variant by CTR: model" in printed
