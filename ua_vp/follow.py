"""Watching a mission from the outside: ``ua-vp dispatch --wait/--follow``, locally
through the store or remotely through the ops API (``--api URL``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ua_vp.errors import UaVpError
from ua_vp.event_cursor import EventCursor
from ua_vp.missions import TERMINAL_EVENTS
from ua_vp.store import MissionStore

POLL_SECONDS = 0.2


class WaitTimedOut(UaVpError):
    code = "wait_timed_out"
    http_status = 408


class ApiError(UaVpError):
    """An error answered by a ua-vp server, carrying the server's own code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


def _timed_out(mission_id: str, timeout: float) -> WaitTimedOut:
    return WaitTimedOut(
        f"mission {mission_id} did not end within {timeout:.0f} s; is a worker (or `ua-vp serve`) "
        "running for its vp_id? Follow it later with `ua-vp mission ID`.",
        mission_id=mission_id,
    )


def follow_local(store: MissionStore, mission_id: str, *, timeout: float) -> Iterator[dict[str, Any]]:
    """Yield the mission's events as they are written, until its terminal event."""
    deadline = time.monotonic() + timeout
    cursor = EventCursor.for_store(store)
    while time.monotonic() < deadline:
        fresh, _ = cursor.read(store, mission_id)
        for event in fresh:
            yield event.to_public()
            if event.event_type in TERMINAL_EVENTS:
                return
        time.sleep(POLL_SECONDS)
    raise _timed_out(mission_id, timeout)


@dataclass
class ApiClient:
    base_url: str
    token: str | None = None

    def _headers(self, **extra: str) -> dict[str, str]:
        return {**({"Authorization": f"Bearer {self.token}"} if self.token else {}), **extra}

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.is_error:
            err = body.get("error") or {}
            raise ApiError(
                err.get("code", f"http_{response.status_code}"),
                err.get("message", f"{response.request.url} answered {response.status_code}"),
                **(err.get("details") or {}),
            )
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = httpx.request(method, self.base_url.rstrip("/") + path, headers=self._headers(), **kwargs)
        except httpx.TransportError as exc:
            raise ApiError("api_unreachable", f"cannot reach the ua-vp server at {self.base_url}: {exc}") from None
        return self._check(response)

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in request.items() if v is not None}
        return self._request("POST", "/api/v1/ops/vp/missions/dispatch", json=body, timeout=30)

    def mission(self, mission_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/ops/vp/missions/{mission_id}", timeout=30)["mission"]  # type: ignore[no-any-return]

    def follow(self, mission_id: str, *, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield events from the server's Server-Sent Events stream until the terminal one."""
        url = f"{self.base_url.rstrip('/')}/api/v1/ops/vp/missions/{mission_id}/events"
        deadline = time.monotonic() + timeout
        headers = self._headers(Accept="text/event-stream")
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout, connect=10)) as response:
                if response.is_error:
                    response.read()
                    self._check(response)
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        event: dict[str, Any] = json.loads(line[5:])
                        yield event
                        if event.get("event_type") in TERMINAL_EVENTS:
                            return
                    if time.monotonic() > deadline:
                        break
        except httpx.ReadTimeout:
            pass
        except httpx.TransportError as exc:
            raise ApiError("api_unreachable", f"lost the event stream from {self.base_url}: {exc}") from None
        raise _timed_out(mission_id, timeout)
