"""Bearer-token auth for the ops and dashboard routes (``UA_VP_OPS_TOKEN``)."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityScheme
from litestar.types import Guard

SCHEME_NAME = "opsToken"
SECURITY_SCHEME = SecurityScheme(type="http", scheme="bearer", description="UA_VP_OPS_TOKEN")


def bearer_guard(token: str) -> Guard:
    """A guard accepting only ``Authorization: Bearer <token>``."""
    expected = token.encode()

    async def require_token(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        scheme, _sep, given = connection.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken must not reveal how much of the token matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise NotAuthorizedException("send `Authorization: Bearer <UA_VP_OPS_TOKEN>`")

    return require_token
