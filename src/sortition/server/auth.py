"""Who is asking: the API key of a request, checked against the catalog's key ring.

A key is read from the ``apiKey`` query parameter (as Eppo's SDKs send it), an ``Authorization:
Bearer`` header, or an ``X-API-Key`` header. Unknown, malformed or revoked keys get 401; a key whose
role (or environment) does not cover the endpoint gets 403. Roles: ``sdk`` (plain configuration,
bandits, OFREP), ``client`` (obfuscated configuration, OFREP), ``ingest`` (events), ``admin``
(everything, every environment).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from sortition.store.publishing import DEFAULT_ENVIRONMENT, ApiKey, KeyRing


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    environment: str


def presented_key(request: Request) -> str | None:
    key = request.query_params.get("apiKey")
    if key:
        return key
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("x-api-key") or None


def authorize(request: Request, keys: KeyRing, roles: tuple[str, ...]) -> Caller:
    """The caller if its key has one of ``roles``; AuthError(401/403) otherwise.

    The environment is the key's own; an admin key (all environments) picks one with the
    ``environment`` query parameter (default ``production``).
    """
    presented = presented_key(request)
    if presented is None:
        raise AuthError(
            401,
            "no API key: pass it as the apiKey query parameter or an 'Authorization: "
            "Bearer KEY' header (create one with: sortition keys create STORE --role ...)",
        )
    key = keys.authenticate(presented)
    if key is None:
        raise AuthError(401, "unknown or revoked API key")
    environment = key.environment or request.query_params.get("environment") or DEFAULT_ENVIRONMENT
    if not any(key.allows(role, environment) for role in roles):
        raise AuthError(
            403,
            f"this {key.role!r} key may not use this endpoint; it needs the role "
            f"{' or '.join(repr(r) for r in roles)}" + (" (or admin)" if "admin" not in roles else ""),
        )
    return Caller(key, environment)
