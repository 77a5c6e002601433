"""HttpEventLogger's own rules: ids for dedup, retries with backoff on 429/5xx/network errors, a
non-retryable answer drops the batch with its reason, a memory bound that says what it dropped."""

from __future__ import annotations

import json
import warnings

import httpx
import pytest

from sortition.store import HttpEventLogger

EVENT = {"featureFlag": "f", "variation": "on", "subject": "s", "timestamp": "2024-05-01T00:00:00Z"}


def _logger(handler, **kw) -> HttpEventLogger:
    options = {"flush_interval": 0.01, "backoff": (0.001, 0.01), **kw}
    return HttpEventLogger(
        "http://sortition.test", "srt_key", transport=httpx.MockTransport(handler), **options
    )


def test_retries_until_acknowledged_with_the_same_event_ids():
    seen: list[list[str]] = []
    answers = iter([httpx.Response(503), httpx.Response(429, headers={"Retry-After": "0"})])

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        assert request.headers["Authorization"] == "Bearer srt_key"
        assert request.url.path == "/api/v1/events"
        seen.append([e["eventId"] for e in batch])
        for answer in answers:
            return answer
        return httpx.Response(200, json={"received": len(batch), "accepted": len(batch), "rejected": []})

    logger = _logger(handler)
    for i in range(3):
        logger.log_assignment({**EVENT, "subject": f"s{i}"})
    assert logger.flush(10)
    logger.close()
    assert logger.sent == 3 and logger.retries == 2 and logger.dropped == 0
    assert seen[0] == seen[1] == seen[2] and len(set(seen[0])) == 3  # a retry resends the same ids


def test_refused_batches_and_the_memory_bound_are_reported():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unknown or revoked API key"})

    logger = _logger(refuse)
    with pytest.warns(RuntimeWarning, match="refused the batch"):
        logger.log_assignment(EVENT)
        assert logger.flush(10)
    logger.close()
    assert logger.dropped == 1 and "HTTP 401" in next(iter(logger.drop_reasons))

    def never(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    bounded = _logger(never, max_pending=5, close_timeout=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(8):
            bounded.log_assignment({**EVENT, "subject": f"s{i}"})
        bounded.close()
    assert bounded.drop_reasons["memory bound reached (5 events pending)"] == 3
    assert bounded.dropped == 8 and any("memory bound" in str(w.message) for w in caught)


def test_rejected_rows_are_kept_with_their_reason():
    def partial(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "received": len(batch),
                "accepted": len(batch) - 1,
                "rejected": [{"index": 0, "reason": "field 'value' must be a number"}],
            },
        )

    logger = _logger(partial, flush_interval=5.0)  # both events in one batch: flush() sends it
    with pytest.warns(RuntimeWarning, match="rejected 1 event"):
        logger.log_outcome("alice", "revenue", "lots")
        logger.log_outcome("bob", "revenue", 2.0)
        assert logger.flush(10)
    logger.close()
    assert logger.sent == 1 and logger.rejected[0][0]["subject"] == "alice"
    with pytest.raises(ValueError, match="ingest role"):
        HttpEventLogger("http://x", "")
