"""``ua-vp serve``: the ops API under uvicorn, with the refusal to bind an
unauthenticated API anywhere but loopback."""

from __future__ import annotations

import ipaddress
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

import structlog
import uvicorn

from ua_vp.api.app import create_app
from ua_vp.api.deps import Lane
from ua_vp.config import Settings
from ua_vp.errors import ConfigError

log = structlog.get_logger(__name__)

HTTP_GRACE_SECONDS = 5
"""On SIGTERM, open requests get this long to finish before they are cut. Missions of the
in-process lane have their own grace (UA_VP_SHUTDOWN_GRACE_SECONDS) in the lifespan."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stop_streams: Callable[[], None]) -> None:
        super().__init__(config)
        self.stop_streams = stop_streams

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn waits for open responses before the app hears of the shutdown; an event
        # stream never finishes by itself, so tell the streams now (they end at their next
        # poll and the client resumes elsewhere with Last-Event-ID).
        self.stop_streams()
        super().handle_exit(sig, frame)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_bind(settings: Settings, host: str) -> None:
    """Refuse an unauthenticated API off loopback unless explicitly allowed."""
    if settings.ops_token is not None:
        return
    if is_loopback(host):
        log.warning("ops_api_unauthenticated", host=host, hint="set UA_VP_OPS_TOKEN to require a bearer token")
        return
    if settings.allow_unauthenticated_bind:
        log.warning("ops_api_unauthenticated_public", host=host, hint="UA_VP_ALLOW_UNAUTHENTICATED_BIND is on")
        return
    raise ConfigError(
        f"refusing to serve the ops API on {host} without a token: anyone who can reach it could dispatch "
        "missions. Set UA_VP_OPS_TOKEN, bind 127.0.0.1, or set UA_VP_ALLOW_UNAUTHENTICATED_BIND=1 to accept the risk",
        host=host,
    )


def run(settings: Settings, host: str | None = None, port: int | None = None, *, lanes: Sequence[Lane] = ()) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully and return."""
    host = host or settings.host
    port = port or settings.port
    check_bind(settings, host)
    if port in settings.sandbox_loopback_ports:
        # UA_VP_PORT is checked with the settings; a --port given here is checked now.
        raise ConfigError(
            f"refusing to serve the ops API on port {port}: UA_VP_SANDBOX_LOOPBACK_PORTS lets missions reach it",
            setting="UA_VP_SANDBOX_LOOPBACK_PORTS",
            port=port,
        )
    # The app's Host allow-list includes the address actually bound.
    settings = settings.model_copy(update={"host": host, "port": port})
    app = create_app(settings, lanes=lanes, in_process_lane=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through the logging ua_vp.logging set up
        timeout_graceful_shutdown=HTTP_GRACE_SECONDS,
        server_header=False,
    )
    server = _Server(config, app.state.api.stop_streams)
    log.info(
        "ops_api_serving",
        url=f"http://{host}:{port}",
        dashboard=f"http://{host}:{port}/",
        docs=f"http://{host}:{port}/schema",
    )
    received: list[int] = []

    def note(sig: int, _frame: FrameType | None) -> None:
        received.append(sig)

    # uvicorn re-raises the stop signal after its graceful shutdown, into whatever
    # handler was installed before it; this one only notes it, so a requested stop
    # ends the process normally (exit 0) instead of being killed by the signal.
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        log.error("ops_api_failed_to_start", host=host, port=port)
        sys.exit(3)
    log.info("ops_api_exited", signals=[signal.Signals(s).name for s in received])
