"""The one place that starts child processes for a mission.

A child runs in the mission workspace as the leader of a new session, so it and
everything it starts share one process group that can be signalled at once.
Cancellation (cancel request, lost lease, deadline, shutdown) arrives as
:class:`asyncio.CancelledError`: the group gets SIGTERM, a short grace, then
SIGKILL, and the leader is reaped before the error goes on. No exit path leaves
a member of the group running.

With ``ctx.sandbox`` set (the worker always sets it) the program runs inside the
mission's sandbox (:mod:`ua_vp.sandbox`). The wrapper is the group leader and the
sandboxed processes stay in its group, so the same signals reach them; under
bwrap and Landlock they also die with their PID namespace when the wrapper does,
even ones that left the group, and under ``none`` the wrapper is a subreaper that
kills them (:func:`ua_vp.sandbox_exec.run_reaper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ua_vp.errors import BudgetExceeded, ConfigError, LimitExceeded, RuntimeFailed
from ua_vp.runtimes.environment import child_env, prepare_home

if TYPE_CHECKING:
    from ua_vp.limits import Applied
    from ua_vp.profiles import MissionContext
    from ua_vp.sandbox import Command
    from ua_vp.sandbox_net import PrivateNetwork

log = structlog.get_logger(__name__)

TERM_GRACE_SECONDS = 2.0
"""How long a process group may take to exit after SIGTERM before it gets SIGKILL."""
EVENT_TEXT_CHARS = 2048
"""Longest text a progress event carries; the rest is cut with a note of how much."""
TAIL_LINES = 20

_CHUNK = 64 * 1024
# A line is handed over whole (agent CLIs put one JSON message per line) up to
# this size; past it the pieces go separately, so a child that never writes a
# newline cannot grow our memory without bound.
_MAX_LINE_BYTES = 8 * 1024 * 1024
# "Error: …", "error: …", "fatal: …", a Rust panic: a line saying what went wrong.
_ERROR_LINE = re.compile(r"\s*(error|fatal|panic)\b|\s*thread '.*' panicked", re.IGNORECASE)
# Backtrace frames ("  7: <unknown>", "      at src/main.rs:4"), their headings and hints.
_NOISE_LINE = re.compile(
    r"\s*(\d+: |at \S|stack backtrace:|backtrace:|note: run with `?RUST_BACKTRACE|note: Some details are omitted)",
    re.IGNORECASE,
)
FALLBACK_HOME = ".home"
"""``HOME`` inside the workspace for a context without its own home (an executor run outside a worker)."""
_POLL_SECONDS = 0.02
_DRAIN_SECONDS = 2.0

LineHandler = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ProcessResult:
    """How a child process ended (only returned when it ended on its own)."""

    program: str
    pid: int
    exit_code: int
    """Negative when a signal ended it (``-9`` for SIGKILL), as :mod:`asyncio` reports it."""
    stdout_tail: list[str]
    stderr_tail: list[str]
    stderr_errors: list[str]
    """The last stderr lines that state an error (see :func:`is_error_line`), however long ago."""
    output_bytes: int
    seconds: float
    limit: LimitExceeded | None = None
    """The per-mission limit (:mod:`ua_vp.limits`) the process tree ran into, when it failed on one."""

    def raise_for_limit(self) -> None:
        """Raise :class:`LimitExceeded` when the process failed on a per-mission limit."""
        if self.exit_code != 0 and self.limit is not None:
            raise LimitExceeded(
                f"{self.limit.message}; {self.program} {self._how()}", **self.limit.details, exit_code=self.exit_code
            )

    def _how(self) -> str:
        if self.exit_code < 0:
            return f"was killed by {signal.Signals(-self.exit_code).name}"
        return f"exited with code {self.exit_code}"

    def raise_for_exit(self) -> None:
        """Raise :class:`LimitExceeded` for a failure on a limit, else :class:`RuntimeFailed` naming
        the exit code and what stderr said, unless it exited 0."""
        if self.exit_code == 0:
            return
        self.raise_for_limit()
        how = self._how()
        said = stderr_summary(self.stderr_errors, self.stderr_tail)
        raise RuntimeFailed(
            f"{self.program} {how}" + (f"; last stderr: {said}" if said else "; it wrote nothing to stderr"),
            exit_code=self.exit_code,
            stderr_tail=self.stderr_tail,
        )


def is_error_line(line: str) -> bool:
    """Whether a stderr line states an error (``Error: …``, ``error: …``, a panic), as opposed to detail."""
    return _ERROR_LINE.match(line) is not None


def stderr_summary(errors: Sequence[str], tail: Sequence[str], *, lines: int = 5) -> str:
    """What a failure message quotes from stderr: its error lines, then its last lines that are not
    backtrace frames, without repeats. A backtrace (``RUST_BACKTRACE``) is dozens of frames that
    would otherwise push the one line that says what went wrong out of the message."""
    shown: list[str] = []
    context = [t.strip() for t in tail if t.strip() and not _NOISE_LINE.match(t)]
    for line in [*[e.strip() for e in errors[-3:]], *context[-lines:]]:
        if line and line not in shown:
            shown.append(line)
    return "\n".join(shown)


def clip(text: str, limit: int = EVENT_TEXT_CHARS, *, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut; ``keep_end`` keeps the
    last ones (where a command's error usually is)."""
    if len(text) <= limit:
        return text
    if keep_end:
        return f"[{len(text) - limit} chars before] …{text[-limit:]}"
    return f"{text[:limit]}… [{len(text) - limit} more chars]"


def output_events(ctx: MissionContext, stream: str) -> LineHandler:
    """A line handler that records each non-blank line as one ``output`` progress event."""

    def emit(line: str) -> None:
        if line.strip():
            ctx.emit("output", {"stream": stream, "line": clip(line)})

    return emit


def mission_home(ctx: MissionContext) -> Path:
    """The attempt's home: ``ctx.home``, or a folder in the workspace when the context has none."""
    return ctx.home if ctx.home is not None else ctx.workspace / FALLBACK_HOME


async def run_process(
    argv: Sequence[str],
    ctx: MissionContext,
    *,
    on_stdout: LineHandler,
    on_stderr: LineHandler | None = None,
    env: Mapping[str, str] | None = None,
    pass_env: Collection[str] = (),
    check: bool = True,
    setting: str | None = None,
    term_grace: float = TERM_GRACE_SECONDS,
) -> ProcessResult:
    """Run ``argv`` in ``ctx.workspace`` and hand each output line to a callback.

    :param on_stdout: called with every stdout line (without the newline), in order.
        An exception it raises stops the process group and propagates.
    :param on_stderr: the same for stderr; default: a progress event ``output`` per line.
    :param env: variables the child gets with these values (they win over every other source).
    :param pass_env: names of the worker's variables the program needs (an API key, say); copied when set.
        Everything else the child sees is the allow-list of :mod:`ua_vp.runtimes.environment`.
    :param check: raise :class:`RuntimeFailed` on a non-zero exit.
    :param setting: the variable that names the program, quoted when it cannot start.

    Emits ``process_started`` (``pid``, ``pgid``) and ``process_exited`` progress events.
    ``budget.max_output_bytes`` caps stdout plus stderr: past it the group is
    killed and :class:`BudgetExceeded` raised.
    """
    program = Path(argv[0]).name
    proc, command = await _spawn(argv, ctx, env, pass_env, setting)
    network = command.network if command else None
    limits = command.limits if command else None
    try:
        return await _supervise(proc, network, limits, ctx, program, on_stdout, on_stderr, check, term_grace)
    finally:
        if command is not None:
            command.finished()  # synchronous: it must happen even on a second cancellation
        if network is not None:
            await network.close()


async def _supervise(
    proc: asyncio.subprocess.Process,
    network: PrivateNetwork | None,
    limits: Applied | None,
    ctx: MissionContext,
    program: str,
    on_stdout: LineHandler,
    on_stderr: LineHandler | None,
    check: bool,
    term_grace: float,
) -> ProcessResult:
    # start_new_session made the child a session and group leader: its pgid is its pid.
    pgid = proc.pid
    started = time.monotonic()
    ctx.emit("process_started", {"pid": proc.pid, "pgid": pgid, "program": program})
    ctx.log.info("process_started", pid=proc.pid, program=program)

    meter = _OutputMeter(ctx.budget.get("max_output_bytes"), program)
    stdout_tail: deque[str] = deque(maxlen=TAIL_LINES)
    stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
    stderr_errors: deque[str] = deque(maxlen=TAIL_LINES)
    assert proc.stdout is not None and proc.stderr is not None
    waiter = asyncio.ensure_future(_until_exit(proc))
    on_stdout = _kept(ctx, "stdout", on_stdout)
    on_stderr = _kept(ctx, "stderr", on_stderr or output_events(ctx, "stderr"))
    pumps = [
        asyncio.ensure_future(_pump(proc.stdout, meter, stdout_tail, on_stdout)),
        asyncio.ensure_future(_pump(proc.stderr, meter, stderr_tail, on_stderr, errors=stderr_errors)),
    ]
    try:
        if network is not None:
            # The program waits for this before it starts; its output is already being read.
            await network.attach()
        pending: set[asyncio.Future[Any]] = {waiter, *pumps}
        while not waiter.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a pump's BudgetExceeded or callback error surfaces here
        # The leader is gone; what is left of its group is debris, and it may hold
        # our pipes open, so stop it before reading the pipes to the end.
        if await _stop_group(proc, pgid, term_grace):
            ctx.log.warning("process_leftovers_stopped", pid=proc.pid, program=program)
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                await asyncio.gather(*pumps)
            await _close_pipes(proc)
        except TimeoutError:
            # Only a process that left the group (setsid) can still hold them; we do not wait for it.
            ctx.log.warning("process_output_held_open", pid=proc.pid, program=program)
    except BaseException as exc:
        await _stop_group(proc, pgid, term_grace)
        for task in (waiter, *pumps):
            task.cancel()
        await asyncio.gather(waiter, *pumps, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                await _close_pipes(proc)
        ctx.log.info("process_stopped", pid=proc.pid, program=program, reason=type(exc).__name__)
        raise

    exit_code = proc.returncode if proc.returncode is not None else -1
    result = ProcessResult(
        program=program,
        pid=proc.pid,
        exit_code=exit_code,
        stdout_tail=list(stdout_tail),
        stderr_tail=list(stderr_tail),
        stderr_errors=list(stderr_errors),
        output_bytes=meter.total,
        seconds=round(time.monotonic() - started, 3),
        limit=limits.breach(exit_code, [*stderr_errors, *stderr_tail]) if limits else None,
    )
    exited = {"pid": proc.pid, "exit_code": result.exit_code, "output_bytes": meter.total}
    if result.limit is not None:
        exited["limit"] = result.limit.details["limit"]
    ctx.emit("process_exited", exited)
    ctx.log.info("process_exited", pid=proc.pid, program=program, exit_code=result.exit_code)
    if check:
        result.raise_for_exit()
    return result


def _kept(ctx: MissionContext, stream: str, on_line: LineHandler) -> LineHandler:
    """``on_line``, with each line also kept in the attempt's output log (when there is one)."""
    log = ctx.output_log
    if log is None:
        return on_line

    def keep(line: str) -> None:
        log.write(stream, line)
        on_line(line)

    return keep


async def _spawn(
    argv: Sequence[str],
    ctx: MissionContext,
    env: Mapping[str, str] | None,
    pass_env: Collection[str],
    setting: str | None,
) -> tuple[asyncio.subprocess.Process, Command | None]:
    if not ctx.workspace.is_dir():
        # Checked first so a missing cwd is not reported as a missing program.
        raise RuntimeFailed(f"mission workspace {ctx.workspace} does not exist", workspace=str(ctx.workspace))
    home = mission_home(ctx)
    await asyncio.to_thread(prepare_home, home)
    variables = child_env(home=home, pass_env=pass_env, agent_env=ctx.settings.agent_env, values=env)
    command: Command | None = None
    if ctx.sandbox is not None:
        command = _sandboxed(argv, ctx, variables, setting)
        argv, variables = command.argv, {**variables, **command.env}
    network = command.network if command else None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ctx.workspace,
            stdin=network.go_r if network and command and command.stdin_go else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=variables,
            pass_fds=command.pass_fds if command else (),
        )
    except BaseException as exc:
        if command is not None:
            command.started()
            command.finished()
        if network is not None:
            await network.close()
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise _cannot_start(argv[0], exc.strerror or str(exc), setting) from None
        if isinstance(exc, OSError):
            raise RuntimeFailed(f"cannot start {argv[0]!r}: {exc}", program=argv[0]) from None
        raise
    if command is not None:
        command.started()
    return proc, command


def _sandboxed(argv: Sequence[str], ctx: MissionContext, env: dict[str, str], setting: str | None) -> Command:
    """``argv`` wrapped in the mission's sandbox; records which one in a ``sandbox`` event."""
    assert ctx.sandbox is not None
    # Found here, not by the sandbox or the limits wrapper: a missing program must stay a
    # ConfigError naming the setting, not a wrapper's exit code.
    argv = [_find_program(argv[0], ctx, env.get("PATH"), setting), *argv[1:]]
    command = ctx.sandbox.command(
        argv, workspace=ctx.workspace, home=mission_home(ctx), constraints=ctx.mission.constraints
    )
    ctx.emit("sandbox", command.record)
    if not ctx.sandbox.sandboxed:
        ctx.log.warning("mission_unsandboxed", reason=ctx.sandbox.reason)
    return command


def _find_program(program: str, ctx: MissionContext, path: str | None, setting: str | None) -> str:
    found: str | None
    if os.sep in program:
        # Relative to the child's working directory, the workspace; an absolute path stays itself.
        candidate = os.path.join(ctx.workspace, program)
        found = candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which(program, path=path)
    if found is None:
        raise _cannot_start(program, "not found, or not an executable file", setting)
    return os.path.abspath(found)


def _cannot_start(program: str, why: str, setting: str | None) -> ConfigError:
    hint = f"; set {setting} to an executable on PATH or an absolute path" if setting else ""
    return ConfigError(f"cannot start {program!r}: {why}{hint}", program=program, setting=setting)


class _OutputMeter:
    """Counts bytes from both pipes against ``budget.max_output_bytes``."""

    def __init__(self, limit: float | None, program: str) -> None:
        self.limit = int(limit) if limit is not None else None
        self.program = program
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise BudgetExceeded(
                f"{self.program} wrote more than budget.max_output_bytes={self.limit} bytes of output; it was stopped",
                budget="max_output_bytes",
                limit=self.limit,
                used=self.total,
            )


class _Lines:
    """Splits a byte stream into decoded lines."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        if b"\n" not in chunk:
            # Only the new bytes can hold a newline; re-scanning a long partial line per chunk is quadratic.
            if len(self._buf) <= _MAX_LINE_BYTES:
                return []
            return self.flush()
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        return [_decode(line) for line in lines]

    def flush(self) -> list[str]:
        if not self._buf:
            return []
        line = _decode(self._buf)
        self._buf = bytearray()
        return [line]


def _decode(raw: bytes | bytearray) -> str:
    return raw.decode("utf-8", errors="replace").removesuffix("\r")


async def _pump(
    stream: asyncio.StreamReader,
    meter: _OutputMeter,
    tail: deque[str],
    on_line: LineHandler,
    *,
    errors: deque[str] | None = None,
) -> None:
    lines = _Lines()

    def take(line: str) -> None:
        tail.append(clip(line, 500))
        if errors is not None and is_error_line(line):
            errors.append(clip(line, 500))
        on_line(line)

    while chunk := await stream.read(_CHUNK):
        meter.add(len(chunk))
        for line in lines.feed(chunk):
            take(line)
    for line in lines.flush():
        take(line)


async def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Read both pipes to their end, so asyncio closes the transport now and not
    in a garbage-collector warning after the event loop is gone."""
    for stream in (proc.stdout, proc.stderr):
        while stream is not None and await stream.read(_CHUNK):
            pass
    await asyncio.sleep(0)  # a turn for the transport's own exit callbacks


async def _stop_group(proc: asyncio.subprocess.Process, pgid: int, grace: float) -> bool:
    """SIGTERM the group, allow ``grace`` seconds, SIGKILL whatever is left, reap the leader.

    Descendants that left the group (an agent CLI runs its shell commands in sessions of
    their own, on a terminal) get the same signals, as long as the leader still lives to
    show whose they are; under bwrap the PID namespace takes any others down as well.
    Returns whether any member was still running."""
    strays = _strays(proc.pid, pgid) if proc.returncode is None else set()
    if not _group_alive(pgid) or not _signal_group(pgid, signal.SIGTERM):
        _signal_each(strays, signal.SIGKILL)
        await _until_exit(proc)
        return False
    _signal_each(strays, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await _until_exit(proc)
        # The leader may exit at once while a child of it ignores SIGTERM.
        while _group_alive(pgid) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
    finally:
        # Also on a second cancellation during the grace: the group must not outlive us.
        # Strays again first, while the leader lives to show whose they are: some may be new.
        if proc.returncode is None:
            strays |= _strays(proc.pid, pgid)
        _signal_each(strays, signal.SIGKILL)
        _signal_group(pgid, signal.SIGKILL)
    await _until_exit(proc)
    return True


def _strays(leader: int, pgid: int) -> set[int]:
    """Live descendants of ``leader`` outside process group ``pgid``."""
    parents: dict[int, tuple[int, int]] = {}
    for pid, fields in _proc_stats():
        if len(fields) > 3 and fields[0] not in (b"Z", b"X"):
            parents[pid] = (int(fields[1]), int(fields[2]))
    found: set[int] = set()
    frontier = {leader}
    while frontier:
        frontier = {pid for pid, (parent, _) in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    return {pid for pid in found if parents[pid][1] != pgid}


def _signal_each(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _proc_stats() -> list[tuple[int, list[bytes]]]:
    """``(pid, fields after the command name)`` of every process in /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    stats = []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may itself contain spaces and ")".
        stats.append((int(name), stat[stat.rfind(b")") + 2 :].split()))
    return stats


async def _until_exit(proc: asyncio.subprocess.Process) -> int:
    """The leader's exit code once it has exited and been reaped.

    Not ``proc.wait()``: that also waits for the pipes to close, which a member
    of the group that outlived the leader keeps open."""
    while proc.returncode is None:
        await asyncio.sleep(_POLL_SECONDS)
    return proc.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a member of the group is running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(2) also finds zombies, and in a container without an init process
    # nobody reaps orphaned ones; waiting out the grace for them would be wasted.
    return any(len(f) > 2 and f[0] not in (b"Z", b"X") and int(f[2]) == pgid for _, f in _proc_stats())
