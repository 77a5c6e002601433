"""OpenFeature for Sortition: ``SortitionProvider`` (in-process, extra ``sortition[openfeature]``) and
``resolution`` (Client -> OpenFeature resolutions, shared with the server's OFREP endpoints).

``SortitionProvider`` is imported on first use, so the server needs no openfeature-sdk.
"""

from typing import Any

__all__ = ["SortitionProvider"]


def __getattr__(name: str) -> Any:
    if name == "SortitionProvider":
        from sortition.openfeature.provider import SortitionProvider

        return SortitionProvider
    raise AttributeError(f"module 'sortition.openfeature' has no attribute {name!r}")
