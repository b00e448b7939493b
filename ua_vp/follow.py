"""What the CLI asks of ua-vp, answered either locally (the host's store and gateway)
or remotely through a running server's ops API (``--api URL`` / ``UA_VP_API_URL``).

Both answer with the API's public dicts, so every command prints the same thing
whichever way it went, and ``--wait``/``--follow`` follow committed events either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ua_vp.errors import UaVpError
from ua_vp.missions import FINAL_EVENT, parse_statuses

if TYPE_CHECKING:
    from ua_vp.host import Host

TERMINAL_EVENTS = frozenset(e.value for e in FINAL_EVENT.values())
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
        f"mission {mission_id} did not end within {timeout:g} s; is a worker (or `ua-vp serve`) "
        "running for its vp_id? Follow it later with `ua-vp mission ID`.",
        mission_id=mission_id,
    )


class Client(Protocol):
    def dispatch(self, request: dict[str, Any]) -> tuple[dict[str, Any], bool]: ...
    def cancel(self, mission_id: str) -> tuple[dict[str, Any], bool]: ...
    def missions(self, vp_id: str | None, status: str, limit: int) -> list[dict[str, Any]]: ...
    def mission(self, mission_id: str) -> dict[str, Any]: ...
    def events(self, mission_id: str) -> list[dict[str, Any]]: ...
    def sessions(self, vp_id: str | None) -> list[dict[str, Any]]: ...
    def metrics(self, vp_id: str | None) -> dict[str, Any]: ...
    def follow(self, mission_id: str, *, timeout: float) -> Iterator[dict[str, Any]]: ...


@dataclass
class LocalClient:
    """Straight to the database, through the host's gateway (guards, observer and all)."""

    host: Host

    def dispatch(self, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        enqueued = self.host.gateway.dispatch(**request)
        return enqueued.mission.to_public(), enqueued.created

    def cancel(self, mission_id: str) -> tuple[dict[str, Any], bool]:
        outcome = self.host.gateway.cancel(mission_id)
        return outcome.mission.to_public(), outcome.changed

    def missions(self, vp_id: str | None, status: str, limit: int) -> list[dict[str, Any]]:
        found = self.host.store.list_missions(vp_id=vp_id, statuses=parse_statuses(status), limit=limit)
        return [m.to_public() for m in found]

    def mission(self, mission_id: str) -> dict[str, Any]:
        return self.host.store.get(mission_id).to_public()

    def events(self, mission_id: str) -> list[dict[str, Any]]:
        return [e.to_public() for e in self.host.store.events(mission_id)]

    def sessions(self, vp_id: str | None) -> list[dict[str, Any]]:
        return [s.to_public() for s in self.host.store.list_sessions(vp_id=vp_id)]

    def metrics(self, vp_id: str | None) -> dict[str, Any]:
        from ua_vp.store.metrics import vp_metrics

        return vp_metrics(self.host.store, vp_id)

    def follow(self, mission_id: str, *, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield the mission's committed events in order, until its terminal event."""
        store = self.host.store
        deadline = time.monotonic() + timeout
        after = 0
        while time.monotonic() < deadline:
            for event in store.events(mission_id, after_id=after):
                after = event.id
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
            response = httpx.request(
                method, self.base_url.rstrip("/") + path, headers=self._headers(), timeout=30, **kwargs
            )
        except httpx.TransportError as exc:
            raise ApiError("api_unreachable", f"cannot reach the ua-vp server at {self.base_url}: {exc}") from None
        return self._check(response)

    def dispatch(self, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        body = {k: v for k, v in request.items() if v is not None}
        answer = self._request("POST", "/api/v1/ops/vp/missions/dispatch", json=body)
        return answer["mission"], answer["created"]

    def cancel(self, mission_id: str) -> tuple[dict[str, Any], bool]:
        answer = self._request("POST", f"/api/v1/ops/vp/missions/{mission_id}/cancel")
        return answer["mission"], answer["changed"]

    def missions(self, vp_id: str | None, status: str, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"status": status, "limit": limit, **({"vp_id": vp_id} if vp_id else {})}
        return self._request("GET", "/api/v1/ops/vp/missions", params=params)["missions"]  # type: ignore[no-any-return]

    def mission(self, mission_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/ops/vp/missions/{mission_id}")["mission"]  # type: ignore[no-any-return]

    def events(self, mission_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:  # the JSON answer is paged (up to 1000 events after after_id)
            after = found[-1]["id"] if found else 0
            page = self._request("GET", f"/api/v1/ops/vp/missions/{mission_id}/events", params={"after_id": after})
            found += page["events"]
            if not page["events"] or page["events"][-1]["event_type"] in TERMINAL_EVENTS:
                return found

    def sessions(self, vp_id: str | None) -> list[dict[str, Any]]:
        params = {"vp_id": vp_id} if vp_id else {}
        return self._request("GET", "/api/v1/ops/vp/sessions", params=params)["sessions"]  # type: ignore[no-any-return]

    def metrics(self, vp_id: str | None) -> dict[str, Any]:
        params = {"vp_id": vp_id} if vp_id else {}
        return self._request("GET", "/api/v1/ops/metrics/vp", params=params)["metrics"]  # type: ignore[no-any-return]

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
