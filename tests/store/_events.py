"""Small event factories shared by the store tests."""

from __future__ import annotations

import datetime as dt

T0 = dt.datetime(2024, 5, 1, 12, 0, 0)


def assignment(subject: str, variation: str = "a", minutes: float = 0.0, flag: str = "flag", **extra) -> dict:
    event = {
        "featureFlag": flag,
        "allocation": extra.pop("allocation", "seg-1"),
        "experiment": f"{flag}-seg-1",
        "variation": variation,
        "subject": subject,
        "subjectAttributes": extra.pop("attributes", {"country": "US", "age": 30}),
        "timestamp": (T0 + dt.timedelta(minutes=minutes)).isoformat() + "Z",
        "metaData": {"sdkName": "sortition", "sdkVersion": "0.1.0"},
    }
    event.update(extra)
    return event


def bandit(subject: str, action: str = "x", minutes: float = 0.0, probability: float = 0.5, **extra) -> dict:
    event = {
        "flagKey": extra.pop("flag", "bandit-flag"),
        "banditKey": extra.pop("bandit_key", "banner"),
        "subject": subject,
        "action": action,
        "actionProbability": probability,
        "optimalityGap": 0.0,
        "modelVersion": "v1",
        "subjectNumericAttributes": {"age": 30.0},
        "subjectCategoricalAttributes": {"country": "US"},
        "actionNumericAttributes": {"price": 9.5},
        "actionCategoricalAttributes": {"brand": "acme"},
        "timestamp": T0 + dt.timedelta(minutes=minutes),
        "metaData": {},
    }
    event.update(extra)
    return event


def outcome(subject: str, value: float = 1.0, minutes: float = 1.0, metric: str = "revenue", **extra) -> dict:
    event = {"subject": subject, "metric": metric, "value": value, "timestamp": T0 + dt.timedelta(minutes=minutes)}
    event.update(extra)
    return event
