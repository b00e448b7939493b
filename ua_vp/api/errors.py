"""The one place HTTP errors are made: every failure becomes
``{"error": {"code", "message", "details"}}`` with a stable code.

- :class:`UaVpError`: its own code and ``http_status``.
- Litestar's own exceptions (body and query validation, unknown routes, methods,
  oversize bodies, failed auth): a code per status, with a message naming the field.
- A lost database: 503 ``database_unavailable``.
- Anything else: 500 ``internal_error``, logged with its traceback, never sent.

Messages often quote what the caller sent (``got 'Bearer ...'``); every body is masked
by :mod:`ua_vp.redact` on its way out, so an error never repeats a credential.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, OperationalError

from ua_vp.api.schemas import ErrorBody, ErrorDetail
from ua_vp.errors import DatabaseUnavailable, UaVpError
from ua_vp.redact import redact, redact_data

log = structlog.get_logger(__name__)

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


# msgspec names the field in backticks when the key itself is the whole body.
_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    body = ErrorBody(error=ErrorDetail(code=code, message=redact(message), details=redact_data(details or {})))
    return Response(body, status_code=status, headers=headers)


def _ua_vp_error(request: Request[Any, Any, Any], exc: UaVpError) -> Response[ErrorBody]:
    if exc.http_status >= 500:
        # Start-up errors (config, plugins) should never surface per request: worth a loud log.
        log.error("request_failed", code=exc.code, path=request.url.path, message=exc.message)
    # A refusal that says when to come back says it the standard way too (RFC 9110 Retry-After).
    retry = exc.details.get("retry_after_seconds")
    headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
    return error_response(exc.http_status, exc.code, exc.message, exc.details, headers)


def _validation_message(exc: ValidationException) -> tuple[str, dict[str, Any]]:
    problems = [p for p in exc.extra if isinstance(p, dict)] if isinstance(exc.extra, list) else []
    parts, fields = [], []
    for problem in problems:
        message = str(problem.get("message", "invalid value"))
        key = problem.get("key")
        if key in (None, "data"):
            # A whole-body problem names its field inside the message
            # ("Object missing required field `objective`").
            found = _FIELD_IN_MESSAGE.search(message)
            if found:
                fields.append(found.group(1))
            parts.append(message)
        else:
            fields.append(str(key))
            parts.append(f"{key}: {message}")
    if not parts:
        return str(exc.detail), {}
    details: dict[str, Any] = {"field": fields[0]} if fields else {}
    if len(fields) > 1:
        details["fields"] = fields
    return "invalid request: " + "; ".join(parts), details


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    if status >= 500:
        log.error("request_failed", status=status, path=request.url.path, detail=exc.detail)
        return error_response(status, "internal_error", "internal error; the server log has the details")
    code = HTTP_CODES.get(status, "http_error")
    details: dict[str, Any] = {}
    headers = None
    if isinstance(exc, ValidationException):
        message, details = _validation_message(exc)
    elif status == 400:
        # Litestar's decoder failed before validation: the body is not JSON at all.
        message = f"the request body is not valid JSON ({exc.detail}); send a JSON object"
    elif status == 404:
        message = f"no route {request.url.path}; the OpenAPI document at /schema lists them"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        headers = exc.headers
    elif status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        message = f"the request body is larger than the limit of {limit} bytes (UA_VP_MAX_REQUEST_BYTES)"
        details = {"max_bytes": limit}
    elif status == 401:
        message = str(exc.detail)
        headers = {"WWW-Authenticate": "Bearer"}
    else:
        message = str(exc.detail)
    return error_response(status, code, message, details, headers)


def _database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database_unavailable", path=request.url.path, error=str(exc.orig))
        unavailable = DatabaseUnavailable("the database cannot be reached; try again shortly")
        return error_response(unavailable.http_status, unavailable.code, unavailable.message)
    return _unexpected(request, exc)


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorBody]:
    # msgspec decodes nested JSON recursively; a body nested thousands deep is the
    # caller's doing, not a server fault.
    return error_response(400, "invalid_request", "the request body is nested too deeply")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled_error", path=request.url.path, method=request.method, error_type=type(exc).__name__)
    return error_response(500, "internal_error", "internal error; the server log has the details")


def exception_handlers() -> ExceptionHandlersMap:
    # Litestar picks the handler of the nearest class in the exception's MRO.
    return {
        UaVpError: _ua_vp_error,
        HTTPException: _http_error,
        DBAPIError: _database_error,
        RecursionError: _too_deep,
        Exception: _unexpected,
    }
