"""The OpenAPI 3.0 document of the server's API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

_KEY_PARAMS = [
    {
        "name": "apiKey",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "API key (as Eppo's SDKs send it); or use the Authorization: Bearer header",
    },
]
_SDK_PARAMS = _KEY_PARAMS + [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in ("sdkName", "sdkVersion", "coreVersion", "environment")
]
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request",
        401: "Unknown or missing API key",
        403: "The key's role does not allow this",
        404: "Not found",
        409: "A round blocked by its sample-ratio check: nothing saved or published (allow_srm overrides)",
        413: "Body too large",
        429: "Queue full: retry after Retry-After seconds",
        503: "The store could not commit: retry",
    }
    return {str(c): {"description": text[c], **_json(_ERROR)} for c in codes}


_OFREP_SUCCESS = {
    "type": "object",
    "required": ["key"],
    "properties": {
        "key": {"type": "string"},
        "value": {},
        "reason": {"type": "string"},
        "variant": {"type": "string", "nullable": True},
        "metadata": {"type": "object"},
        "errorCode": {"type": "string"},
        "errorDetails": {"type": "string"},
    },
}
_OFREP_ERROR = {
    "type": "object",
    "required": ["errorCode"],
    "properties": {
        "key": {"type": "string"},
        "errorCode": {"type": "string"},
        "errorDetails": {"type": "string"},
    },
}
_OFREP_REQUEST = {
    "type": "object",
    "properties": {
        "context": {
            "type": "object",
            "properties": {
                "targetingKey": {"type": "string"},
                "actions": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "string"}}]},
            },
            "additionalProperties": {
                "nullable": True,
                "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
            },
        }
    },
}
_PUBLICATION = {
    "type": "object",
    "required": ["seq", "environment", "version", "published_at", "action"],
    "properties": {
        "seq": {"type": "integer"},
        "environment": {"type": "string"},
        "version": {"type": "integer"},
        "published_at": {"type": "string"},
        "action": {"type": "string"},
        "note": {"type": "string", "nullable": True},
    },
}
_INGEST_ANSWER = {
    "type": "object",
    "required": ["received", "accepted", "rejected"],
    "properties": {
        "received": {"type": "integer"},
        "accepted": {"type": "integer"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "reason"],
                "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}},
            },
        },
    },
}


def _admin_post(
    summary: str, body: dict, answer: dict, errors: tuple[int, ...] = (400, 401, 403, 404)
) -> dict:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": _KEY_PARAMS,
            "requestBody": {"required": True, **_json(body)},
            "responses": {"200": {"description": "Done", **_json(answer)}, **_errors(*errors)},
        }
    }


def openapi_document() -> dict[str, Any]:
    config_get = {
        "parameters": _SDK_PARAMS,
        "security": [{"bearer": []}, {"apiKeyQuery": []}],
        "responses": {
            "200": {
                "description": "The published document (UFC flags or bandit models); its version is "
                "in the X-Sortition-Version header",
                **_json({"type": "object"}),
            },
            "304": {"description": "Not modified (If-None-Match matched the ETag)"},
            **_errors(401, 403, 404),
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Sortition server",
            "version": "1",
            "description": "Eppo-compatible configuration endpoints, OFREP, event ingestion, publishing.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "apiKey"},
            }
        },
        "paths": {
            "/api/flag-config/v1/config": {"get": {"summary": "Flags (UFC)", **config_get}},
            "/api/flag-config/v1/bandits": {"get": {"summary": "Bandit models", **config_get}},
            "/ofrep/v1/evaluate/flags/{key}": {
                "post": {
                    "summary": "OFREP: evaluate one flag",
                    "security": [{"bearer": []}],
                    "parameters": _KEY_PARAMS
                    + [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {"required": False, **_json(_OFREP_REQUEST)},
                    "responses": {
                        "200": {"description": "Evaluated", **_json(_OFREP_SUCCESS)},
                        "400": {"description": "Bad context", **_json(_OFREP_ERROR)},
                        "404": {"description": "Flag not found", **_json(_OFREP_ERROR)},
                        **_errors(401, 403),
                    },
                }
            },
            "/ofrep/v1/evaluate/flags": {
                "post": {
                    "summary": "OFREP: evaluate every flag",
                    "security": [{"bearer": []}],
                    "parameters": _KEY_PARAMS,
                    "requestBody": {"required": False, **_json(_OFREP_REQUEST)},
                    "responses": {
                        "200": {
                            "description": "Evaluated",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["flags"],
                                    "properties": {
                                        "flags": {"type": "array", "items": _OFREP_SUCCESS},
                                        "metadata": {"type": "object"},
                                    },
                                }
                            ),
                        },
                        "304": {"description": "Not modified"},
                        "400": {"description": "Bad context", **_json(_OFREP_ERROR)},
                        **_errors(401, 403, 404),
                    },
                }
            },
            "/api/v1/events": {
                "post": {
                    "summary": "Ingest events (JSON array or NDJSON, gzip allowed); 200 after the commit",
                    "security": [{"bearer": []}],
                    "parameters": _KEY_PARAMS,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Committed rows; rejected rows with index and reason",
                            **_json(_INGEST_ANSWER),
                        },
                        **_errors(400, 401, 403, 413, 429, 503),
                    },
                }
            },
            "/api/v1/configurations": _admin_post(
                "Publish a configuration (admin)",
                {
                    "type": "object",
                    "required": ["flags"],
                    "properties": {
                        "flags": {"type": "object"},
                        "bandits": {"type": "object", "nullable": True},
                        "environment": {"type": "string"},
                        "note": {"type": "string"},
                    },
                },
                _PUBLICATION,
            ),
            "/api/v1/rollback": _admin_post(
                "Serve an earlier version again (admin)",
                {
                    "type": "object",
                    "required": ["version"],
                    "properties": {"version": {"type": "integer"}, "environment": {"type": "string"}},
                },
                _PUBLICATION,
            ),
            "/api/v1/rounds": _admin_post(
                "Run one round of an experiment in the server, and publish it (admin)",
                {
                    "type": "object",
                    "required": ["flag", "metric", "state"],
                    "properties": {
                        "flag": {"type": "string"},
                        "metric": {"type": "string"},
                        "state": {"type": "string"},
                        "kind": {"type": "string"},
                        "arms": {"type": "array", "items": {"type": "string"}},
                        "environment": {"type": "string"},
                        "publish": {"type": "boolean"},
                        "allow_srm": {"type": "boolean"},
                        "new_flag": {"type": "boolean"},
                    },
                },
                {"type": "object"},
                (400, 401, 403, 404, 409),  # 409: blocked by the sample-ratio check, nothing saved
            ),
            "/api/v1/versions": {
                "get": {
                    "summary": "Saved versions, environments and history (admin)",
                    "security": [{"bearer": []}],
                    "parameters": _KEY_PARAMS,
                    "responses": {
                        "200": {
                            "description": "Versions",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["versions", "environments", "history"],
                                    "properties": {
                                        "versions": {"type": "array", "items": {"type": "object"}},
                                        "environments": {"type": "object"},
                                        "history": {"type": "array", "items": _PUBLICATION},
                                    },
                                }
                            ),
                        },
                        **_errors(400, 401, 403),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness",
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Metrics"}}}
            },
        },
    }
