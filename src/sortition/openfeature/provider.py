"""``SortitionProvider``: an in-process OpenFeature provider over ``serving.Client``.

>>> from openfeature import api                                          # doctest: +SKIP
>>> api.set_provider(SortitionProvider(Client(Configuration.from_json(flags, bandits))))  # doctest: +SKIP
>>> of = api.get_client()                                                # doctest: +SKIP
>>> of.get_string_value("flag", "default", EvaluationContext("alice", {"country": "FR"}))  # doctest: +SKIP

Flags resolve as the server's OFREP endpoint resolves them (``sortition.openfeature.resolution``).
Bandits: ``resolve_object_details`` with the offered actions under ``actions`` in the evaluation
context returns ``{"variation": ..., "action": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from sortition.openfeature.resolution import evaluate
from sortition.serving import Client

_ERROR_CODES = {
    "FLAG_NOT_FOUND": ErrorCode.FLAG_NOT_FOUND,
    "TARGETING_KEY_MISSING": ErrorCode.TARGETING_KEY_MISSING,
    "INVALID_CONTEXT": ErrorCode.INVALID_CONTEXT,
    "GENERAL": ErrorCode.GENERAL,
}


class SortitionProvider(AbstractProvider):
    """OpenFeature provider evaluating flags (and bandits) with a Sortition ``Client``.

    Args:
        client: the Client to evaluate with (its loggers log the assignments).
        environment: reported in the flag metadata.
        version: the configuration version, reported in the flag metadata.
    """

    def __init__(self, client: Client, environment: str = "local", version: int = 0):
        super().__init__()
        if not isinstance(client, Client):
            raise TypeError(f"client must be a sortition.serving.Client, got {type(client).__name__}")
        self.client = client
        self.environment = environment
        self.version = version

    def get_metadata(self) -> Metadata:
        return Metadata(name="Sortition")

    def _resolve(
        self,
        flag_key: str,
        default: Any,
        context: EvaluationContext | None,
        kinds: tuple[type, ...],
    ) -> FlagResolutionDetails[Any]:
        attributes = dict(context.attributes) if context is not None else {}
        actions = attributes.pop("actions", None)
        targeting_key = None if context is None else context.targeting_key
        status, body = evaluate(
            self.client,
            flag_key,
            targeting_key,
            attributes,
            actions if kinds == (dict, list) else None,
            self.environment,
            self.version,
        )
        meta = body.get("metadata", {})
        if "errorCode" in body:
            return FlagResolutionDetails(
                default,
                error_code=_ERROR_CODES.get(body["errorCode"], ErrorCode.GENERAL),
                error_message=body.get("errorDetails"),
                reason=Reason.ERROR,
                flag_metadata=meta,
            )
        if "value" not in body:
            return FlagResolutionDetails(default, reason=Reason(body["reason"]), flag_metadata=meta)
        value = body["value"]
        if kinds == (float,) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (kinds != (bool,) and isinstance(value, bool)):
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.TYPE_MISMATCH,
                reason=Reason.ERROR,
                error_message=f"flag {flag_key!r} is not of the requested type",
                flag_metadata=meta,
            )
        return FlagResolutionDetails(
            value, reason=Reason(body["reason"]), variant=body.get("variant"), flag_metadata=meta
        )

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, (bool,))

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, (str,))

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, (int,))

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, (float,))

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return self._resolve(flag_key, default_value, evaluation_context, (dict, list))
