"""Who may call the ops API, and from which page: the checks that run before a handler.

- **Host** (every route): the ``Host`` header must name this server: a loopback name,
  the address it is bound to, this machine's host name, one of ``UA_VP_ALLOWED_HOSTS``,
  or an IP address. A page on ``attacker.example`` whose name was made to resolve to
  127.0.0.1 (DNS rebinding) sends its own name, and is refused; rebinding needs a name,
  so an address typed as such (``http://10.0.0.5:8002``) is no such risk.
- **Origin** (state-changing methods): a browser says which page sent a request; one
  from any other origin than the API's own (or ``Origin: null``, or marked
  ``Sec-Fetch-Site: cross-site``) is refused, so no web page the operator opens can
  dispatch or cancel. Programs (curl, the CLI) send no Origin and are not affected.
- **JSON bodies** (routes that take one): ``Content-Type`` must be ``application/json``
  (or ``application/*+json``); otherwise 415. A page can send ``text/plain``
  cross-site without asking first, but never ``application/json``.
- **The caller's OS user** (no ``UA_VP_OPS_TOKEN``, ``UA_VP_TOKENLESS_CALLERS=owner``):
  a token-less call is accepted only from a local TCP connection owned by the same
  uid as the server (:mod:`ua_vp.api.peers`), so other users on a shared host are refused.

Every guard here is a coroutine: Litestar runs a plain-function guard in a worker
thread, a thread hop per guard per request for checks that take microseconds (the
peer-uid query ~12 us on its own; py-spy: ~5% of a list request's server time).

An ASGI call that came over no socket (the test client, an application embedding
this one) is the process itself, and is not asked for a Host or a uid.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from ua_vp.api import peers
from ua_vp.config import Settings
from ua_vp.errors import UaVpError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HostNotAllowed(UaVpError):
    code = "host_not_allowed"
    http_status = 400


class OriginNotAllowed(UaVpError):
    code = "origin_not_allowed"
    http_status = 403


class CallerNotAllowed(UaVpError):
    code = "caller_not_allowed"
    http_status = 403


class UnsupportedMediaType(UaVpError):
    code = "unsupported_media_type"
    http_status = 415


Connection = ASGIConnection[Any, Any, Any, Any]


def _host_name(value: str) -> str:
    """``Host``/``Origin`` host without port and brackets, lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(settings: Settings) -> frozenset[str]:
    names = set(LOOPBACK_NAMES) | {_host_name(h) for h in settings.allowed_hosts}
    bound = _host_name(settings.host)
    with_wildcard = bound in ("0.0.0.0", "::", "")
    if not with_wildcard:
        names.add(bound)
    # Served on every address: the machine's own name is what people type.
    if with_wildcard or not _is_loopback(bound):
        names.add(socket.gethostname().lower())
    return frozenset(names)


def _known_host(name: str, hosts: frozenset[str]) -> bool:
    if name in hosts:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _over_a_socket(connection: Connection) -> bool:
    client = connection.scope.get("client")
    if not client:
        return False
    try:
        ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return False  # Litestar's test client says "testclient"
    return True


def request_guards(settings: Settings) -> list[Guard]:
    """Guards for every route: the Host allow-list and the Origin check."""
    hosts = allowed_hosts(settings)
    any_host = "*" in hosts

    async def check_host_and_origin(connection: Connection, _handler: BaseRouteHandler) -> None:
        headers = connection.headers
        host = headers.get("host", "")
        if not any_host and _over_a_socket(connection) and not _known_host(_host_name(host), hosts):
            raise HostNotAllowed(
                f"Host {host[:100]!r} is not a name of this server; use one of {sorted(hosts)} "
                "or add it to UA_VP_ALLOWED_HOSTS",
                host=host[:100],
            )
        if connection.scope.get("method", "GET") in SAFE_METHODS:
            return
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin.strip())
            same = parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()
            if not same:
                raise OriginNotAllowed(
                    f"requests from a web page at {origin[:100]!r} may not change anything here; "
                    "only the API's own origin may (programs send no Origin header)",
                    origin=origin[:100],
                )
        elif headers.get("sec-fetch-site", "") == "cross-site":
            raise OriginNotAllowed("cross-site requests may not change anything here")

    return [check_host_and_origin]


async def require_json(connection: Connection, _handler: BaseRouteHandler) -> None:
    """Guard for routes with a JSON body: 415 unless the body says it is JSON."""
    media = connection.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"send the body as JSON with `Content-Type: application/json` (got {media[:100]!r})"
        if media
        else "send the body as JSON with `Content-Type: application/json` (no Content-Type was given)",
        content_type=media[:100],
    )


def owner_guard() -> Guard:
    """Token-less calls only from the server's own OS user (see the module docstring)."""
    me = os.geteuid()

    async def require_owner(connection: Connection, _handler: BaseRouteHandler) -> None:
        if not _over_a_socket(connection):
            return
        client, server = connection.scope.get("client"), connection.scope.get("server")
        uid = None
        if client and server and server[1] is not None:
            uid = peers.peer_uid((client[0], client[1]), (server[0], server[1]))
        if uid == me:
            return
        who = "a process of another OS user" if uid is not None else "a caller whose OS user is unknown (not local?)"
        raise CallerNotAllowed(
            f"this server has no UA_VP_OPS_TOKEN, so it accepts calls only from its own OS user (uid {me}); "
            f"this came from {who}. Run the client as that user, or set UA_VP_OPS_TOKEN and send "
            "`Authorization: Bearer <token>`",
            **({"uid": uid} if uid is not None else {}),
        )

    return require_owner
