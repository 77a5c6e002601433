"""POST /api/v1/events: JSON arrays, NDJSON and gzip; row-by-row rejections; idempotency; 2xx only
after the commit; a full queue answers 429 with Retry-After and drops nothing."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from sortition.server.ingest import GroupCommitter, Overloaded, validate
from sortition.store import EventStore


def assignment(i: int, **extra) -> dict:
    return {
        "featureFlag": "f",
        "allocation": "a",
        "experiment": "f-a",
        "variation": "on",
        "subject": f"s{i}",
        "timestamp": "2024-05-01T12:00:00Z",
        "subjectAttributes": {"country": "FR"},
        **extra,
    }


def outcome(i: int, **extra) -> dict:
    return {
        "subject": f"s{i}",
        "metric": "revenue",
        "value": 1.5,
        "timestamp": "2024-05-02T00:00:00Z",
        **extra,
    }


def bandit(i: int) -> dict:
    return {
        "flagKey": "b",
        "banditKey": "bk",
        "subject": f"s{i}",
        "action": "x",
        "actionProbability": 0.5,
        "timestamp": "2024-05-01T12:00:00Z",
        "modelVersion": "1",
    }


def _post(client, keys, body: bytes, **headers):
    return client.post(
        "/api/v1/events", content=body, headers={"Authorization": f"Bearer {keys.ingest}", **headers}
    )


def _counts(client) -> dict:
    return client.app.state.sortition.store.counts()


def test_array_ndjson_and_gzip_are_stored(app_client):
    client, keys, _ = app_client
    array = json.dumps([assignment(1), outcome(1), bandit(1)]).encode()
    answer = _post(client, keys, array)
    assert answer.status_code == 200 and answer.json() == {"received": 3, "accepted": 3, "rejected": []}
    ndjson = "\n".join(json.dumps(e) for e in (assignment(2), outcome(2))).encode()
    assert _post(client, keys, ndjson, **{"Content-Type": "application/x-ndjson"}).json()["accepted"] == 2
    zipped = gzip.compress(json.dumps([assignment(3)]).encode())
    assert _post(client, keys, zipped, **{"Content-Encoding": "gzip"}).json()["accepted"] == 1
    assert _counts(client) == {"assignment": 3, "bandit": 1, "outcome": 2, "configuration": 1}


def test_bad_rows_are_listed_and_good_rows_stored(app_client):
    client, keys, _ = app_client
    rows = [
        assignment(1),
        {"featureFlag": "f", "subject": "x"},
        outcome(2, value="lots"),
        17,
        {"hello": 1},
        outcome(3),
    ]
    answer = _post(client, keys, json.dumps(rows).encode()).json()
    assert answer["received"] == 6 and answer["accepted"] == 2
    reasons = {r["index"]: r["reason"] for r in answer["rejected"]}
    assert set(reasons) == {1, 2, 3, 4}
    assert "'variation'" in reasons[1] and "'value'" in reasons[2] and "lots" in reasons[2]
    assert "JSON object" in reasons[3] and "unknown event kind" in reasons[4]
    assert _counts(client)["assignment"] == 1 and _counts(client)["outcome"] == 1


def test_unreadable_bodies_are_refused_whole(app_client):
    client, keys, _ = app_client
    for body, words in ((b"[{", "not valid JSON"), (b"", "empty"), (b'{"a": 1}\n{oops', "line 2")):
        answer = _post(client, keys, body)
        assert answer.status_code == 400 and words in answer.json()["error"], (body, answer.text)
    answer = _post(client, keys, b"\x1f\x8bnot-gzip", **{"Content-Encoding": "gzip"})
    assert answer.status_code == 400 and "gzip" in answer.json()["error"]
    assert _counts(client)["assignment"] == 0


def test_idempotent_by_event_id_and_by_content(app_client):
    client, keys, _ = app_client
    with_ids = [assignment(1, eventId="e1"), assignment(2, eventId="e2")]
    without = [outcome(5), outcome(6)]
    for _ in range(3):
        assert _post(client, keys, json.dumps(with_ids + without).encode()).status_code == 200
    counts = _counts(client)
    assert counts["assignment"] == 2 and counts["outcome"] == 2
    metrics = client.get("/metrics").text
    assert "sortition_events_deduplicated_total 8.0" in metrics
    assert 'sortition_events_accepted_total{kind="assignment"} 6.0' in metrics


def test_full_queue_answers_429_and_nothing_is_lost(tmp_path):
    store = EventStore(str(tmp_path / "q.duckdb"))
    committer = GroupCommitter(store, max_pending=10, max_batch=1000)
    rows = validate([assignment(i) for i in range(8)]).rows

    async def scenario() -> None:
        first = asyncio.ensure_future(committer.submit(rows, 8))  # queued: the writer is not started
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await committer.submit(validate([assignment(100 + i) for i in range(5)]).rows, 5)
        assert refused.value.retry_after >= 1
        assert not first.done()  # not acknowledged before the commit
        committer.start()
        await asyncio.wait_for(first, 10)

    asyncio.run(scenario())
    committer.stop()
    assert store.counts()["assignment"] == 8
    store.close()


def test_http_429_carries_retry_after(tmp_path):
    from starlette.testclient import TestClient

    from sortition.server import Settings, create_app
    from tests.server.conftest import prepare

    location = str(tmp_path / "small.duckdb")
    keys = prepare(location)
    with TestClient(create_app(location, Settings(max_pending=5))) as client:
        answer = _post(client, keys, json.dumps([assignment(i) for i in range(6)]).encode())
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
        assert "sortition_events_overloaded_requests_total 1.0" in client.get("/metrics").text
        assert _post(client, keys, json.dumps([assignment(i) for i in range(5)]).encode()).status_code == 200
