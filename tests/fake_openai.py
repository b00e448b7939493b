"""A tiny OpenAI-compatible server, run as a real process by the runtime tests.

    fake_openai.py [--answer TEXT] [--prompt-tokens N] [--completion-tokens N]
                   [--fail-first K] [--fail-status CODE] [--fail-message TEXT]

Binds 127.0.0.1 on a free port and prints ``PORT <n>``. ``POST /v1/chat/completions``
answers with a chat completion (the first K requests get CODE instead, with TEXT
as the error message);
``GET /requests`` lists what it was sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def make_handler(opts: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/requests":
                self._send(200, received)
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            received.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
            elif len(received) <= opts.fail_first:
                self._send(opts.fail_status, {"error": {"message": opts.fail_message, "type": "server_error"}})
            else:
                usage = {
                    "prompt_tokens": opts.prompt_tokens,
                    "completion_tokens": opts.completion_tokens,
                    "total_tokens": opts.prompt_tokens + opts.completion_tokens,
                }
                choice = {"index": 0, "message": {"role": "assistant", "content": opts.answer}, "finish_reason": "stop"}
                completion = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [choice],
                }
                self._send(200, {**completion, "usage": usage})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answer", default="# Answer\n\nThe fake model says hello.")
    parser.add_argument("--prompt-tokens", type=int, default=40)
    parser.add_argument("--completion-tokens", type=int, default=12)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--fail-message", default="upstream exploded")
    opts = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(opts))
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
    sys.exit(0)
