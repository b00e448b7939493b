"""``openai``: one chat completion from any OpenAI-compatible endpoint.

``POST {UA_VP_OPENAI_BASE_URL}/chat/completions`` with the profile as the
system message and the mission as the user message. The answer is written to
``RESPONSE.md``; the reported usage is checked against ``budget.max_tokens``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ua_vp.errors import ConfigError, RuntimeFailed
from ua_vp.profiles import Result
from ua_vp.redact import redact_url
from ua_vp.runtimes.common import check_token_budget, mission_prompt, object_at, system_prompt, tokens_used
from ua_vp.runtimes.process import clip

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.missions import Mission
    from ua_vp.profiles import MissionContext, Profile

log = structlog.get_logger(__name__)

RESPONSE_FILE = "RESPONSE.md"
# "/v1", "/v1beta/openai", "/openai/v1": the version segment every OpenAI-compatible base URL has.
_VERSION_SEGMENT = re.compile(r"/v\d+[a-z0-9]*(?:/|$)")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
SUMMARY_CHARS = 4000
# Completions can take minutes; budget.max_seconds is the worker's to enforce by cancelling.
_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
_BACKOFF = wait_exponential(multiplier=0.25, max=8.0) + wait_random(0, 0.25)
_MAX_RETRY_AFTER = 30.0


class _RetryableStatus(Exception):
    """An HTTP answer worth asking again for (rate limit, overloaded or failing upstream)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _wait(state: RetryCallState) -> float:
    # Honour a rate limiter's Retry-After (in seconds) when it gives one, within reason.
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _RetryableStatus):
        try:
            return min(max(float(exc.response.headers["retry-after"]), 0.0), _MAX_RETRY_AFTER)
        except (KeyError, ValueError):
            pass
    return float(_BACKOFF(state))


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("openai_request_retry", attempt=state.attempt_number, error=str(exc))


# Only failures that happened before the model did any work are retried: a
# connection never made, or an answer saying "not now". A read timeout is not,
# since the completion may have run (and been billed).
HTTP_RETRY = retry(
    retry=retry_if_exception_type((_RetryableStatus, httpx.ConnectError, httpx.ConnectTimeout)),
    stop=stop_after_attempt(4),
    wait=_wait,
    before_sleep=_log_retry,
    reraise=True,
)


@HTTP_RETRY
async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
    response = await client.post(url, json=body)
    if response.status_code in RETRY_STATUSES:
        raise _RetryableStatus(response)
    return response


def request_body(
    mission: Mission, profile: Profile, model: str, limit_field: str = "max_completion_tokens"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": system_prompt(profile)},
            {"role": "user", "content": mission_prompt(mission)},
        ],
    }
    if (max_tokens := mission.budget.get("max_tokens")) is not None and limit_field != "none":
        # Caps the answer; the prompt counts too, which the usage check afterwards covers.
        body[limit_field] = int(max_tokens)
    return body


def check_base_url(url: str, setting: str = "UA_VP_OPENAI_BASE_URL") -> str:
    """``url`` when it can be an OpenAI-compatible endpoint; :class:`ConfigError` at start-up otherwise.

    Credentials in it (``http://user:pw@host/v1``) are refused: httpx would send them as Basic
    auth in place of the Bearer key, and every event and log line naming the URL would show them."""
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise ConfigError(
            f"{setting}={redact_url(url.strip())!r} is not a URL ({exc}); use e.g. https://api.openai.com/v1",
            setting=setting,
        ) from None
    # Rebuilt from its parts, so no user:password@ is ever part of a message.
    shown = f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"
    if parsed.userinfo:
        raise ConfigError(
            f"{setting} holds credentials (user:password@ before the host of {shown}); remove them and put "
            "the key in UA_VP_OPENAI_API_KEY, which is sent as a Bearer token and never shown",
            setting=setting,
        )
    if "://" not in url or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"{setting}={redact_url(url.strip())!r} needs http:// or https:// and a host, "
            "e.g. https://api.openai.com/v1",
            setting=setting,
        )
    if not _VERSION_SEGMENT.search(parsed.path):
        raise ConfigError(
            f"{setting}={shown} has no API version in its path (such as /v1): the runtime posts to "
            f"<base URL>/chat/completions, so use e.g. {shown.rstrip('/')}/v1",
            setting=setting,
        )
    return url.strip()


@dataclass(frozen=True)
class OpenAIExecutor:
    profile: Profile
    base_url: str
    api_key: str = field(repr=False)
    model: str
    limit_field: str = "max_completion_tokens"
    """``UA_VP_OPENAI_TOKEN_LIMIT_FIELD``."""

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        ctx.emit("request_sent", {"model": self.model, "url": url})
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(timeout=_TIMEOUT, headers=headers) as client:
            try:
                response = await _post(client, url, request_body(mission, self.profile, self.model, self.limit_field))
            except _RetryableStatus as exc:
                response = exc.response  # retries spent: report it like any other HTTP error
            except httpx.HTTPError as exc:
                raise RuntimeFailed(f"request to {url} failed: {type(exc).__name__}: {exc}", url=url) from None
        payload = _payload(response, url)
        first = next(iter(payload["choices"]), None)
        choice = first if isinstance(first, dict) else {}
        message = object_at(choice, "message")
        usage = object_at(payload, "usage")
        finish_reason = choice.get("finish_reason")
        ctx.emit("response_received", {"finish_reason": finish_reason, "total_tokens": tokens_used(usage)})
        check_token_budget(ctx.budget, usage, who=f"model {self.model}")
        answer = message.get("content")
        if not isinstance(answer, str) or not answer.strip():
            raise RuntimeFailed(
                f"{url} returned no answer (finish_reason={finish_reason!r}"
                + (f", refusal: {clip(str(message['refusal']), 500)})" if message.get("refusal") else ")"),
                finish_reason=finish_reason,
            )
        (ctx.workspace / RESPONSE_FILE).write_text(answer, encoding="utf-8")
        ctx.emit("artifact_written", {"path": RESPONSE_FILE, "bytes": len(answer.encode())})
        return Result(
            summary=clip(answer.strip(), SUMMARY_CHARS),
            artifacts=[RESPONSE_FILE],
            usage=dict(usage),
            data={
                "final_message": answer,
                "model": payload.get("model", self.model),
                "finish_reason": finish_reason,
                "response_id": payload.get("id"),
            },
        )


def _payload(response: httpx.Response, url: str) -> dict[str, Any]:
    excerpt = clip(response.text, 500)
    if response.is_error:
        raise RuntimeFailed(
            f"{url} answered HTTP {response.status_code}: {excerpt}", status=response.status_code, body=excerpt
        )
    try:
        payload = response.json()
    except json.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        raise RuntimeFailed(f"{url} did not return a chat completion: {excerpt}", status=response.status_code)
    return payload


def create(profile: Profile, settings: Settings) -> OpenAIExecutor:
    key = settings.openai_api_key.get_secret_value().strip() if settings.openai_api_key else ""
    if not key:
        raise ConfigError(
            "the openai runtime needs an API key: set UA_VP_OPENAI_API_KEY "
            "(any non-empty value for a local server that checks none)",
            setting="UA_VP_OPENAI_API_KEY",
        )
    return OpenAIExecutor(
        profile,
        base_url=check_base_url(settings.openai_base_url),
        api_key=key,
        model=settings.openai_model,
        limit_field=settings.openai_token_limit_field,
    )
