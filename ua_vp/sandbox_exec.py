"""The ``landlock`` sandbox backend: restrict this process with Landlock, then exec the program.

    python -I -S sandbox_exec.py [--write DIR]... [--protect PATH]... [--hide PATH]... [--no-tcp] -- PROGRAM ARGS...
    python -I -S sandbox_exec.py --probe

Why a wrapper that execs, not ``preexec_fn``: the worker runs threads (database
calls go through ``asyncio.to_thread``), and Python code between ``fork`` and
``exec`` of a threaded process can deadlock on a lock another thread held at
fork time. One extra interpreter start (``-I -S``: no site, no environment, no
script folder on ``sys.path``; 15-20 ms) buys a restriction applied with
nothing else running, and a tool one can run by hand. Standard library only.

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
- ``/dev``: only the harmless character devices (null, zero, full, random,
  urandom), so a root-owned process cannot read a raw disk around the rules.

Capabilities are dropped (a root process could otherwise load a kernel module
from its workspace), ``no_new_privs`` is set, and on ABI 6+ the process may not
signal processes outside its sandbox (the worker) or reach abstract unix sockets
made outside it. ``--no-tcp`` (ABI 4+) denies TCP bind and connect; other
protocols are not covered. Exit 126 with a message on stderr when the
restriction cannot be applied: a failure never runs the program unrestricted.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
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

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys(number: int, *args: object) -> int:
    # Every argument as a full machine word: glibc's syscall() reads longs from its varargs.
    return int(_libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args)))


def _prctl(option: int, arg: int = 0) -> int:
    zero = ctypes.c_ulong(0)
    return int(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), zero, zero, zero))


class SandboxError(Exception):
    """The restriction could not be applied; the program must not run."""


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct landlock_path_beneath_attr is packed
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def abi_version() -> int:
    """The kernel's Landlock ABI version; :class:`SandboxError` saying why when there is none."""
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"Landlock is a Linux feature; this is {sys.platform}")
    abi = _sys(_SYS_CREATE_RULESET, 0, 0, _CREATE_RULESET_VERSION)
    if abi >= 1:
        return int(abi)
    err = ctypes.get_errno()
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
    hide = {os.path.realpath(h) for h in excluded}
    if not hide:
        return [top]
    return list(_walk_around(top, hide))


def _walk_around(folder: str, hide: set[str]) -> Iterator[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if path in hide:
            continue
        real = os.path.realpath(path)
        if any(_within(real, h) for h in hide):
            continue  # a hidden root, or a symlink into one
        if any(_within(h, real) for h in hide):
            if real == path:
                yield from _walk_around(path, hide)
            # A symlink to an ancestor is skipped: the real folder is walked where it lives.
            continue
        yield path


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def restrict(*, write: list[str], hide: list[str], no_tcp: bool, protect: Iterable[str] = ()) -> int:
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
    attr = (ctypes.c_uint64 * len(fields))(*fields)
    ruleset = _sys(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise SandboxError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        never_written = [os.path.realpath(p) for p in (*protect, *hide)]
        for root in write:
            real = os.path.realpath(root)
            inside = [p for p in never_written if p != real and _within(p, real)]
            if not os.path.isdir(real):
                raise SandboxError(f"writable folder {root!r} does not exist")
            for path in roots_around(inside, top=real):
                _allow(ruleset, path, fs, required=path == real)
        reads = roots_around([*hide, "/dev"])
        for path in reads:
            _allow(ruleset, path, READ & fs, required=False)
        if not hide:
            # Nothing is hidden: let the root folder be listed too (names only; /dev stays unreadable).
            _allow(ruleset, "/", READ_DIR, required=False)
        for node in DEV_NODES:
            _allow(ruleset, node, (READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV) & fs, required=False)
        _drop_privileges()
        if _sys(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise SandboxError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
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
        rule = _PathBeneath(allowed_access=access, parent_fd=fd)
        if access and _sys(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            err = ctypes.get_errno()
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
        raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
    last = _last_capability()
    # An empty bounding set is what stops uid 0 regaining every capability at exec.
    dropped = all(_prctl(_PR_CAPBSET_DROP, cap) == 0 for cap in range(last + 1))
    if not dropped and os.geteuid() == 0:
        raise SandboxError("running as root without CAP_SETPCAP: cannot empty the capability bounding set")
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(version=_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        raise SandboxError(f"capset failed: {os.strerror(ctypes.get_errno())}")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def _probe() -> int:
    """Restrict this process and show the restriction holds: the root folder can no longer be read."""
    abi = restrict(write=[], hide=["/"], no_tcp=False)
    try:
        os.listdir("/etc")
    except PermissionError:
        print(f"landlock ABI {abi} enforced")
        return 0
    print(f"landlock ABI {abi} accepted the ruleset but /etc is still readable", file=sys.stderr)
    return 1


def parse(argv: list[str]) -> dict[str, list[str]]:
    """Options, and the command after ``--``. Not argparse: it would double the wrapper's start-up."""
    options: dict[str, list[str]] = {"write": [], "protect": [], "hide": [], "flags": [], "command": []}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            options["command"] = rest
            break
        if arg in ("--no-tcp", "--probe"):
            options["flags"].append(arg)
        elif arg in ("--write", "--protect", "--hide") and rest:
            options[arg[2:]].append(rest.pop(0))
        else:
            raise SandboxError(f"unexpected argument {arg!r}; usage: {__doc__.splitlines()[2].strip()}")
    return options


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
        if "--probe" in options["flags"]:
            return _probe()
        command = options["command"]
        if not command:
            raise SandboxError("no program to run: give it after --")
        restrict(
            write=options["write"],
            protect=options["protect"],
            hide=options["hide"],
            no_tcp="--no-tcp" in options["flags"],
        )
    except SandboxError as exc:
        print(f"ua-vp sandbox (landlock): {exc}; the program was not started", file=sys.stderr)
        return 126
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"ua-vp sandbox (landlock): cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
