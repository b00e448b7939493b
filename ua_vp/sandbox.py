"""The path guard enforced by the operating system: what a mission's processes may touch.

The guard (:mod:`ua_vp.guard`) judges the paths a mission *declares*; a sandbox
confines what its processes *do*. The policy comes from the same
:class:`~ua_vp.guard.GuardPolicy` (one source of truth):

- **Writable**: the mission workspace, the attempt's home (``HOME`` and
  ``TMPDIR`` point into it, since ``/tmp`` is as read-only as the rest), and the
  other allowed roots except the profile's workspace root (``UA_VP_HANDOFF_ROOT``,
  a plugin's allowed roots).
- **Hidden always**: the profile's workspace root and the homes root, apart from
  this mission's own folders: a mission never sees another's.
- **Protected roots**: with ``UA_VP_SANDBOX_PROTECTED=hide`` (default) they look
  empty and read-only; with ``read-only`` they can be read, not changed.
  Nearest root wins, as in the guard: the default workspaces sit inside the
  protected state dir and stay writable.
- **Everything else**: read-only.
- **Network**: always a network namespace of the mission's own. With
  ``constraints.network`` on (the default) slirp4netns gives it outbound
  networking without the host's loopback (:mod:`ua_vp.sandbox_net`); off
  (``false`` or a spelling in :data:`ua_vp.missions.NETWORK_OFF`) it has only its
  own loopback. Under both backends a seccomp filter refuses unix sockets
  (``socket(AF_UNIX)``; ``socketpair`` still works), so no host socket answers.
  The one way back to the host's loopback: ``UA_VP_SANDBOX_LOOPBACK_PORTS``, ports
  (a local model proxy) relayed to the mission's own 127.0.0.1 when it has network
  (:mod:`ua_vp.sandbox_relay`); empty by default.

Backends (``UA_VP_SANDBOX``; ``auto`` takes the first that works here, probed once):

``bwrap``
    bubblewrap: a read-only bind of ``/``, fresh ``/dev`` and ``/proc``, the
    writable roots bound read-write, hidden roots under an empty read-only
    tmpfs (a hidden file under ``/dev/null``), its own PID and IPC namespaces,
    every capability dropped, ``--die-with-parent``, ``--unshare-net`` for a
    mission without network. Not ``--new-session``: the sandboxed processes must
    stay in the process group :mod:`ua_vp.runtimes.process` signals, and with no
    controlling terminal and a private ``/dev/pts`` there is no terminal to inject into.
``landlock``
    the Linux Landlock LSM, applied by :mod:`ua_vp.sandbox_exec` before it execs
    the program (its docstring says what is granted and why a wrapper).
``none``
    no confinement: each process logs ``mission_unsandboxed`` and records a
    ``sandbox`` progress event saying so. The program still runs under
    :mod:`ua_vp.sandbox_exec` ``--reap``, a subreaper that kills what it leaves behind.
    CODIE with ``UA_VP_HARD_BLOCK_UA_REPO=1`` refuses to start with it unless
    ``UA_VP_ALLOW_UNSANDBOXED=1``.

Under every backend, ``none`` included, the program starts through
:mod:`ua_vp.sandbox_exec`, which applies the per-mission limits (:mod:`ua_vp.limits`)
first: as the landlock wrapper itself, as the ``--reap`` wrapper, and as ``--limits-only``
in front of bwrap. With every limit off and no cgroup bwrap has no such wrapper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from ua_vp import limits, missions
from ua_vp.errors import ConfigError, GuardViolation, InvalidConstraint
from ua_vp.limits import Applied, Limits
from ua_vp.sandbox_net import PrivateNetwork, slirp_binary

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.guard import GuardPolicy
    from ua_vp.profiles import Profile

log = structlog.get_logger(__name__)

Backend = Literal["bwrap", "landlock", "none"]
BACKENDS: tuple[Backend, ...] = ("bwrap", "landlock")
"""The real backends, strongest first: the order ``auto`` tries them in."""
SANDBOX_EXEC = Path(__file__).with_name("sandbox_exec.py")
# Runtimes that never start a process: a profile using one has nothing to sandbox,
# so a missing backend must not stop it (the offline dry-run demo on a laptop).
NO_PROCESS_RUNTIMES = frozenset({"dry-run", "openai"})
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Probe:
    """Whether a backend works on this machine, and why (not)."""

    backend: str
    works: bool
    reason: str


@functools.cache
def probe(backend: Backend) -> Probe:
    """Try ``backend`` for real, once per process: a trivial program under the same flags a mission gets."""
    if backend == "none":
        return Probe("none", True, "no confinement")
    if backend == "bwrap":
        return _probe_bwrap()
    return _probe_landlock()


def _probe_bwrap() -> Probe:
    binary = _bwrap_binary()
    if not os.path.isabs(binary):
        return Probe("bwrap", False, "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    shell = shutil.which("sh") or "/bin/sh"
    argv = [binary, *_bwrap_base(), "--tmpfs", "/tmp", "--remount-ro", "/tmp", "--", shell, "-c", ":"]
    return _run_probe("bwrap", argv, ok=f"{binary}: mount, PID, IPC and network namespaces")


def _probe_landlock() -> Probe:
    from ua_vp import sandbox_exec

    try:
        abi = sandbox_exec.abi_version()
    except sandbox_exec.SandboxError as exc:
        return Probe("landlock", False, str(exc))
    ok = f"Landlock ABI {abi} enforced in PID and network namespaces, unix sockets refused"
    return _run_probe("landlock", [*_landlock_prefix(), "--probe"], ok=ok)


def _run_probe(backend: str, argv: list[str], *, ok: str) -> Probe:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(backend, False, f"trial run failed: {exc}")
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return Probe(backend, False, f"trial run exited {done.returncode}: {said[-1] if said else 'no message'}")
    return Probe(backend, True, ok)


def probe_all() -> dict[str, Probe]:
    return {b: probe(b) for b in BACKENDS}


def resolve(setting: str) -> tuple[Backend, str]:
    """The backend ``UA_VP_SANDBOX=setting`` means on this machine, and why.

    An explicit backend that does not work is a :class:`ConfigError`; ``auto``
    with none working resolves to ``none`` (callers decide whether that may run).
    """
    if setting == "none":
        return "none", "UA_VP_SANDBOX=none"
    if setting in BACKENDS:
        found = probe(setting)  # type: ignore[arg-type]
        if not found.works:
            raise ConfigError(
                f"UA_VP_SANDBOX={setting} does not work on this machine: {found.reason}; "
                "use auto to take the strongest backend that does",
                setting="UA_VP_SANDBOX",
                backend=setting,
                reason=found.reason,
            )
        return setting, found.reason  # type: ignore[return-value]
    for backend in BACKENDS:  # in order, so a working bwrap spares the landlock trial run
        if probe(backend).works:
            return backend, f"auto: {probe(backend).reason}"
    why = "; ".join(f"{p.backend}: {p.reason}" for p in map(probe, BACKENDS))
    return "none", f"auto found no working backend ({why})"


def for_profile(profile: Profile, policy: GuardPolicy, settings: Settings) -> Sandbox:
    """The sandbox a worker runs ``profile``'s processes in; chosen at start-up.

    :class:`ConfigError` when the configured backend cannot work here, or when a
    hard-blocking profile would run its processes unconfined without
    ``UA_VP_ALLOW_UNSANDBOXED=1``.
    """
    backend, reason = resolve(settings.sandbox)
    if (
        backend == "none"
        and profile.hard_block
        and not settings.allow_unsandboxed
        and profile.runtime not in NO_PROCESS_RUNTIMES
    ):
        raise ConfigError(
            f"{profile.name} ({profile.vp_id}) keeps missions off the host's own roots (UA_VP_HARD_BLOCK_UA_REPO=1) "
            f"and will not run {profile.runtime} processes without a sandbox ({reason}); install bubblewrap or use "
            "a kernel with Landlock, or set UA_VP_ALLOW_UNSANDBOXED=1 to accept running unconfined",
            setting="UA_VP_SANDBOX",
            vp_id=profile.vp_id,
            reason=reason,
        )
    if backend == "none":
        log.warning("sandbox_disabled", vp_id=profile.vp_id, reason=reason)
    elif profile.runtime not in NO_PROCESS_RUNTIMES and slirp_binary() is None:
        # Without it a mission with network would have to share the host's, loopback included.
        raise ConfigError(
            f"the {backend} sandbox gives each mission a private network through slirp4netns, which is not "
            "installed (Debian/Ubuntu: apt-get install slirp4netns)",
            setting="UA_VP_SANDBOX",
            vp_id=profile.vp_id,
        )
    workspace_root = policy.workspace_root or (policy.allowed[0] if policy.allowed else None)
    roots_of_missions = [settings.homes_root, settings.output_root, *([workspace_root] if workspace_root else [])]
    home, readable = real_home_rules(settings.sandbox_home_readable)
    hidden = [*roots_of_missions, *hidden_by_default(settings, policy), *home]
    # A worker that starts no process has nothing to limit: no cgroup probe for it.
    starts_processes = profile.runtime not in NO_PROCESS_RUNTIMES
    return Sandbox(
        backend=backend,
        reason=reason,
        limits=limits.from_settings(settings) if starts_processes else Limits(),
        protected=policy.protected,
        writable=tuple(root for root in policy.allowed if root != workspace_root),
        protect=settings.sandbox_protected,
        hidden=tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in hidden)),
        readable=readable,
        loopback_ports=tuple(settings.sandbox_loopback_ports),
    )


SOCKET_PATHS = (
    "/run/postgresql",
    "/var/run/postgresql",
    "/run/mysqld",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd",
    "/run/podman",
    "/run/user",
    "/run/dbus",
    "/tmp/.X11-unix",
)
"""Folders and sockets of host services (seccomp refuses unix sockets anyway; these hide them too)."""
HOME_SECRETS = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".docker",
    ".kube",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".claude",
    ".claude.json",
    ".codex",
    ".local/share/keyrings",
    ".password-store",
    ".bash_history",
    ".zsh_history",
    ".python_history",
    ".psql_history",
    ".terraformrc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".terraform.d",
)
"""Where a user's credentials live in their HOME: hidden even inside an entry that stays readable."""


def real_home_rules(keep: Sequence[str]) -> tuple[list[Path], tuple[Path, ...]]:
    """``(hidden, readable)`` for the worker user's real HOME: the whole of it hidden, except its
    toolchains (pyenv, nvm, rustup, an agent CLI in ``~/.local/bin``), which stay readable: the
    entries of HOME holding a ``PATH`` folder (what a mission's ``PATH`` names must run), the
    worker's Python, and the names in ``UA_VP_SANDBOX_HOME_READABLE``. ``*`` there hides only
    the credential stores. A HOME of ``/`` (a service user) hides nothing."""
    home = Path(os.path.realpath(os.path.expanduser("~")))
    if home == Path("/") or not home.is_dir():
        return [], ()
    if "*" in keep:
        return [], ()
    tops = [home / name for name in keep]
    for place in (*os.environ.get("PATH", "").split(os.pathsep), sys.prefix, sys.base_prefix):
        real = Path(os.path.realpath(place)) if place else None
        if real is not None and home in real.parents:
            tops.append(home / real.relative_to(home).parts[0])
    return [home], tuple(dict.fromkeys(p for p in tops if os.path.lexists(p)))


def hidden_by_default(settings: Settings, policy: GuardPolicy) -> list[Path]:
    """What no mission may read, whatever UA_VP_SANDBOX_PROTECTED says: the worker's ``.env``
    files, the database and its folder, host sockets, root-only files in /etc, and the
    credential stores in the real HOME. Only what exists now (a rule needs a path)."""
    found: list[Path] = []
    for folder in (Path.cwd(), *policy.protected):
        found += folder.glob(".env*") if folder.is_dir() else []
    found += database_paths(settings, policy)
    found += [Path(p) for p in SOCKET_PATHS]
    found += root_only("/etc")
    home = Path(os.path.expanduser("~"))
    found += [home / name for name in HOME_SECRETS]
    return [p for p in found if os.path.lexists(p)]


def database_paths(settings: Settings, policy: GuardPolicy) -> list[Path]:
    """The SQLite file's folder (its -wal, -shm and -journal come and go), or just its files when
    that folder also holds a workspace or handoff root; a PostgreSQL socket folder."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return []
        db = Path(os.path.realpath(url.database))
        if any(db.parent == root or db.parent in root.parents for root in policy.allowed):
            return [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
        return [db.parent]
    given = url.query.get("host", ())
    hosts = [url.host or "", *([given] if isinstance(given, str) else given)]
    return [Path(h) for h in hosts if h.startswith("/")]


def root_only(top: str) -> list[Path]:
    """Entries of ``top`` and its subfolders (one level down) that others may not read: /etc/shadow,
    /etc/sudoers, ssh host keys. The sandboxed program may run as root, so file modes do not stop it."""
    found: list[Path] = []
    for folder in (Path(top), *(p for p in Path(top).iterdir() if p.is_dir() and not p.is_symlink())):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if not entry.is_symlink() and not entry.stat(follow_symlinks=False).st_mode & 0o004:
                    found.append(Path(entry.path))
    return found


def describe(profile: Profile, settings: Settings) -> str:
    """One word or phrase for ``ua-vp profiles``: the backend this profile's worker would use here."""
    try:
        backend, _ = resolve(settings.sandbox)
    except ConfigError:
        return f"{settings.sandbox} (unavailable)"
    if backend != "none":
        return backend
    if profile.runtime in NO_PROCESS_RUNTIMES:
        return "none (no processes)"
    if profile.hard_block and not settings.allow_unsandboxed:
        return "none (refuses to start)"
    return "none (unsandboxed)"


def network_allowed(constraints: Mapping[str, Any]) -> bool:
    """False when ``constraints.network`` asks for no network, or says something unknown
    (dispatch refuses those; one stored before that rule runs without network: fail closed)."""
    try:
        return missions.network_allowed(dict(constraints))
    except InvalidConstraint:
        return False


@dataclass(frozen=True)
class Command:
    """A program made ready to run in a sandbox."""

    argv: list[str]
    env: dict[str, str]
    """Variables added to the child's environment."""
    record: dict[str, Any]
    """What the ``sandbox`` progress event says about it."""
    network: PrivateNetwork | None = None
    """The handshake that gives it outbound networking once started (:mod:`ua_vp.sandbox_net`)."""
    fds: tuple[int, ...] = ()
    """Other descriptors the wrapper reads at start; the caller passes them and closes them after."""
    stdin_go: bool = False
    """The wrapper reads the network's go signal on stdin (instead of /dev/null)."""
    limits: Applied | None = None
    """The per-mission limits of this process tree; :meth:`finished` removes its cgroups."""

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (*self.fds, *(self.network.child_fds if self.network else ()))

    def started(self) -> None:
        """The child holds its own copies now (or never will): close ours."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.network is not None:
            self.network.started()

    def finished(self) -> None:
        """The process tree is gone (or never started): remove its cgroups, killing any stragglers."""
        if self.limits is not None:
            self.limits.close()


Access = Literal["write", "read-only", "hide"]
_ORDER: dict[Access, int] = {"write": 0, "read-only": 1, "hide": 2}
"""On a tie (one path under two rules) the later one wins: protection over access."""


@dataclass(frozen=True)
class Sandbox:
    """One profile's confinement; :meth:`command` applies it to one mission's program."""

    backend: Backend
    reason: str
    """Why this backend (the probe's words, or what left it at ``none``)."""
    protected: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    """Writable besides the mission workspace and home."""
    protect: Literal["hide", "read-only"] = "hide"
    hidden: tuple[Path, ...] = ()
    """Hidden whatever ``protect`` says: the folders holding every mission's workspace and home,
    so a mission sees only its own, and the other paths of :func:`hidden_by_default`."""
    readable: tuple[Path, ...] = ()
    """Read-only inside a hidden root: the toolchains in the real HOME (:func:`real_home_rules`)."""
    loopback_ports: tuple[int, ...] = ()
    """Ports of the host's 127.0.0.1 a mission with network reaches at its own (``UA_VP_SANDBOX_LOOPBACK_PORTS``)."""
    limits: Limits = field(default_factory=Limits)
    """Memory, processes, file size and CPU time of every process tree a mission starts."""

    @property
    def sandboxed(self) -> bool:
        return self.backend != "none"

    def command(self, argv: Sequence[str], *, workspace: Path, home: Path, constraints: Mapping[str, Any]) -> Command:
        """``argv`` wrapped for this backend and the limits, run in ``workspace`` with ``home`` writable too.

        :class:`ConfigError` for a program this sandbox hides; :class:`GuardViolation`
        (rule ``network_unenforceable``) for a mission without network that this
        backend cannot cut off. The caller calls :meth:`Command.finished` once the process is gone.
        """
        if not self.sandboxed and not network_allowed(constraints):
            self._cannot_cut_network("no sandbox is in use")
        applied = self.limits.start()
        try:
            command = self._command(argv, workspace, home, constraints, applied.wrapper_args())
        except BaseException:
            applied.close()
            raise
        command.record["limits"] = self.limits.record()
        return dataclasses.replace(command, limits=applied)

    def _command(
        self,
        argv: Sequence[str],
        workspace: Path,
        home: Path,
        constraints: Mapping[str, Any],
        limit_args: list[str],
    ) -> Command:
        network = network_allowed(constraints)
        record: dict[str, Any] = {"backend": self.backend, "sandboxed": self.sandboxed, "network": network}
        if not self.sandboxed:
            record["warning"] = f"ran unsandboxed: {self.reason}"
            # Unconfined, but as a subreaper: what the program leaves behind dies with it.
            return Command([*_landlock_prefix(), "--reap", *limit_args, "--", *argv], {}, record)
        # The policy's roots are realpaths; the workspace must be one too, or nesting is misjudged.
        workspace = Path(os.path.realpath(workspace))
        rules = self.rules(workspace, Path(os.path.realpath(home)))
        self._check_program(argv[0], rules)
        record.update(
            protected=self.protect,
            writable=[str(path) for path, access in rules if access == "write"],
            hidden=[str(path) for path, access in rules if access == "hide"],
            private_network=network,
            # Without network there is no network at all, the host's model proxy included.
            loopback_ports=list(self.loopback_ports) if network else [],
        )
        if self.backend == "landlock":
            net = PrivateNetwork.open(self.loopback_ports) if network else None
            return Command(self._landlock_argv(argv, rules, net, limit_args), {}, record, net)
        seccomp = _seccomp_fd()
        net = PrivateNetwork.open(self.loopback_ports) if network else None
        wrapped = _with_limits(self._bwrap_argv(argv, workspace, rules, net, seccomp), limit_args)
        return Command(wrapped, {}, record, net, (seccomp,), stdin_go=net is not None)

    def rules(self, workspace: Path, home: Path) -> list[tuple[Path, Access]]:
        """Every path with a rule, shallowest first and, at equal depth, protection last;
        what is not under one is read-only."""
        protected: Access = "hide" if self.protect == "hide" else "read-only"
        given: list[tuple[Path, Access]] = [(workspace, "write"), (home, "write")]
        given += [(root, "write") for root in self.writable]
        given += [(root, "read-only") for root in self.readable]
        given += [(root, protected) for root in self.protected]
        given += [(root, "hide") for root in self.hidden]
        existing = [(path, access) for path, access in dict.fromkeys(given) if path.exists()]
        return sorted(existing, key=lambda rule: (len(rule[0].parts), _ORDER[rule[1]]))

    def _bwrap_argv(
        self,
        argv: Sequence[str],
        workspace: Path,
        rules: list[tuple[Path, Access]],
        net: PrivateNetwork | None,
        seccomp: int,
    ) -> list[str]:
        args = [_bwrap_binary(), *_bwrap_base(), "--seccomp", str(seccomp)]
        # Later mounts cover earlier ones below them, so the rules go shallow first: the
        # nearest rule wins, protection on a tie, as in the guard.
        hidden_dirs: list[Path] = []
        applied: list[tuple[Path, Access]] = []
        for path, access in rules:
            # Already treated alike by a mount above it (or by the read-only root): no mount.
            if _access_at(path, applied) == access:
                continue
            applied.append((path, access))
            if access == "write":
                args += ["--bind", str(path), str(path)]
            elif access == "read-only":
                args += ["--ro-bind", str(path), str(path)]
            elif path.is_dir():
                args += ["--tmpfs", str(path)]
                hidden_dirs.append(path)
            else:
                args += ["--ro-bind", "/dev/null", str(path)]
        # Read-only only now: bwrap had to make mount points inside them for nested writable roots.
        for path in hidden_dirs:
            args += ["--remount-ro", str(path)]
        if net is None:
            return [*args, "--chdir", str(workspace), "--", *argv]
        # Not --block-fd: bwrap sets up the loopback after it, and fails once slirp4netns has.
        # The go pipe arrives as stdin (dash redirects only fds 0-9), and /dev/null replaces it.
        info, _ = net.child_fds
        wait = 'read -r go && [ "$go" = 1 ] && exec "$@" </dev/null || exit 125'
        shell = shutil.which("sh") or "/bin/sh"
        return [*args, "--info-fd", str(info), "--chdir", str(workspace), "--", shell, "-c", wait, "sh", *argv]

    def _landlock_argv(
        self, argv: Sequence[str], rules: list[tuple[Path, Access]], net: PrivateNetwork | None, limit_args: list[str]
    ) -> list[str]:
        args = [*_landlock_prefix(), *limit_args]
        for path, access in rules:
            if access == "read-only":
                # Never written, and readable even inside a hidden root (Landlock rules only add).
                args += ["--protect", str(path), "--read", str(path)]
            else:
                args += ["--write" if access == "write" else "--hide", str(path)]
        if net is not None:
            info, go = net.child_fds
            args += ["--info-fd", str(info), "--go-fd", str(go)]
        return [*args, "--", *argv]

    def _check_program(self, program: str, rules: list[tuple[Path, Access]]) -> None:
        # A hidden program fails inside the sandbox with a bare "not found"; say why instead.
        if not os.path.isabs(program):
            return
        # bwrap resolves the path inside its view, where a hidden root is empty: a symlink in one
        # counts too. Landlock checks only the file that is finally executed.
        paths = {Path(os.path.realpath(program))}
        if self.backend == "bwrap":
            paths.add(Path(os.path.normpath(program)))
        for path in paths:
            if _access_at(path, rules) == "hide":
                root = [r for r, _ in rules if r == path or r in path.parents][-1]
                raise ConfigError(
                    f"{program!r} lies inside {str(root)!r}, which the sandbox hides from missions; install it "
                    "elsewhere" + (" or set UA_VP_SANDBOX_PROTECTED=read-only" if root in self.protected else ""),
                    program=program,
                    root=str(root),
                )

    def _cannot_cut_network(self, why: str) -> None:
        raise GuardViolation(
            f"the mission asks for no network (constraints.network) but {why}; it was not started "
            "(rule network_unenforceable: install bubblewrap, or use a kernel with Landlock)",
            rule="network_unenforceable",
            backend=self.backend,
        )


def _access_at(path: Path, applied: list[tuple[Path, Access]]) -> Access:
    """What the last of ``applied`` (in rule order) holding ``path`` grants there; read-only under none."""
    return next((access for root, access in reversed(applied) if root == path or root in path.parents), "read-only")


@functools.cache
def _bwrap_binary() -> str:
    return shutil.which("bwrap") or "bwrap"


def _bwrap_base() -> list[str]:
    # Always a network namespace of its own: with network, slirp4netns gives it a way out
    # that does not lead to the host's loopback (ua_vp/sandbox_net.py).
    args = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-net", "--cap-drop", "ALL"]
    return [*args, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]


def _seccomp_fd() -> int:
    """A pipe holding the seccomp filter both backends install (no unix sockets; see sandbox_exec)."""
    from ua_vp import sandbox_exec

    program = sandbox_exec.seccomp_bytes(os.uname().machine)
    read, write = os.pipe()
    try:
        os.write(write, program)  # ~100 bytes: far below a pipe's buffer, so this cannot block
    finally:
        os.close(write)
    return read


def _with_limits(argv: Sequence[str], limit_args: list[str]) -> list[str]:
    """``argv`` started through the limits wrapper; as it is when there is nothing to apply."""
    return [*_landlock_prefix(), "--limits-only", *limit_args, "--", *argv] if limit_args else list(argv)


# Imported, not run as a script: a script is compiled at every start (8 ms), a module loads its
# cached bytecode. Its folder goes last on sys.path, so no module of ours shadows the stdlib.
_LAUNCH = (
    f"import sys; sys.path.append({str(SANDBOX_EXEC.parent)!r}); import sandbox_exec; sys.exit(sandbox_exec.main())"
)


def _landlock_prefix() -> list[str]:
    # -I: no PYTHON* variables, no user site, no script folder on sys.path; -S: no site import.
    return [sys.executable, "-I", "-S", "-c", _LAUNCH]
