"""The ``landlock`` sandbox backend: restrict this process with Landlock, then exec the program.

    python -I -S sandbox_exec.py [LIMITS] [--write DIR]... [--protect|--hide|--read PATH]... [--no-tcp] -- PROGRAM...
    python -I -S sandbox_exec.py --limits-only [LIMITS] -- PROGRAM ARGS...
    python -I -S sandbox_exec.py --probe
    python -I -S sandbox_exec.py --reap -- PROGRAM ARGS...     (backend none: no confinement, no survivors)

    LIMITS: [--rlimit fsize|cpu|data=SOFT:HARD]... [--cgroup DIR]...

Why a wrapper that execs, not ``preexec_fn``: the worker runs threads (database
calls go through ``asyncio.to_thread``), and Python code between ``fork`` and
``exec`` of a threaded process can deadlock on a lock another thread held at
fork time. One extra interpreter start (``-I -S``: no site, no environment, no
script folder on ``sys.path``; about 10 ms) buys a restriction applied with
nothing else running, and a tool one can run by hand. Standard library only.
The worker imports this module with ``-c`` rather than running it (cached bytecode),
and it imports little up front: each start pays for every import.

Landlock only ever *allows*: every access right the ruleset handles is denied
except beneath a path given a rule. This ruleset handles every filesystem right
the kernel knows (ABI 1-7), and grants:

- ``--write`` folders: everything (the mission workspace, the handoff root),
  except below a ``--protect`` or ``--hide`` root inside one. A rule grants a
  whole subtree and nothing can take a right back below it, so such a folder is
  granted entry by entry around the protected root; its own top level (and the
  folders leading to the protected root) then take no new entries.
- Reads and execution: every entry of the filesystem except the ``--hide`` roots
  and ``/dev``. A rule covers a whole subtree, so the ancestors of a hidden root
  are walked and each of their other entries gets its own rule; the ancestors
  themselves get no rule, so they cannot be listed. This is a snapshot: an entry
  created in such an ancestor after start-up is unreadable. A symlink into a
  hidden root gets no rule (the kernel checks the resolved path anyway).
  Without ``--hide``, the root folder may also be listed.
- ``--read`` roots: readable although inside a hidden root (the toolchains in a hidden
  HOME), except the hidden roots inside them.
- ``/dev``: only the harmless character devices (null, zero, full, random,
  urandom), so a root-owned process cannot read a raw disk around the rules.

Capabilities are dropped (a root process could otherwise load a kernel module
from its workspace), ``no_new_privs`` is set, and on ABI 6+ the process may not
signal processes outside its sandbox (the worker) or reach abstract unix sockets
made outside it. ``--no-tcp`` (ABI 4+) denies TCP bind and connect; other
protocols are not covered. Exit 126 with a message on stderr when the
restriction cannot be applied: a failure never runs the program unrestricted.

The per-mission limits (:mod:`ua_vp.limits`) are applied here first, under every
backend: the rlimits are set and the cgroups joined before anything else, and
both carry over every fork and exec below. ``--limits-only`` applies just them
and execs (the wrapper of the ``bwrap`` and ``none`` backends). Python ignores
SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec, so both are
set back to their defaults before the program starts: a program writing past the
file size limit is then killed by SIGXFSZ, as it would be started from a shell.
"""

from __future__ import annotations

# Every module imported here is paid for at each mission start, so the rest come in where a
# path needs them: ctypes (4 ms) not for bwrap's --limits-only, and _signal and _socket, not
# signal and socket, which import enum (5 ms) to wrap the same functions.
import _signal
import _socket
import os
import resource
import stat
import struct
import sys

TYPE_CHECKING = False  # typing itself costs an import
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Iterable, Iterator

# Syscall numbers are the same on every architecture (added after the tables were unified).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# Filesystem rights, by the ABI that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_ABI1_FS = (1 << 13) - 1  # execute .. make_sym
READ = EXECUTE | READ_FILE | READ_DIR
# The rights that mean something on a file that is not a directory; the kernel refuses others there.
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

DEV_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")

_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 1, 24, 38, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _sys(number: int, *args: int | bytes) -> int:
    import ctypes

    # Every argument as a full machine word: glibc's syscall() reads longs from its varargs.
    # A bytes argument goes as a pointer to its (read-only) contents.
    words = (ctypes.c_long(a) if isinstance(a, int) else a for a in args)
    return int(_lib().syscall(ctypes.c_long(number), *words))


def _prctl(option: int, arg: int = 0) -> int:
    import ctypes

    zero = ctypes.c_ulong(0)
    return int(_lib().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), zero, zero, zero))


class SandboxError(Exception):
    """The restriction could not be applied; the program must not run."""


def abi_version() -> int:
    """The kernel's Landlock ABI version; :class:`SandboxError` saying why when there is none."""
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"Landlock is a Linux feature; this is {sys.platform}")
    abi = _sys(_SYS_CREATE_RULESET, 0, 0, _CREATE_RULESET_VERSION)
    if abi >= 1:
        return int(abi)
    err = _errno()
    if err == 38:  # ENOSYS
        raise SandboxError("the kernel has no Landlock system calls (Linux >= 5.13 needed, or seccomp blocks them)")
    if err == 95:  # EOPNOTSUPP
        raise SandboxError("Landlock is built into the kernel but not enabled (add landlock to the lsm= boot option)")
    raise SandboxError(f"landlock_create_ruleset failed: {os.strerror(err)}")


def handled_fs(abi: int) -> int:
    rights = _ABI1_FS
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def roots_around(excluded: Iterable[str], *, top: str = "/") -> list[str]:
    """Paths whose subtrees together hold everything under ``top`` except the ``excluded`` ones."""
    return _around({os.path.realpath(h) for h in excluded}, top)


def _around(hide: set[str], top: str) -> list[str]:
    """:func:`roots_around` for ``hide`` already resolved (realpaths)."""
    if not hide:
        return [top]
    # Only the folders holding a hidden root are walked into.
    holding = {parent for h in hide for parent in _parents(h)}
    return list(_walk_around(top, os.path.realpath(top), hide, holding))


def _walk_around(folder: str, real_folder: str, hide: set[str], holding: set[str]) -> Iterator[str]:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        path = os.path.join(folder, entry.name)
        if path in hide:
            continue
        # Only a symlink can lead elsewhere (and resolving costs a stat per path component);
        # anything else lies where its folder really is. The listing says which is which.
        real = os.path.realpath(path) if entry.is_symlink() else os.path.join(real_folder, entry.name)
        if real in hide or not hide.isdisjoint(_parents(real)):
            continue  # a hidden root, or a symlink into one
        if real in holding:
            if real == path:
                yield from _walk_around(path, real, hide, holding)
            # A symlink to an ancestor is skipped: the real folder is walked where it lives.
            continue
        yield path


def _parents(path: str) -> Iterator[str]:
    """The folders above an absolute, normalized ``path``, nearest first."""
    while (parent := os.path.dirname(path)) != path:
        yield parent
        path = parent


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def restrict(
    *, write: list[str], hide: list[str], no_tcp: bool, protect: Iterable[str] = (), read: Iterable[str] = ()
) -> int:
    """Apply the ruleset to this process (and everything it execs); returns the ABI version."""
    abi = abi_version()
    fs = handled_fs(abi)
    net = 0
    if no_tcp:
        if abi < 4:
            raise SandboxError(f"Landlock ABI {abi} cannot restrict the network (ABI 4, Linux 6.7, needed)")
        net = _NET_BIND_TCP | _NET_CONNECT_TCP
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    # The attribute struct grew with the ABI; an older kernel refuses the longer form.
    fields = [fs] + ([net] if abi >= 4 else []) + ([scoped] if abi >= 6 else [])
    attr = struct.pack(f"={len(fields)}Q", *fields)
    ruleset = _sys(_SYS_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        raise SandboxError(f"landlock_create_ruleset failed: {os.strerror(_errno())}")
    try:
        # Each given path resolved once, not again for every root it is checked against.
        hidden = {os.path.realpath(h) for h in hide}
        never_written = {os.path.realpath(p) for p in protect} | hidden
        for root in write:
            real = os.path.realpath(root)
            inside = {p for p in never_written if p != real and _within(p, real)}
            if not os.path.isdir(real):
                raise SandboxError(f"writable folder {root!r} does not exist")
            for path in _around(inside, real):
                _allow(ruleset, path, fs, required=path == real)
        reads = _around(hidden | {os.path.realpath("/dev")}, "/")
        for top in read:
            real = os.path.realpath(top)
            reads += _around({h for h in hidden if _within(h, real)}, real)
        for path in reads:
            _allow(ruleset, path, READ & fs, required=False)
        if not hide:
            # Nothing is hidden: let the root folder be listed too (names only; /dev stays unreadable).
            _allow(ruleset, "/", READ_DIR, required=False)
        for node in DEV_NODES:
            _allow(ruleset, node, (READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV) & fs, required=False)
        _drop_privileges()
        if _sys(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise SandboxError(f"landlock_restrict_self failed: {os.strerror(_errno())}")
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: str, access: int, *, required: bool) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        if required:
            raise SandboxError(f"cannot open {path!r} for a Landlock rule: {exc.strerror}") from None
        return  # vanished since it was listed, or a dangling symlink: nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        rule = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr, packed
        if access and _sys(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0) != 0:
            err = _errno()
            if required:
                raise SandboxError(f"landlock_add_rule for {path!r} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def _drop_privileges() -> None:
    # Like bwrap's --die-with-parent, for the program itself: a worker killed with SIGKILL
    # cannot stop its group, and the program must not run on unsupervised. (Its own
    # children are not covered: Landlock has no PID namespace to take them down.)
    _prctl(_PR_SET_PDEATHSIG, 9)
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(_errno())}")
    last = _last_capability()
    # An empty bounding set is what stops uid 0 regaining every capability at exec.
    dropped = all(_prctl(_PR_CAPBSET_DROP, cap) == 0 for cap in range(last + 1))
    if not dropped and os.geteuid() == 0:
        raise SandboxError("running as root without CAP_SETPCAP: cannot empty the capability bounding set")
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    import ctypes

    # The kernel may write its own version into the header; two all-zero data structs: no capability.
    header = ctypes.create_string_buffer(struct.pack("=Ii", _CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(2 * 3 * 4)
    if _lib().capset(header, data) != 0:
        raise SandboxError(f"capset failed: {os.strerror(_errno())}")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


_RLIMITS = {"fsize": resource.RLIMIT_FSIZE, "cpu": resource.RLIMIT_CPU, "data": resource.RLIMIT_DATA}


def apply_limits(rlimits: list[str], cgroups: list[str]) -> None:
    """Set each ``NAME=SOFT:HARD`` rlimit and move this process into each cgroup folder."""
    for spec in rlimits:
        name, _, values = spec.partition("=")
        soft, _, hard = values.partition(":")
        if name not in _RLIMITS or not soft.isdigit() or not hard.isdigit():
            raise SandboxError(f"not a limit: {spec!r} (NAME=SOFT:HARD, NAME one of {', '.join(_RLIMITS)})")
        try:
            resource.setrlimit(_RLIMITS[name], (int(soft), int(hard)))
        except (OSError, ValueError) as exc:
            raise SandboxError(f"cannot set the {name} limit to {values}: {exc}") from None
    for folder in cgroups:
        try:
            with open(os.path.join(folder, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            raise SandboxError(f"cannot join the mission's cgroup {folder}: {exc.strerror}") from None


def exec_program(command: list[str]) -> None:
    """Exec ``command`` with the signals Python ignores back at their defaults."""
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    os.execvp(command[0], command)


def _probe() -> int:
    """Show that every part holds here: namespaces, the Landlock ruleset (the root folder can no
    longer be read) and the seccomp filter (no unix socket can be made)."""
    enter_namespaces()
    loopback_up()
    child = os.fork()
    if child == 0:
        os._exit(_probe_inside())
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def _probe_inside() -> int:
    try:
        abi = restrict(write=[], hide=["/"], no_tcp=False)
        install_seccomp()
    except (SandboxError, OSError) as exc:
        print(f"landlock sandbox cannot be set up here: {exc}", file=sys.stderr)
        return 1
    try:
        os.listdir("/etc")
    except PermissionError:
        pass
    else:
        print(f"landlock ABI {abi} accepted the ruleset but /etc is still readable", file=sys.stderr)
        return 1
    try:
        _socket.socket(_socket.AF_UNIX).close()
    except PermissionError:
        print(f"landlock ABI {abi} enforced, in PID and network namespaces, without unix sockets", flush=True)
        return 0
    print("the seccomp filter was installed but unix sockets can still be made", file=sys.stderr)
    return 1


# --- namespaces: a PID namespace so every descendant dies with the mission, a network
# namespace so the host's loopback is out of reach --------------------------------------------

_CLONE_NEWNET, _CLONE_NEWPID, _CLONE_NEWUSER = 0x40000000, 0x20000000, 0x10000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)


def enter_namespaces() -> None:
    """Move into a new network namespace, and make the next child the init of a new PID namespace.
    Root does it directly; anyone else first enters a user namespace mapping their own ids."""
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        _unshare(_CLONE_NEWUSER, "a user namespace (kernel.unprivileged_userns_clone=0?)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _unshare(_CLONE_NEWNET | _CLONE_NEWPID, "network and PID namespaces")


def _unshare(flags: int, what: str) -> None:
    import ctypes

    if _lib().unshare(ctypes.c_int(flags)) != 0:
        raise SandboxError(f"cannot create {what}: {os.strerror(_errno())}")


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc.strerror}") from None


def loopback_up() -> None:
    """The new namespace's own loopback, for programs that talk to themselves (a test server)."""
    import fcntl

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))
    finally:
        sock.close()


def run_init(command: list[str], restriction: dict[str, object], go_fd: int | None) -> int:
    """PID 1 of the mission's PID namespace: wait for the network, start the program, reap
    orphans, and exit with the program. When PID 1 exits the kernel kills every process left
    in the namespace, however it detached itself (setsid, double fork)."""
    _prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL)  # the outer wrapper killed: so is the whole namespace
    if go_fd is not None:
        try:
            go = os.read(go_fd, 1)
        finally:
            os.close(go_fd)
        if go != b"1":
            raise SandboxError("the worker did not finish setting up the network")
    program = os.fork()
    if program == 0:
        try:
            restrict(**restriction)  # type: ignore[arg-type]
            install_seccomp()
            exec_program(command)
        except SandboxError as exc:
            print(f"ua-vp sandbox (landlock): {exc}; the program was not started", file=sys.stderr)
            os._exit(126)
        except OSError as exc:
            print(f"ua-vp sandbox (landlock): cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
            os._exit(127)
    for sig in _FORWARDED:
        _signal.signal(sig, lambda signum, _frame: _forward(program, signum))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == program:
            # A signal's death cannot be passed on: the init of a namespace ignores its own signals.
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _forward(pid: int, signum: int) -> None:
    try:  # noqa: SIM105 - not contextlib.suppress: importing contextlib costs 4 ms at each start
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def supervise(child: int, info_fd: int | None) -> int:
    """The wrapper outside the namespaces: report the init's pid, pass signals on, exit with it."""
    if info_fd is not None:
        os.write(info_fd, b'{"child-pid": %d}' % child)  # JSON, without importing json (10 ms)
        os.close(info_fd)
    for sig in _FORWARDED:
        _signal.signal(sig, lambda signum, _frame: _forward(child, signum))
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except InterruptedError:
            continue
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


# --- no sandbox: still no survivors ----------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def run_reaper(command: list[str]) -> int:
    """The ``none`` backend's wrapper (``--reap``): no confinement, but no survivors either.

    As a child subreaper it inherits every orphan of the program's tree (a double fork, a
    ``setsid`` daemon: they leave the process group, not our ancestry), so when the program
    ends, or this wrapper is told to stop, it kills what is left. The worker's own stop covers
    a SIGKILLed wrapper: it signals the wrapper's descendants first (:mod:`ua_vp.runtimes.process`)."""
    if _prctl(_PR_SET_CHILD_SUBREAPER, 1) != 0:
        raise SandboxError(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(_errno())}")
    program = os.fork()
    if program == 0:
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"ua-vp: cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
            os._exit(127)
    for sig in _FORWARDED:
        _signal.signal(sig, lambda signum, _frame: _forward(program, signum))
    status = 0
    while True:
        try:
            _, status = os.waitpid(program, 0)
        except InterruptedError:
            continue
        break
    _kill_children()
    if os.WIFSIGNALED(status):
        # Die of the same signal, so the worker reports "killed by SIGKILL", not an exit code.
        _signal.signal(os.WTERMSIG(status), _signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    return os.waitstatus_to_exitcode(status)


def _kill_children() -> None:
    """SIGKILL our children until none is left: an orphan of a killed child becomes ours in turn."""
    me = str(os.getpid()).encode()
    while True:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat", "rb") as f:
                        if f.read().rsplit(b")", 1)[1].split()[1] == me:
                            os.kill(int(name), _signal.SIGKILL)
                except (OSError, IndexError):
                    pass
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue


# --- seccomp: no unix sockets ---------------------------------------------------------------
# Landlock cannot stop a connect() to a named unix socket (a PostgreSQL or Docker socket
# elsewhere on the host). socket(AF_UNIX) is refused instead; socketpair() still works, which is
# what programs use to talk to their own children. io_uring is refused too: it can make sockets
# without the socket() system call.

_AUDIT_ARCH = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}
"""machine: (AUDIT_ARCH_*, __NR_socket, __NR_io_uring_setup)."""
_X32_BIT = 0x40000000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO, _SECCOMP_RET_KILL = 0x7FFF0000, 0x00050000, 0x00000000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_EACCES, _ENOSYS = 13, 38


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions; :class:`SandboxError` on an unknown machine."""
    if machine not in _AUDIT_ARCH:
        raise SandboxError(f"no seccomp filter for machine {machine!r}: unix sockets could not be refused")
    arch, nr_socket, nr_uring = _AUDIT_ARCH[machine]
    return [
        (_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_BPF_JEQ_K, 1, 0, arch),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL),  # another ABI (i386 on x86_64): no way around the filter
        (_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (_BPF_JGE_K, 0, 1, _X32_BIT),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL),  # x32 system call numbers
        (_BPF_JEQ_K, 0, 1, nr_uring),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _ENOSYS),
        (_BPF_JEQ_K, 0, 3, nr_socket),
        (_BPF_LD_W_ABS, 0, 0, 16),  # seccomp_data.args[0], low half: the address family
        (_BPF_JEQ_K, 0, 1, _socket.AF_UNIX),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _EACCES),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
    ]


def seccomp_bytes(machine: str) -> bytes:
    """The filter as the kernel's ``struct sock_filter`` array (what bwrap's ``--seccomp`` reads)."""
    return b"".join(struct.pack("=HBBI", *ins) for ins in seccomp_program(machine))


def install_seccomp() -> None:
    import ctypes

    machine = os.uname().machine
    filters = ctypes.create_string_buffer(seccomp_bytes(machine))
    # struct sock_fprog: the number of instructions, then (aligned as in C) a pointer to them.
    prog = struct.pack("@HP", len(seccomp_program(machine)), ctypes.addressof(filters))
    # no_new_privs is already set by restrict(); the kernel requires it without CAP_SYS_ADMIN.
    if _lib().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, prog, 0, 0) != 0:
        raise SandboxError(f"prctl(PR_SET_SECCOMP) failed: {os.strerror(_errno())}")


_VALUED = ("--write", "--protect", "--hide", "--read", "--info-fd", "--go-fd", "--rlimit", "--cgroup")
"""The options that take a value."""


def parse(argv: list[str]) -> dict[str, list[str]]:
    """Options, and the command after ``--``. Not argparse: it would double the wrapper's start-up."""
    options: dict[str, list[str]] = {
        "write": [],
        "protect": [],
        "hide": [],
        "read": [],
        "info-fd": [],
        "go-fd": [],
        "rlimit": [],
        "cgroup": [],
        "flags": [],
        "command": [],
    }
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            options["command"] = rest
            break
        if arg in ("--no-tcp", "--probe", "--limits-only", "--reap"):
            options["flags"].append(arg)
        elif arg in _VALUED and rest:
            options[arg[2:]].append(rest.pop(0))
        else:
            raise SandboxError(f"unexpected argument {arg!r}; usage: {__doc__.splitlines()[2].strip()}")
    return options


def _fd(values: list[str]) -> int | None:
    try:
        return int(values[-1]) if values else None
    except ValueError:
        raise SandboxError(f"not a file descriptor: {values[-1]!r}") from None


def _limits_only(rlimits: list[str], cgroups: list[str], command: list[str]) -> int:
    try:
        apply_limits(rlimits, cgroups)
    except SandboxError as exc:
        print(f"ua-vp limits: {exc}; the program was not started", file=sys.stderr)
        return 126
    try:
        exec_program(command)
    except OSError as exc:
        print(f"ua-vp limits: cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
    return 127


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
        if "--probe" in options["flags"]:
            return _probe()
        command = options["command"]
        if not command:
            raise SandboxError("no program to run: give it after --")
        if "--limits-only" in options["flags"]:
            return _limits_only(options["rlimit"], options["cgroup"], command)
        apply_limits(options["rlimit"], options["cgroup"])
        if "--reap" in options["flags"]:
            return run_reaper(command)
        info_fd, go_fd = _fd(options["info-fd"]), _fd(options["go-fd"])
        restriction = {
            "write": options["write"],
            "protect": options["protect"],
            "hide": options["hide"],
            "read": options["read"],
            "no_tcp": "--no-tcp" in options["flags"],
        }
        enter_namespaces()
        loopback_up()  # before the pid is reported: slirp4netns configures the namespace after
    except (SandboxError, OSError) as exc:
        print(f"ua-vp sandbox (landlock): {exc}; the program was not started", file=sys.stderr)
        return 126
    init = os.fork()
    if init == 0:
        code = 126
        try:
            code = run_init(command, restriction, go_fd)
        except (SandboxError, OSError) as exc:
            print(f"ua-vp sandbox (landlock): {exc}; the program was not started", file=sys.stderr)
        finally:
            os._exit(code)
    if go_fd is not None:
        os.close(go_fd)
    return supervise(init, info_fd)


if __name__ == "__main__":
    sys.exit(main())
