"""One log format per stream: every record, ours (structlog) or a library's (uvicorn,
litestar, alembic, httpx through stdlib logging), is rendered by the same
``structlog.stdlib.ProcessorFormatter`` on stderr: JSON lines off a terminal,
the console renderer on one.

Context bound with ``structlog.contextvars`` (the worker binds mission_id,
vp_id and worker_id around each mission) reaches library records too, because
the formatter's pre-chain merges it.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from ua_vp import redact

LogFormat = Literal["auto", "console", "json"]

QUIET_LIBRARIES = {"alembic": logging.WARNING, "httpx": logging.WARNING, "httpcore": logging.WARNING}
"""Chatty at info; their warnings still show."""

_HANDLER_NAME = "ua_vp"


def _shared_processors() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _uvicorn_access(_logger: object, _name: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """uvicorn's access line as fields (client, method, path, status) instead of one string;
    and no ``color_message`` copies of uvicorn's lines in the output."""
    args = event_dict.pop("positional_args", None)
    event_dict.pop("color_message", None)
    record = event_dict.get("_record")
    if record is not None and record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        event_dict.update(event="http_request", client=client, method=method, path=path, status=status)
        event_dict["http_version"] = http_version
    return event_dict


def configure_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    """(Re)configure structlog and the stdlib root logger; safe to call again with a new level."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    shared = _shared_processors()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        # Filtering in the bound logger: a debug call below the level costs one method call.
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Not cached: `serve` and `worker` raise the level after start-up.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _uvicorn_access],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks as text before masking, so a secret inside one is masked too.
            structlog.processors.format_exc_info,
            # One place masks every line, ours and the libraries' (ua_vp.redact).
            redact.structlog_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn and litestar configure their own handlers unless told not to; whatever
    # they added, their records go up to the one handler above.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    for name, floor in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
