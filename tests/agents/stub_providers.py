"""Stub model providers for the real agent CLIs: the Anthropic Messages API (Claude Code)
and the OpenAI Responses API (codex), both streaming Server-Sent Events, in one server.

Run as ``python stub_providers.py --host ADDR --port 0 --key KEY [--log FILE]``; it prints
``listening PORT`` once ready. Only requests carrying ``KEY`` (``x-api-key`` or ``Authorization:
Bearer``) get an answer, so a passing test proves the CLI found its credential.

What the "model" does is read from the first user message, where the test's objective puts it:

``STUB-WRITE <name> <text>``
    edit: turn 1 writes ``<text>`` into ``<name>`` (Claude: the Write tool, with the working
    directory taken from Claude's system prompt; codex: a shell call), turn 2 runs a command
    through Bash / the shell that copies it to ``<name>.copy``, turn 3 answers ``STUB-DONE <text>``.
    A step whose tool call failed is answered ``STUB-FAILED <step>: <what the tool returned>``.
``STUB-HANG``
    runs a process tree that waits five minutes through the shell (for cancel tests).
``STUB-USAGE <n>``
    reports ``<n>`` input tokens per request (default: about a quarter of the request's bytes).

Requests without tools (Claude Code's title and quota side calls) get a one-word answer.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import shlex
import socketserver
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)
# A process tree that outlives any test: a child and a grandchild, each waiting five minutes.
# Not ``sleep``: Claude Code's Bash tool refuses long sleeps.
HANG_COMMAND = (
    'python3 -c \'import subprocess, time; subprocess.Popen(["python3", "-c", '
    '"import time; time.sleep(300)"]); time.sleep(300)\' && echo stub-hang-ended'
)
_lock = threading.Lock()


def next_id(prefix: str) -> str:
    with _lock:
        return f"{prefix}_{next(_ids):06d}"


_EXIT_CODE = re.compile(r"exited with code (\d+)|\"exit_code\": ?(\d+)")


@dataclass
class Call:
    """A tool call the "model" made earlier in this conversation, and what came back."""

    text: str
    output: str = ""
    failed: bool = False

    def answered(self, output: str, is_error: bool = False) -> None:
        codes = [int(a or b) for a, b in _EXIT_CODE.findall(output)]
        self.output, self.failed = output, is_error or any(codes)

    @property
    def running(self) -> int | None:
        """The codex session still running the command (its exec tool gave up waiting), if any."""
        session = re.search(r"session ID (\d+)", self.output)
        return int(session.group(1)) if session and not _EXIT_CODE.search(self.output) else None


class Plan:
    """The scripted conversation, read from the request.

    Like a model, it decides from what its earlier tool calls returned, not from how many there
    were: a CLI that retries a request, or repeats a call, gets the same next step, and a step
    that failed ends the run with ``STUB-FAILED`` and the step's output, so a test says why."""

    def __init__(self, first_user_text: str, system_text: str, calls: list[Call]) -> None:
        self.calls = calls
        write = re.search(r"STUB-WRITE (\S+) (\S+)", first_user_text)
        self.name, self.text = (write.group(1), write.group(2)) if write else (None, None)
        self.hang = "STUB-HANG" in first_user_text
        usage = re.search(r"STUB-USAGE (\d+)", first_user_text)
        self.usage = int(usage.group(1)) if usage else None
        cwd = re.search(r"(?:Primary working directory|Working directory): *(\S+)", system_text)
        self.cwd = cwd.group(1) if cwd else None

    def _last(self, marker: str, unless: str | None = None) -> Call | None:
        found = [c for c in self.calls if marker in c.text and not (unless and unless in c.text)]
        return found[-1] if found else None

    def step(self) -> tuple[str, dict[str, Any]] | str:
        """A tool call ``(tool, argument)`` to make next, or the final text."""
        if self.hang:
            # Every turn: codex returns from a long command after a while and leaves it running.
            return ("shell", {"command": HANG_COMMAND})
        if not (self.name and self.text):
            return "STUB-DONE nothing asked"
        copy_name = self.name + ".copy"
        wrote = self._last(self.text, unless=copy_name)
        if wrote is None:
            return ("write", {"name": self.name, "text": self.text + "\n"})
        if wrote.running is not None:
            return ("poll", {"session_id": wrote.running})
        if wrote.failed:
            return f"STUB-FAILED write: {wrote.output[-2000:]}"
        copied = self._last(copy_name)
        if copied is None:
            src, dst = shlex.quote(self.name), shlex.quote(copy_name)
            return ("shell", {"command": f"cp {src} {dst} && echo copied"})
        if copied.running is not None:
            return ("poll", {"session_id": copied.running})
        if copied.failed or "copied" not in copied.output:
            return f"STUB-FAILED copy: {copied.output[-2000:]}"
        return f"STUB-DONE {self.text}"


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing -------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def _authorized(self) -> bool:
        given = self.headers.get("x-api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")
        return given == self.server.key

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def _record(self, body: dict[str, Any]) -> None:
        self.server.record({"path": self.path, "body": body})

    # --- routes ---------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"data": [], "models": []})
        else:
            self._json(404, {"error": {"type": "not_found", "message": self.path}})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self._authorized():
            self._json(401, {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}})
        elif path.endswith("/messages/count_tokens"):
            self._json(200, {"input_tokens": len(json.dumps(body)) // 4})
        elif path.endswith("/messages"):
            self._anthropic(body)
        elif path.endswith("/responses"):
            self._openai(body)
        else:
            self._json(404, {"error": {"type": "not_found", "message": self.path}})

    # --- Anthropic Messages ----------------------------------------------------------
    def _anthropic(self, body: dict[str, Any]) -> None:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        first_user = next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), "")
        calls: dict[str, Call] = {}
        for block in (c for m in messages if isinstance(m.get("content"), list) for c in m["content"]):
            if isinstance(block, dict) and block.get("type") == "tool_use":
                calls[str(block.get("id"))] = Call(json.dumps(block.get("input")))
            elif isinstance(block, dict) and block.get("type") == "tool_result" and block.get("tool_use_id") in calls:
                calls[block["tool_use_id"]].answered(text_of(block.get("content")), bool(block.get("is_error")))
        everything = "\n".join([text_of(body.get("system")), *(text_of(m.get("content")) for m in messages)])
        plan = Plan(first_user, everything, list(calls.values()))
        input_tokens = plan.usage or len(json.dumps(body)) // 4
        model = str(body.get("model") or "stub")
        if not body.get("tools"):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": "Stub"}]
            stop = "end_turn"
        else:
            step = plan.step()
            if isinstance(step, str):
                blocks, stop = [{"type": "text", "text": step}], "end_turn"
            else:
                tool, arg = step
                if tool == "write":
                    path = f"{plan.cwd.rstrip('/')}/{arg['name']}" if plan.cwd else arg["name"]
                    call = {"name": "Write", "input": {"file_path": path, "content": arg["text"]}}
                else:
                    call = {"name": "Bash", "input": {"command": arg["command"], "description": "stub step"}}
                blocks = [{"type": "tool_use", "id": next_id("toolu"), **call}]
                stop = "tool_use"
        output_tokens = sum(len(json.dumps(b)) // 4 + 1 for b in blocks)
        message = {
            "id": next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        if not body.get("stream"):
            usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
            self._json(200, {**message, "content": blocks, "stop_reason": stop, "usage": usage})
            return
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": {**message, "content": []}})
        ]
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events += [
                ("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
                ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
                ("content_block_stop", {"type": "content_block_stop", "index": i}),
            ]
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        self._sse(events)

    # --- OpenAI Responses ------------------------------------------------------------
    def _openai(self, body: dict[str, Any]) -> None:
        items = [i for i in body.get("input") or [] if isinstance(i, dict)]
        users = [text_of(i.get("content")) for i in items if i.get("role") == "user"]
        # codex sends its environment context as a user message too: find the one with our marker.
        first_user = next((u for u in users if "STUB-" in u), users[0] if users else "")
        calls: dict[str, Call] = {}
        polled: dict[str, Call] = {}  # a write_stdin poll's call id -> the call whose session it polls
        for i in items:
            call_id = str(i.get("call_id"))
            if i.get("type") in ("function_call", "custom_tool_call"):
                args = str(i.get("arguments") or i.get("input"))
                session = re.search(r'"session_id": ?(\d+)', args) if i.get("name") == "write_stdin" else None
                if session:
                    polled[call_id] = next((c for c in calls.values() if c.running == int(session.group(1))), Call(""))
                else:
                    calls[call_id] = Call(args)
            elif i.get("type") in ("function_call_output", "custom_tool_call_output"):
                if call_id in polled:  # what the command printed since, and maybe how it ended
                    polled[call_id].answered(polled[call_id].output + "\n" + text_of(i.get("output")))
                elif call_id in calls:
                    calls[call_id].answered(text_of(i.get("output")))
        plan = Plan(first_user, "", list(calls.values()))
        input_tokens = plan.usage or len(json.dumps(body)) // 4
        response_id = next_id("resp")
        step = plan.step()
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        if isinstance(step, str):
            item: dict[str, Any] = {
                "type": "message",
                "role": "assistant",
                "id": next_id("msg"),
                "content": [{"type": "output_text", "text": step, "annotations": []}],
            }
        else:
            tool, arg = step
            if tool == "write":
                command = f"printf '%s\\n' {shlex.quote(arg['text'].rstrip())} > {shlex.quote(arg['name'])}"
            else:
                command = arg.get("command", "")
            if tool == "poll":
                name, args = "write_stdin", {"session_id": arg["session_id"], "chars": "", "yield_time_ms": 30_000}
            elif "exec_command" in tools:
                name, args = "exec_command", {"cmd": command, "yield_time_ms": 30_000}
            else:
                name, args = "shell", {"command": ["bash", "-lc", command]}
            item = {
                "type": "function_call",
                "id": next_id("fc"),
                "call_id": next_id("call"),
                "name": name,
                "arguments": json.dumps(args),
            }
        output_tokens = len(json.dumps(item)) // 4 + 1
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        base = {"id": response_id, "object": "response", "model": body.get("model"), "status": "in_progress"}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": base}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
        ]
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append(
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": text,
                    },
                )
            )
        events += [
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "response": {**base, "status": "completed", "output": [item], "usage": usage},
                },
            ),
        ]
        self._sse(events)


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], key: str, log_path: str | None) -> None:
        super().__init__(address, Handler)
        self.key = key
        self.log_path = log_path

    def server_bind(self) -> None:
        # HTTPServer's own looks its address up in DNS, which inside the test's namespace only times out.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def record(self, entry: dict[str, Any]) -> None:
        if self.log_path:
            with _lock, open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log")
    args = parser.parse_args()
    server = StubServer((args.host, args.port), args.key, args.log)
    print(f"listening {server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
