"""A stand-in for agent CLIs and commands, run as a real process by the runtime tests.

fake_agent.py lines N              N stdout lines, one stderr line, exit 0
fake_agent.py fail CODE            a stderr line, exit CODE
fake_agent.py flood                stdout without end
fake_agent.py sleep PIDFILE        write own pid, sleep forever
fake_agent.py family PIDFILE [stubborn] [setsid]
                                   start a grandchild (ignoring SIGTERM if stubborn, in a
                                   session of its own if setsid, as agent CLIs run shell commands),
                                   write "childpid grandchildpid", sleep forever
fake_agent.py orphan PIDFILE       start a grandchild, write its pid, exit 0 at once
fake_agent.py claude SCENARIO ARGV...   claude --print --output-format stream-json --verbose
                                   --permission-mode MODE [...] -- PROMPT
                                   SCENARIO: success | error | noresult | greedy | denied | retry
fake_agent.py codex SCENARIO ARGV...    codex exec --json --skip-git-repo-check [...] -- PROMPT
                                   SCENARIO: success | legacy | failed | item_error | backtrace | rollout

The agent CLIs record their arguments and environment in ``run.json`` inside their config
folder (``$CLAUDE_CONFIG_DIR``, ``$CODEX_HOME``), where the runtime tests look for them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def say(obj: Any) -> None:
    print(json.dumps(obj) if not isinstance(obj, str) else obj, flush=True)


def write_atomically(path: str, text: str) -> None:
    # The test polls for the file; it must never see it half-written.
    tmp = f"{path}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def sleep_forever() -> None:
    while True:
        time.sleep(60)


def start_grandchild(pidfile: str, stubborn: bool, *, own_session: bool = False) -> int:
    gpidfile = f"{pidfile}.grandchild"
    args = [sys.executable, __file__, "grandchild", gpidfile, *(["stubborn"] if stubborn else [])]
    child = subprocess.Popen(args, start_new_session=own_session)
    while not Path(gpidfile).exists():
        time.sleep(0.01)
    return child.pid


def family(pidfile: str, stubborn: bool, own_session: bool = False) -> None:
    grandchild = start_grandchild(pidfile, stubborn, own_session=own_session)
    write_atomically(pidfile, f"{os.getpid()} {grandchild}")
    sleep_forever()


def grandchild(pidfile: str, stubborn: bool) -> None:
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_atomically(pidfile, str(os.getpid()))
    sleep_forever()


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def assistant(message_id: str, content: list[dict[str, Any]], usage: dict[str, int]) -> dict[str, Any]:
    return {"type": "assistant", "message": {"id": message_id, "content": content, "usage": usage}}


def prompt_after_dashes(name: str, argv: list[str], expected: list[str], config_var: str) -> str | None:
    """The prompt (the one argument after ``--``); records the call in ``$<config_var>/run.json``."""
    if argv[: len(expected)] != expected or "--" not in argv or argv.index("--") != len(argv) - 2:
        print(f"fake {name}: unexpected arguments {argv}", file=sys.stderr)
        return None
    config = os.environ.get(config_var)
    if config:
        record = {"argv": argv, "env": dict(os.environ), "files": sorted(os.listdir(config))}
        Path(config, "run.json").write_text(json.dumps(record))
    return argv[-1]


def claude(scenario: str, argv: list[str]) -> int:
    expected = ["--print", "--output-format", "stream-json", "--verbose", "--permission-mode"]
    prompt = prompt_after_dashes("claude", argv, expected, "CLAUDE_CONFIG_DIR")
    if prompt is None:
        return 2
    say({"type": "system", "subtype": "init", "session_id": "s-1", "model": "fake-claude", "cwd": os.getcwd()})
    if scenario == "retry":
        say(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 1,
                "max_retries": 10,
                "retry_delay_ms": 500,
                "error_status": 529,
                "error": "overloaded_error",
            }
        )
    if scenario == "greedy":
        say(assistant("m1", [text("thinking hard")], {"input_tokens": 4000, "output_tokens": 1000}))
        sleep_forever()
    usage = {"input_tokens": 10, "cache_read_input_tokens": 100, "output_tokens": 5}
    say(assistant("m1", [text("I will write NOTES.md.")], usage))
    if scenario == "error":
        say({"type": "result", "subtype": "error_during_execution", "is_error": True, "result": "API Error: 529"})
        return 1
    tool = {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "NOTES.md"}}
    # Claude repeats a response's usage on each of its lines; only the last counts.
    say(assistant("m1", [tool], {**usage, "output_tokens": 20}))
    Path("NOTES.md").write_text(prompt)
    result = {"type": "tool_result", "tool_use_id": "t1", "content": [text("File created")]}
    say({"type": "user", "message": {"role": "user", "content": [result]}})
    say("debug: not json at all")
    say(assistant("m2", [text("Done.")], usage))
    if scenario == "noresult":
        return 0
    denied = [{"tool_name": "Bash", "tool_use_id": "t2", "tool_input": {"command": "rm -rf build"}}]
    say(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": 2,
            "duration_ms": 12,
            "session_id": "s-1",
            "result": "Wrote NOTES.md with the objective.",
            "total_cost_usd": 0.0012,
            # As the real CLI does: per-service breakdowns besides the counts.
            "usage": {
                "input_tokens": 20,
                "cache_read_input_tokens": 200,
                "output_tokens": 25,
                "server_tool_use": {"web_search_requests": 0},
                "service_tier": "standard",
            },
            "permission_denials": denied if scenario == "denied" else [],
        }
    )
    return 0


def codex(scenario: str, argv: list[str]) -> int:
    if prompt_after_dashes("codex", argv, ["exec", "--json", "--skip-git-repo-check"], "CODEX_HOME") is None:
        return 2
    if scenario == "backtrace":
        # What codex prints with RUST_BACKTRACE set: the error, then far more frames than any tail keeps.
        print(
            "Error: failed to initialize in-process app-server client: Read-only file system (os error 30)",
            file=sys.stderr,
        )
        print("\nStack backtrace:", file=sys.stderr)
        for i in range(40):
            print(f"  {i}: <unknown>", file=sys.stderr)
        return 1
    if scenario == "rollout":
        # Usage only in the session log, after each model response; stdout stays quiet meanwhile.
        day = Path(os.environ["CODEX_HOME"], "sessions", "2026", "12", "01")
        day.mkdir(parents=True)
        log = day / "rollout-2026-12-01T00-00-00-th-1.jsonl"
        say({"type": "thread.started", "thread_id": "th-1"})
        for n in range(1, 100):
            usage = {"input_tokens": 1000 * n, "output_tokens": 10 * n, "total_tokens": 1010 * n}
            record = {"type": "event_msg", "payload": {"type": "token_count", "info": {"total_token_usage": usage}}}
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            time.sleep(0.2)
        return 0
    if scenario == "legacy":
        say({"id": "0", "msg": {"type": "agent_message", "message": "Legacy done."}})
        say({"id": "0", "msg": {"type": "token_count", "info": {"total_token_usage": {"total_tokens": 12}}}})
        say({"id": "0", "msg": {"type": "task_complete", "last_agent_message": "Legacy done."}})
        return 0
    say({"type": "thread.started", "thread_id": "th-1"})
    say({"type": "turn.started"})
    if scenario == "failed":
        say({"type": "turn.failed", "error": {"message": "model overloaded"}})
        return 1
    if scenario == "item_error":
        say({"type": "item.completed", "item": {"id": "i0", "type": "error", "message": "Model metadata not found"}})
        return 0
    say({"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "look around"}})
    say(
        {
            "type": "item.started",
            "item": {"id": "i1", "type": "command_execution", "command": "ls", "status": "in_progress"},
        }
    )
    failed = {"id": "i1", "type": "command_execution", "command": "ls", "status": "failed", "exit_code": 2}
    say({"type": "item.completed", "item": {**failed, "aggregated_output": "ls: cannot access 'x'\n" * 100}})
    say("plain text from codex")
    say({"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "All done."}})
    say({"type": "turn.completed", "usage": {"input_tokens": 120, "cached_input_tokens": 20, "output_tokens": 30}})
    return 0


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "lines":
        for i in range(int(args[0])):
            print(f"line {i + 1}", flush=True)
        print("a warning on stderr", file=sys.stderr, flush=True)
        return 0
    if mode == "fail":
        print("something broke", file=sys.stderr, flush=True)
        return int(args[0])
    if mode == "flood":
        chunk = "x" * 1023 + "\n"
        while True:
            sys.stdout.write(chunk * 64)
    if mode == "sleep":
        write_atomically(args[0], str(os.getpid()))
        sleep_forever()
    if mode == "family":
        family(args[0], stubborn="stubborn" in args[1:], own_session="setsid" in args[1:])
    if mode == "orphan":
        write_atomically(args[0], str(start_grandchild(args[0], stubborn=False)))
        return 0
    if mode == "grandchild":
        grandchild(args[0], stubborn="stubborn" in args[1:])
    if mode == "claude":
        return claude(args[0], args[1:])
    if mode == "codex":
        return codex(args[0], args[1:])
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
