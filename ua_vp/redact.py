"""The one place secrets are masked in text meant for people: configuration errors,
mission errors, events and log lines.

What is masked, wherever it appears in a string:

- the password of a URL's userinfo: ``postgresql://app:***@db/x``;
- HTTP credentials: ``Bearer ***``, ``Basic ***``;
- ``key=value`` and ``"key": "value"`` pairs whose key names a secret
  (``password``, ``secret``, ``token``, ``api_key``, ``access_key``..., also as
  a suffix such as ``client_secret``) and ``?token=...`` in query strings;
- keys with a well-known shape (OpenAI ``sk-...``, GitHub ``ghp_...``/``github_pat_...``,
  Slack ``xox.-...``, GitLab ``glpat-...``, AWS ``AKIA...``);
- every value :func:`remember` was given: the configured ops token, model API key
  and database password (:class:`ua_vp.config.Settings` remembers them), however
  they are quoted.

:func:`printable` makes text safe for a terminal: control characters (an
``ESC ]0;...BEL`` that retitles the window, a ``CR`` that overwrites a line) and
bidirectional overrides become visible escapes such as ``\x1b``.

Masking is for what people read; it is not a sandbox. Text is masked when it is
written (the store masks mission errors and event payloads, the log processors
mask log lines), so what is stored is already safe to show.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

MASK = "***"
MIN_REMEMBERED_CHARS = 6
"""Shorter remembered values are not masked literally: masking every ``abc`` in a log
would hide more than it protects (such a weak token is also guessable anyway)."""

_SECRET_WORD = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|private[_-]?key|auth[_-]?token|credentials?)"
)
# A key that *is* or *ends in* a secret word: `password`, `client_secret`, `X-Api-Key`;
# not `max_tokens` or `token_budget`.
_SECRET_KEY = re.compile(rf"^(?:.*[_.-])?{_SECRET_WORD}$", re.IGNORECASE)

_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # scheme://user:password@host -> scheme://user:***@host (a user alone is no secret).
    (re.compile(r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#@]+(?=@)"), rf"\g<keep>{MASK}"),
    # A credential is not a plain lower-case word: "a bearer token" stays readable.
    (
        re.compile(
            r"(?P<keep>\b(?:Bearer|Basic)\s+)(?!(?-i:[a-z]+)(?![A-Za-z0-9._~+/=:-]))[A-Za-z0-9._~+/=:-]+",
            re.IGNORECASE,
        ),
        rf"\g<keep>{MASK}",
    ),
    # "password": "x y" / 'token': 'x' / password=x / ?api_key=x&...
    (
        re.compile(
            rf"""(?P<keep>(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_.-])*{_SECRET_WORD}(?P<q>["']?)\s*[:=]\s*)"""
            r"""(?:"(?P<dq>)[^"]*"|'(?P<sq>)[^']*'|[^\s"'&,;)}\]]+)""",
            re.IGNORECASE,
        ),
        # A quoted value stays quoted, so masked JSON still parses.
        lambda m: m["keep"] + ('"***"' if m["dq"] is not None else "'***'" if m["sq"] is not None else MASK),
    ),
    (
        re.compile(
            r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16})"
        ),
        MASK,
    ),
)

# C0 (but tab and newline), DEL, C1, and the bidi controls that reorder what is shown.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_AND_LINES = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_lock = threading.Lock()
_remembered: frozenset[str] = frozenset()
_remembered_re: re.Pattern[str] | None = None


def remember(*values: str | None) -> None:
    """Mask these exact values from now on, in this process (a configured token, key or password)."""
    global _remembered, _remembered_re
    fresh = {v for v in values if v and len(v) >= MIN_REMEMBERED_CHARS} - _remembered
    if not fresh:
        return
    with _lock:
        _remembered = _remembered | fresh
        # Longest first, so a value containing another is masked whole.
        alternatives = sorted(_remembered, key=len, reverse=True)
        _remembered_re = re.compile("|".join(re.escape(v) for v in alternatives))


def redact(text: str) -> str:
    """``text`` with every secret this module knows of replaced by ``***``."""
    known = _remembered_re
    if known is not None:
        text = known.sub(MASK, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control character shown as an escape, for a terminal.
    ``one_line`` escapes newlines and tabs too (a table cell must not break its row)."""
    return (_CONTROLS_AND_LINES if one_line else _CONTROLS).sub(_escape, text)


def redact_url(url: str) -> str:
    """A URL for an error message, masked even when it does not parse: everything from
    the first ``:`` of the userinfo to the last ``@`` goes (``postgres://u:***@host``)."""
    head, sep, rest = url.partition("://")
    body = rest if sep else url
    userinfo, at, host = body.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        body = f"{user}:{MASK}@{host}"
    return redact(f"{head}{sep}{body}" if sep else body)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.match(key.strip()))


def redact_data(value: Any) -> Any:
    """JSON-like data with its strings masked, and string values under secret-named keys
    (``{"api_key": "..."}``) masked whole."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and isinstance(v, str) and v and is_secret_key(k) else redact_data(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


# --- logs ---------------------------------------------------------------------------


def structlog_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: masks every value of a log line and escapes control characters
    in its strings (place it after
    ``format_exc_info``, so tracebacks are masked too, and before the renderer)."""
    for key, val in event_dict.items():
        if isinstance(val, bool | int | float) or val is None:
            continue
        if isinstance(key, str) and isinstance(val, str) and val and is_secret_key(key):
            event_dict[key] = MASK
        elif isinstance(val, str):
            event_dict[key] = printable(redact(val))  # a console log must not obey an agent's escapes
        elif isinstance(val, Mapping | list | tuple):
            event_dict[key] = redact_data(val)
        else:
            # Whatever the renderer would print of it (an exception, a path...).
            event_dict[key] = printable(redact(str(val)))
    return event_dict


class RedactingFormatter(logging.Formatter):
    """For the stdlib loggers (uvicorn, alembic, SQLAlchemy): masks the formatted line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _reset_for_tests(values: Iterable[str] = ()) -> None:
    """Forget every remembered value (then remember ``values``); tests only."""
    global _remembered, _remembered_re
    with _lock:
        _remembered, _remembered_re = frozenset(), None
    remember(*values)
