"""serve.exploration through the API: every exposure logs the shown items' slot propensities, the policy,
the exploration setting and the state the model saw; a cached list still explores per request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from api_support import ARTIFACTS, PROJECT_ROOT, TOKEN, make_params

pytestmark = pytest.mark.filterwarnings("ignore")


def warm_users(n: int) -> list[int]:
    events = pd.read_parquet(ARTIFACTS / "events.parquet", columns=["user_id"])
    return [int(u) for u in events["user_id"].value_counts().index[:n]]


def serve(tmp_path, source, exploration: dict):
    from fastapi.testclient import TestClient

    from drlrec.config import ExplorationConfig
    from drlrec.serving.app import create_app

    params = make_params(tmp_path, serve={"poll_seconds": 0, "exploration": ExplorationConfig(**exploration)},
                         ab={"enabled": False})
    return TestClient(create_app(params, source=source, redis_url="", api_token=TOKEN), raise_server_exceptions=False)


def test_epsilon_exploration_logs_propensities_and_the_state(tmp_path, source, bundle_dir) -> None:
    from drlrec.bundle import load_bundle
    from drlrec.data.logs import read_exposures
    from drlrec.serving.recommender import ServingModel
    from drlrec.serving.state import History

    users = warm_users(4)
    with serve(tmp_path, source, {"mode": "epsilon", "epsilon": 0.3, "top_m": 20}) as client:
        bodies = [client.get(f"/recommendations/{u}", params={"k": 5}).json() for u in users for _ in range(10)]
    assert all(len(b["items"]) == 5 for b in bodies) and sum(b["cached"] for b in bodies) >= 30  # cache hits explore too
    log = read_exposures(tmp_path / "exposures.csv")
    assert len(log) == 40 and set(log["exploration"]) == {"epsilon:0.3:m20"} and set(log["policy"]) == {"model"}
    serving = ServingModel(load_bundle(bundle_dir), "check")
    explored = 0
    for row in log.itertuples():
        state = [np.array(row_part.split(), dtype=np.int64) for row_part in
                 (row.state_items, row.state_categories, row.state_behaviors, row.state_timestamps)]
        history = History(*state, int(row.history_total))
        assert history.total >= len(history.item_id) > 0
        top = serving.recommend(history, 20, []).item_id.tolist()  # the state logged gives the list ranked
        shown = [int(i) for i in row.items.split()]
        propensity = np.array(row.propensities.split(), dtype=np.float64)
        expected = [0.7 if top.index(item) == slot else 0.3 / 15 for slot, item in enumerate(shown)]
        np.testing.assert_allclose(propensity, expected, rtol=1e-5)
        replaced = sum(top.index(item) != slot for slot, item in enumerate(shown))
        whole = 0.7 ** (5 - replaced) * 0.3**replaced * np.prod([1 / (15 - i) for i in range(replaced)])
        assert float(row.list_propensity) == pytest.approx(whole, rel=1e-5)
        explored += sum(top.index(item) != slot for slot, item in enumerate(shown))
    assert 0.15 < explored / (40 * 5) < 0.45  # about epsilon of the slots show an item outside the greedy list


def test_without_exploration_the_log_says_so(tmp_path, source) -> None:
    from drlrec.data.logs import read_exposures

    user = warm_users(1)[0]
    with serve(tmp_path, source, {"mode": "off"}) as client:
        first = client.get(f"/recommendations/{user}", params={"k": 5}).json()
        second = client.get(f"/recommendations/{user}", params={"k": 5}).json()
        cold = client.get("/recommendations/999999999", params={"k": 5}).json()
    assert first["items"] == second["items"] and second["cached"] and cold["fallback"] == "cold_start"
    log = read_exposures(tmp_path / "exposures.csv")
    assert log["exploration"].tolist() == ["off"] * 3 and log["policy"].tolist() == ["model", "model", "popularity"]
    assert log["propensities"].iloc[0] == "1 1 1 1 1"
    assert int(log["history_total"].iloc[2]) == 0 and log["state_items"].iloc[2] == ""


def greedy_click_logs(tmp_path, source, bundle_dir, users: int = 6, rounds: int = 15) -> None:
    """Serve with epsilon 0.3 exploration through the API (the service's RNG is seeded by base.seed), one
    list per 100 s, and write interactions where users click exactly the items the greedy list puts at that
    slot: the logged CTR is about 0.7 and the greedy list's true CTR is 1.0."""
    from drlrec.bundle import load_bundle
    from drlrec.data.logs import EXPOSURE_COLUMNS, read_exposures
    from drlrec.ope_logs import logged_histories
    from drlrec.serving.recommender import ServingModel

    ids = warm_users(users)
    with serve(tmp_path, source, {"mode": "epsilon", "epsilon": 0.3, "top_m": 20}) as client:
        for _ in range(rounds):
            for u in ids:
                assert client.get(f"/recommendations/{u}", params={"k": 5}).status_code == 200
    log = read_exposures(tmp_path / "exposures.csv")
    log["served_at"] = 1_600_000_000 + 100.0 * np.arange(len(log))  # one list per 100 s: unambiguous attribution
    log[list(EXPOSURE_COLUMNS)].to_csv(tmp_path / "exposures.csv", index=False)
    serving = ServingModel(load_bundle(bundle_dir), "check")
    clicks = []
    for row, history in zip(log.itertuples(), logged_histories(log), strict=True):
        greedy = serving.recommend(history, 5, []).item_id.tolist()
        for slot, item in enumerate(int(i) for i in row.items.split()):
            if greedy[slot] == item:
                clicks.append(f"{row.user_id},{item},1,pv,{int(row.served_at) + 1}")
    (tmp_path / "interactions.csv").write_text("\n".join(clicks) + "\n")


@pytest.fixture(scope="module")
def click_logs(tmp_path_factory, bundle_dir):
    """greedy_click_logs once for the module: the folder holding exposures.csv and interactions.csv."""
    from drlrec.serving.model_store import BundleDirSource

    folder = tmp_path_factory.mktemp("greedy-click-logs")
    greedy_click_logs(folder, BundleDirSource({a: ("1", str(bundle_dir)) for a in ("champion", "challenger")}), bundle_dir)
    return folder


def copy_logs(src, dst) -> None:
    import shutil

    for name in ("exposures.csv", "interactions.csv"):
        shutil.copy(src / name, dst / name)


def test_ope_recovers_the_greedy_lists_ctr_from_epsilon_logs_and_refuses_unsupported_ones(tmp_path, source, bundle_dir,
                                                                                          click_logs) -> None:
    """On greedy_click_logs, IPS, SNIPS and DR recover the greedy candidate's (the same model's) true CTR
    of 1.0 from logs whose observed CTR is about 0.7. Logs without exploration refuse a candidate that
    explores, with the reason."""
    from drlrec.bundle import load_bundle
    from drlrec.errors import InputError
    from drlrec.stages import ope_stage

    users = warm_users(6)
    copy_logs(click_logs, tmp_path)
    params = make_params(tmp_path)
    result = ope_stage(params, "challenger", logs=str(tmp_path / "exposures.csv"), out_dir=str(tmp_path / "ope"),
                       tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", loader=lambda ref: load_bundle(bundle_dir))
    click = result["click"]["estimates"]
    assert result["n_lists"] == 90 and result["n_impressions"] == 450 and result["unsupported_mass"] == 0.0
    assert 0.55 < click["observed"]["value"] < 0.85
    assert click["snips"]["value"] == pytest.approx(1.0)
    for name in ("ips", "dr"):
        assert click[name]["ci_low"] <= 1.0 <= click[name]["ci_high"] and abs(click[name]["value"] - 1.0) < 0.15, (name, click[name])
    assert result["click"]["dr_minus_observed"]["ci_low"] > 0  # the greedy list beats its own exploration
    assert (tmp_path / "ope" / "ope-challenger.md").read_text().count("| click |") == 5
    whole = ope_stage(params, "challenger", logs=str(tmp_path / "exposures.csv"), out_dir=str(tmp_path / "ope"),
                      tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", loader=lambda ref: load_bundle(bundle_dir),
                      weights="list")["click"]["estimates"]
    assert whole["ips"]["ci_low"] <= 1.0 <= whole["ips"]["ci_high"] and whole["snips"]["value"] == pytest.approx(1.0)
    assert whole["ips"]["ess"] < click["ips"]["ess"]  # whole-list weights: fewer effective samples

    with serve(tmp_path / "off", source, {"mode": "off"}) as client:
        for u in users:
            client.get(f"/recommendations/{u}", params={"k": 5})
    with pytest.raises(InputError, match="without exploration"):
        ope_stage(params, "challenger", logs=str(tmp_path / "off" / "exposures.csv"), candidate_exploration="epsilon:0.3:m20",
                  out_dir=str(tmp_path / "ope"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  loader=lambda ref: load_bundle(bundle_dir))


def test_ope_bad_input_is_a_one_line_error(tmp_path, bundle_dir, monkeypatch, capsys) -> None:
    """No log, an empty log, a log without propensities (an older drlrec's), a log of another catalogue:
    each a one-line InputError, and `drlrec ope` exits non-zero with one line."""
    from drlrec.bundle import load_bundle
    from drlrec.cli import main
    from drlrec.data.logs import LEGACY_EXPOSURE_COLUMNS, ExposureLog
    from drlrec.errors import InputError
    from drlrec.serving.state import History
    from drlrec.stages import ope_stage

    params = make_params(tmp_path)

    def run(path):
        return ope_stage(params, "challenger", logs=str(path), out_dir=str(tmp_path / "ope"),
                         tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", loader=lambda ref: load_bundle(bundle_dir))

    with pytest.raises(InputError, match="no exposure log"):
        run(tmp_path / "absent.csv")
    ExposureLog(tmp_path / "empty.csv").close()
    with pytest.raises(InputError, match="no model-ranked list"):
        run(tmp_path / "empty.csv")
    (tmp_path / "legacy.csv").write_text(",".join(LEGACY_EXPOSURE_COLUMNS) + "\n1600000000.0,5,champion,champion,1,,0,11 12 13\n")
    with pytest.raises(InputError, match="no model-ranked list"):
        run(tmp_path / "legacy.csv")
    other = ExposureLog(tmp_path / "other.csv")
    history = History(np.array([10**12, 10**12 + 1]), np.array([7, 7]), np.array([0, 0]), np.array([1, 2]), 2)
    for t in range(3):
        other.append(1600000000.0 + t, 5, "champion", "champion", "1", "", False, [10**12 + 5, 10**12 + 6], policy="model",
                     exploration="epsilon:0.1:m20", propensities=[0.9, 0.005], history=history)
    other.close()
    with pytest.raises(InputError, match="not in the candidate's vocabulary"):
        run(tmp_path / "other.csv")

    monkeypatch.chdir(tmp_path)
    code = main(["ope", "--params", str(PROJECT_ROOT / "params.yaml"), "--policy", "challenger", "--logs", str(tmp_path / "absent.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "no exposure log" in err[0]


def test_ope_gate_on_fixed_seed_logs_blocks_a_worse_challenger_and_promotes_a_better_one(tmp_path, bundle_dir,
                                                                                         click_logs) -> None:
    """register.ope_gate with the real estimate on greedy_click_logs: a challenger that shows only
    explored items (true CTR 0) is blocked; the greedy one (true CTR 1.0, logged 0.7) is promoted."""
    import dataclasses

    from drlrec.bundle import load_bundle
    from drlrec.ope_logs import estimate_policy, ope_gate
    from drlrec.registry import alias_version, register_model

    copy_logs(click_logs, tmp_path)
    params = make_params(tmp_path)
    params = dataclasses.replace(params, register=dataclasses.replace(params.register, ope_gate=True))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def check(candidate_exploration: str):
        def run():
            result = estimate_policy(params, load_bundle(bundle_dir), "challenger", candidate_exploration=candidate_exploration,
                                     logger_loader=lambda ref: load_bundle(bundle_dir))
            return ope_gate(result, "click", params.register.ope_margin)
        return run

    def metrics(value: float) -> dict:
        return {"metrics": {"next_item": {"ndcg_at_10": {"value": value}}}}

    first = register_model(params, bundle_dir, metrics(0.10), split_id="s", tracking_uri=store, project_root=PROJECT_ROOT)
    assert first["promoted"]
    worse = register_model(params, bundle_dir, metrics(0.20), split_id="s", tracking_uri=store, project_root=PROJECT_ROOT,
                           ope_check=check("epsilon:1:m20"))
    assert not worse["promoted"] and "OPE gate: DR click lower bound" in worse["reason"] and worse["ope_dr"] < 0.05
    better = register_model(params, bundle_dir, metrics(0.20), split_id="s", tracking_uri=store, project_root=PROJECT_ROOT,
                            ope_check=check("off"))
    assert better["promoted"] and better["ope_dr_ci_low"] > better["ope_observed"] > 0.5
    assert alias_version("champion", store) == better["version"]


def test_ab_report_shows_opes_prediction_per_arm_beside_the_observed_values(tmp_path, source, bundle_dir, click_logs,
                                                                            capsys) -> None:
    """`drlrec ab predict` before the test: on epsilon logs where a list is clicked only when it is the
    greedy list (logged list CTR about 0.7^5), both model arms (the greedy model) are predicted at a list
    CTR of 1.0 and the popularity arm gets a reason. The A/B test then serves the greedy lists, users
    click each one, and the report shows every arm's prediction beside its observed CTR (1.0, inside)."""
    import json

    from fastapi.testclient import TestClient

    from drlrec.bundle import load_bundle
    from drlrec.data.logs import read_exposures
    from drlrec.ope_logs import logged_histories
    from drlrec.serving.app import create_app
    from drlrec.serving.recommender import ServingModel
    from drlrec.stages import ab_predict_stage, ab_report_stage

    before = tmp_path / "before"
    before.mkdir()
    log = read_exposures(click_logs / "exposures.csv")
    serving = ServingModel(load_bundle(bundle_dir), "check")
    rows = []
    for row, history in zip(log.itertuples(), logged_histories(log), strict=True):
        shown = [int(i) for i in row.items.split()]
        if shown == serving.recommend(history, 5, []).item_id.tolist():
            rows.append(f"{row.user_id},{shown[0]},1,pv,{int(row.served_at) + 1}")
    assert 5 <= len(rows) <= 60  # some lists are the greedy one, most are not
    (before / "interactions.csv").write_text("\n".join(rows) + "\n")
    variants = [{"name": "champion", "alias": "champion", "traffic": 0.45},
                {"name": "challenger", "alias": "challenger", "traffic": 0.45},
                {"name": "baseline", "alias": "champion", "traffic": 0.1, "policy": "popularity"}]
    params = make_params(tmp_path, serve={"poll_seconds": 0}, ab={"variants": variants})
    predicted = ab_predict_stage(params, logs=str(click_logs / "exposures.csv"), interactions=str(before / "interactions.csv"),
                                 loader=lambda ref: load_bundle(bundle_dir, version="1"))  # the version the source serves
    assert "OPE prediction per arm" in capsys.readouterr().out
    saved = json.loads((tmp_path / "ab_predictions.json").read_text())
    assert saved["n_lists"] == 90 and saved["arm_exploration"] == "off"
    for name in ("champion", "challenger"):
        click = predicted["variants"][name]["click"]["estimates"]
        assert click["observed"]["value"] == pytest.approx(len(rows) / 90)
        assert click["snips"]["value"] == pytest.approx(1.0) and click["dr"]["ci_low"] <= 1.0 <= click["dr"]["ci_high"]
        assert click["dr"]["ci_low"] > click["observed"]["value"]  # the greedy arm is predicted above the logs
    assert "popularity arm" in predicted["variants"]["baseline"]["reason"]

    # the test itself: greedy lists (exploration off), every list clicked on its first item
    with TestClient(create_app(params, source=source, redis_url="", api_token=TOKEN), raise_server_exceptions=False) as client:
        for u in warm_users(6):
            assert client.get(f"/recommendations/{u}", params={"k": 5}).status_code == 200
    served = read_exposures(tmp_path / "exposures.csv")
    clicks = [f"{r.user_id},{r.items.split()[0]},1,pv,{int(r.served_at) + 1}" for r in served.itertuples()]
    (tmp_path / "interactions.csv").write_text("\n".join(clicks) + "\n")
    report = ab_report_stage(params)
    text = capsys.readouterr().out
    assert "OPE prediction before the test" in text and "no prediction: a popularity arm" in text
    for name, row in report["variants"].items():
        if name == "baseline" or not row["exposures"]:
            continue
        assert row["ctr"] == 1.0 and row["predicted"]["ctr_inside"] and row["predicted"]["version_matches"]
        assert row["predicted"]["ctr_ci"][0] <= 1.0 <= row["predicted"]["ctr_ci"][1]
    assert any(report["variants"][n]["exposures"] for n in ("champion", "challenger"))
    assert report["prediction"]["n_lists"] == 90
