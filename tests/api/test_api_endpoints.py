"""Every endpoint of the service, auth, and every kind of bad input (TestClient, no Redis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from api_support import ARTIFACTS, AUTH, TOKEN, make_params

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def warm_user() -> int:
    """A user of artifacts/events.parquet with a long history."""
    events = pd.read_parquet(ARTIFACTS / "events.parquet", columns=["user_id"])
    counts = events["user_id"].value_counts()
    return int(counts.index[0])


def _no_trace(response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["models"] == {"champion": "1", "challenger": "1"}


def test_recommendations_for_a_known_user_then_cached(client, warm_user):
    first = client.get(f"/recommendations/{warm_user}", params={"k": 7})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["user_id"] == warm_user and len(body["items"]) == 7
    assert body["model_version"] == "1" and body["fallback"] is None and body["cached"] is False
    assert body["variant"] in ("champion", "challenger")
    ids = [it["item_id"] for it in body["items"]]
    assert len(set(ids)) == 7 and all(i >= 0 for i in ids)
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    second = client.get(f"/recommendations/{warm_user}", params={"k": 7}).json()
    assert second["cached"] is True and second["items"] == body["items"]
    default = client.get(f"/recommendations/{warm_user}").json()
    assert len(default["items"]) == 10


def test_exclude_removes_items(client, warm_user):
    top = [it["item_id"] for it in client.get(f"/recommendations/{warm_user}", params={"k": 5}).json()["items"]]
    excluded = client.get(f"/recommendations/{warm_user}", params={"k": 5, "exclude": ",".join(map(str, top[:3]))}).json()
    ids = [it["item_id"] for it in excluded["items"]]
    assert len(ids) == 5 and not set(ids) & set(top[:3]) and ids[:2] == top[3:5]


def test_cold_start_gets_popularity(client, bundle_dir):
    body = client.get("/recommendations/987654321", params={"k": 5}).json()
    assert body["fallback"] == "cold_start" and len(body["items"]) == 5
    with np.load(bundle_dir / "items.npz") as items:
        popularity = items["popularity"]
    assert [it["score"] for it in body["items"]] == sorted(popularity[2:], reverse=True)[:5]


@pytest.mark.parametrize(
    ("path", "code", "fragment"),
    [
        ("/recommendations/abc", 422, "user_id"),
        ("/recommendations/-1", 422, "user_id"),
        (f"/recommendations/{2**63}", 422, "user_id"),
        ("/recommendations/1?k=0", 422, "k must be between 1 and serve.max_k=100"),
        ("/recommendations/1?k=101", 422, "k must be between 1 and serve.max_k=100"),
        ("/recommendations/1?k=ten", 422, "k"),
        ("/recommendations/1?exclude=1,2,x", 422, "exclude"),
        ("/recommendations/1?exclude=-5", 422, "exclude"),
        ("/nowhere", 404, "no route"),
    ],
)
def test_bad_reads_are_4xx_with_a_message(client, path, code, fragment):
    response = client.get(path)
    assert response.status_code == code
    assert fragment in response.json()["detail"]
    _no_trace(response)


def test_interaction_needs_the_token(client):
    body = {"user_id": 5, "item_id": 6, "category_id": 7, "behavior_type": "pv"}
    missing = client.post("/interaction", json=body)
    assert missing.status_code == 401 and missing.json()["detail"] == "missing bearer token"
    wrong = client.post("/interaction", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid bearer token"
    basic = client.post("/interaction", json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert client.post("/admin/reload").status_code == 401


def test_interaction_is_logged_in_the_raw_schema(client, tmp_path):
    response = client.post("/interaction", json={"user_id": 11, "item_id": 22, "category_id": 33, "behavior_type": "buy",
                                                 "timestamp": 1512000000}, headers=AUTH)
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    client.post("/interaction", json={"user_id": 11, "item_id": 23, "category_id": 33, "behavior_type": "pv"}, headers=AUTH)
    lines = (tmp_path / "interactions.csv").read_text().splitlines()
    assert lines[0] == "11,22,33,buy,1512000000"
    assert lines[1].startswith("11,23,33,pv,") and len(lines) == 2


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        ({"user_id": 1, "item_id": 2, "category_id": 3, "behavior_type": "click"}, 422, "unknown behaviour"),
        ({"user_id": "x", "item_id": 2, "category_id": 3, "behavior_type": "pv"}, 422, "user_id"),
        ({"user_id": -1, "item_id": 2, "category_id": 3, "behavior_type": "pv"}, 422, "user_id"),
        ({"user_id": 1, "item_id": 2**63, "category_id": 3, "behavior_type": "pv"}, 422, "item_id"),
        ({"user_id": 1, "item_id": 2, "behavior_type": "pv"}, 422, "category_id: Field required"),
        ({"user_id": 1, "item_id": 2, "category_id": 3, "behavior_type": "pv", "extra": 1}, 422, "extra"),
        ({"user_id": 1, "item_id": 2, "category_id": 3, "behavior_type": "pv", "timestamp": -5}, 422, "timestamp"),
        ([1, 2, 3], 422, "body"),
    ],
)
def test_bad_interactions_are_4xx(client, tmp_path, payload, code, fragment):
    response = client.post("/interaction", json=payload, headers=AUTH)
    assert response.status_code == code
    assert fragment in response.json()["detail"]
    _no_trace(response)
    assert not (tmp_path / "interactions.csv").read_text()


def test_malformed_json_and_oversized_body(client):
    bad = client.post("/interaction", content=b'{"user_id": 1,', headers={**AUTH, "content-type": "application/json"})
    assert bad.status_code == 400 and bad.json() == {"detail": "malformed JSON body"}
    big = client.post("/interaction", content=b"{" + b" " * 20000 + b"}", headers={**AUTH, "content-type": "application/json"})
    assert big.status_code == 413 and "serve.max_body_bytes=16384" in big.json()["detail"]

    def chunks():  # no Content-Length: the size is counted while reading
        for _ in range(40):
            yield b" " * 1000

    streamed = client.post("/interaction", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert streamed.status_code == 413


def test_interaction_updates_state_and_invalidates_cache(client):
    user = 424242  # unknown: cold start until it has serve.cold_start_min_events interactions
    assert client.get(f"/recommendations/{user}").json()["fallback"] == "cold_start"
    assert client.get(f"/recommendations/{user}").json()["cached"] is True
    popular = client.get("/recommendations/987654321", params={"k": 3}).json()["items"]
    for i, it in enumerate(popular):
        r = client.post("/interaction", json={"user_id": user, "item_id": it["item_id"], "category_id": it["category_id"],
                                              "behavior_type": "pv", "timestamp": 1512100000 + 60 * i}, headers=AUTH)
        assert r.status_code == 202
    after = client.get(f"/recommendations/{user}").json()
    assert after["cached"] is False and after["fallback"] is None and after["model_version"] == "1"


def test_next_recommendation_reflects_the_interaction(client, warm_user):
    before = client.get(f"/recommendations/{warm_user}", params={"k": 10}).json()
    assert client.get(f"/recommendations/{warm_user}", params={"k": 10}).json()["cached"] is True
    tail = client.get("/recommendations/987654321", params={"k": 100}).json()["items"][-1]  # a popular item
    for b in ("pv", "cart"):
        client.post("/interaction", json={"user_id": warm_user, "item_id": tail["item_id"],
                                          "category_id": tail["category_id"], "behavior_type": b}, headers=AUTH)
    after = client.get(f"/recommendations/{warm_user}", params={"k": 10}).json()
    assert after["cached"] is False and after["items"] != before["items"]


def test_admin_reload_swaps_the_model(client, source, bundle_dir):
    same = client.post("/admin/reload", headers=AUTH)
    assert same.status_code == 200 and same.json()["changed"] == {}
    source.set("champion", "2", str(bundle_dir))
    moved = client.post("/admin/reload", headers=AUTH).json()
    assert moved["changed"]["champion"] == {"from": "1", "to": "2"}
    assert moved["versions"]["champion"] == "2"
    versions = {client.get(f"/recommendations/{u}").json()["variant"]: client.get(f"/recommendations/{u}").json()["model_version"]
                for u in range(1, 40)}
    assert versions["champion"] == "2" and versions["challenger"] == "1"


def test_metrics_and_stats(client, warm_user):
    client.get(f"/recommendations/{warm_user}")
    client.get(f"/recommendations/{warm_user}")
    client.get("/recommendations/987654321")
    client.get("/recommendations/1?k=500")
    text = client.get("/metrics").text
    for needle in (
        'drlrec_requests_total{method="GET",route="/recommendations/{user_id}",status="200"} 3.0',
        'drlrec_request_errors_total{kind="4xx",route="/recommendations/{user_id}"} 1.0',
        'drlrec_request_latency_seconds_bucket{le="0.05",route="/recommendations/{user_id}"}',
        "drlrec_cache_hit_ratio 0.333",
        'drlrec_fallbacks_total{reason="cold_start"} 1.0',
        'drlrec_model_info{alias="champion",version="1"} 1.0',
        "drlrec_redis_up 0.0",
    ):
        assert needle in text, needle
    stats = client.get("/stats").json()
    assert stats["requests"]["GET /recommendations/{user_id}"] == {"200": 3.0, "422": 1.0}
    assert stats["cache"]["lru"] == 1.0 and stats["cache"]["miss"] == 2.0
    assert stats["fallbacks"] == {"cold_start": 1.0}
    assert stats["models"] == {"champion": "1", "challenger": "1"} and stats["redis"] is None
    assert stats["latency"]["/recommendations/{user_id}"]["count"] == 4.0


def test_ab_results_endpoint(client, warm_user):
    client.get(f"/recommendations/{warm_user}")
    body = client.get("/ab/results").json()
    assert set(body["variants"]) == {"champion", "challenger"}
    assert sum(v["exposures"] for v in body["variants"].values()) == 1
    assert {"tests", "srm", "winner_by_ctr"} <= set(body)


def test_server_without_token_refuses_writes(tmp_path, source):
    from fastapi.testclient import TestClient

    from drlrec.serving.app import create_app

    app = create_app(make_params(tmp_path, serve={"poll_seconds": 0}), source=source, redis_url="", api_token="")
    with TestClient(app) as c:
        r = c.post("/interaction", json={"user_id": 1, "item_id": 2, "category_id": 3, "behavior_type": "pv"}, headers=AUTH)
        assert r.status_code == 503 and "DRLREC_API_TOKEN" in r.json()["detail"]


def test_no_model_serves_popularity_of_the_events(tmp_path):
    from fastapi.testclient import TestClient

    from drlrec.serving.app import create_app
    from drlrec.serving.model_store import BundleDirSource

    app = create_app(make_params(tmp_path, serve={"poll_seconds": 0}), source=BundleDirSource({}), redis_url="", api_token=TOKEN)
    with TestClient(app) as c:
        assert c.get("/ready").status_code == 503
        body = c.get("/recommendations/1", params={"k": 4}).json()
        assert body["fallback"] == "no_model" and body["model_version"] is None and len(body["items"]) == 4
    counts = pd.read_parquet(ARTIFACTS / "events.parquet", columns=["item_id"])["item_id"].value_counts()
    assert body["items"][0]["score"] == counts.iloc[0]


def test_errors_never_leak_a_traceback(client, warm_user):
    service = client.app.state.service

    def broken(user):
        raise RuntimeError("secret internals at /srv/x.py line 3")

    service.state.history = broken
    response = client.get(f"/recommendations/{warm_user}", params={"k": 3})
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    _no_trace(response)


def test_model_failure_falls_back_to_popularity(client, warm_user):
    model = client.app.state.service.store.get("champion")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    model.recommend_batch = broken
    for user in range(warm_user, warm_user + 40):
        r = client.get(f"/recommendations/{user}", params={"k": 3})
        assert r.status_code == 200
        if r.json()["variant"] == "champion" and r.json()["fallback"] != "cold_start":
            assert r.json()["fallback"] == "model_error"
