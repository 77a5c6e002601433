"""Versioned configurations: every flags/bandits configuration that was served can be read back."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConfigurationVersion:
    """One saved configuration. ``flags`` and ``bandits`` are the JSON documents as dicts
    (the UFC flags response and the bandit-models response); ``created_at`` is naive UTC."""

    version: int
    created_at: dt.datetime
    flags: dict
    bandits: dict | None = None

    def to_wire(self) -> dict:
        """The configuration wire wrapper Eppo's SDKs accept as an initial configuration."""
        fetched = self.created_at.isoformat(timespec="milliseconds") + "Z"
        wire: dict[str, Any] = {"version": 1, "config": {"response": json.dumps(self.flags), "fetchedAt": fetched}}
        if self.bandits is not None:
            wire["bandits"] = {"response": json.dumps(self.bandits), "fetchedAt": fetched}
        return wire


def as_document(value: Any, field: str, required: bool = True) -> tuple[dict | None, str | None]:
    """A JSON document given as a dict, a JSON string or bytes -> (dict, canonical text)."""
    if value is None:
        if required:
            raise ValueError(f"{field} is required: give the configuration as a dict or a JSON string")
        return None, None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{field} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise TypeError(f"{field} must be a JSON object (dict), got {type(value).__name__}")
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{field} is not JSON-serializable: {err}") from None
    return value, text
