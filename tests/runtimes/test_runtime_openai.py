"""openai runtime against a real OpenAI-compatible HTTP server (``tests/fake_openai.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from runtime_harness import Harness, make_mission

from ua_vp.errors import BudgetExceeded, ConfigError, RuntimeFailed
from ua_vp.runtimes import openai

FakeServer = Callable[..., Any]


def _executor(harness: Harness, base_url: str) -> openai.OpenAIExecutor:
    settings = harness.settings(openai_base_url=base_url, openai_api_key="sk-test", openai_model="fake-4")
    return openai.create(harness.profile("openai"), settings)


def test_answer_is_written_and_usage_reported(harness: Harness, fake_openai: FakeServer) -> None:
    mission = make_mission("Explain leases.", constraints={"audience": "ops"}, budget={"max_tokens": 500})
    with fake_openai(answer="Leases expire.\n\nThat is all.", prompt_tokens=30, completion_tokens=7) as server:
        result = harness.run(_executor(harness, server.base_url), mission)
        (request,) = server.requests()

    assert (harness.workspace / "RESPONSE.md").read_text() == "Leases expire.\n\nThat is all."
    assert result.artifacts == ["RESPONSE.md"]
    assert result.summary == "Leases expire.\n\nThat is all."
    assert result.usage == {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}
    assert result.data["model"] == "fake-4"
    assert result.data["finish_reason"] == "stop"

    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "fake-4"
    assert body["max_completion_tokens"] == 500  # what newer models require; max_tokens is refused by them
    assert "max_tokens" not in body
    system, user = body["messages"]
    assert system["role"] == "system" and "TESTER (vp.test.primary)" in system["content"]
    assert user["role"] == "user" and user["content"].startswith("Explain leases.")
    assert '"audience": "ops"' in user["content"]
    assert [e["kind"] for e in harness.events] == ["request_sent", "response_received", "artifact_written"]


def test_usage_over_the_token_budget_fails(harness: Harness, fake_openai: FakeServer) -> None:
    mission = make_mission(budget={"max_tokens": 100})
    with fake_openai(prompt_tokens=90, completion_tokens=20) as server, pytest.raises(BudgetExceeded) as info:
        harness.run(_executor(harness, server.base_url), mission)
    assert "used 110 tokens, more than budget.max_tokens=100" in info.value.message
    assert not (harness.workspace / "RESPONSE.md").exists()


def test_a_server_error_is_retried(harness: Harness, fake_openai: FakeServer) -> None:
    with fake_openai(fail_first=1, fail_status=500) as server:
        result = harness.run(_executor(harness, server.base_url), make_mission())
        assert len(server.requests()) == 2
    assert result.usage["total_tokens"] == 52


def test_a_client_error_fails_at_once_with_status_and_body(harness: Harness, fake_openai: FakeServer) -> None:
    with fake_openai(fail_first=5, fail_status=401) as server:
        with pytest.raises(RuntimeFailed, match=r"answered HTTP 401: .*upstream exploded") as info:
            harness.run(_executor(harness, server.base_url), make_mission())
        assert len(server.requests()) == 1
    assert info.value.details["status"] == 401


def test_missing_key_names_the_variable(harness: Harness) -> None:
    with pytest.raises(ConfigError, match="UA_VP_OPENAI_API_KEY"):
        openai.create(harness.profile("openai"), harness.settings())
    with pytest.raises(ConfigError, match="UA_VP_OPENAI_API_KEY"):
        openai.create(harness.profile("openai"), harness.settings(openai_api_key="  "))


def test_the_key_stays_out_of_reprs(harness: Harness) -> None:
    executor = openai.create(harness.profile("openai"), harness.settings(openai_api_key="sk-very-secret"))
    assert "sk-very-secret" not in repr(executor)


@pytest.mark.parametrize(("field", "sent"), [("max_tokens", {"max_tokens": 64}), ("none", {})])
def test_the_token_limit_field_is_configurable(
    harness: Harness, fake_openai: FakeServer, field: str, sent: dict[str, int]
) -> None:
    with fake_openai() as server:
        settings = harness.settings(openai_base_url=server.base_url, openai_api_key="k", openai_token_limit_field=field)
        harness.run(openai.create(harness.profile("openai"), settings), make_mission(budget={"max_tokens": 64}))
        (request,) = server.requests()
    limits = {k: v for k, v in request["body"].items() if k in ("max_tokens", "max_completion_tokens")}
    assert limits == sent


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("localhost:4000/v1", "needs http:// or https:// and a host"),
        ("ftp://example.com/v1", "needs http:// or https:// and a host"),
        ("http://127.0.0.1:4000", "has no API version in its path (such as /v1)"),
        ("https://proxy.example.com/openai", "use e.g. https://proxy.example.com/openai/v1"),
        ("http://user:hunter2-secret@proxy.example.com/v1", "holds credentials"),
    ],
)
def test_a_bad_base_url_fails_at_start_naming_the_variable(harness: Harness, base_url: str, message: str) -> None:
    settings = harness.settings(openai_base_url=base_url, openai_api_key="k")
    with pytest.raises(ConfigError, match="UA_VP_OPENAI_BASE_URL") as info:
        openai.create(harness.profile("openai"), settings)
    assert message in info.value.message
    assert "hunter2-secret" not in info.value.message


@pytest.mark.parametrize(
    "base_url", ["https://api.openai.com/v1", "http://10.0.0.5:4000/v1/", "https://x.example/v1beta/openai"]
)
def test_usual_base_urls_are_accepted(harness: Harness, base_url: str) -> None:
    settings = harness.settings(openai_base_url=base_url, openai_api_key="k")
    assert openai.create(harness.profile("openai"), settings).base_url == base_url
