"""The path guard: the only module that decides whether a mission may name a path.

Which constraint values are paths
    Nested dicts and lists are walked. A string is a path when its key, or the key of
    the list holding it, is path-like (:data:`PATH_KEYS`, or ending in one of
    :data:`PATH_SUFFIXES`; keys are normalised first, so ``repoPath``, ``" repo-path "``
    and ``repo_path`` are the same key), or when it looks like a path wherever it is:
    it starts with ``/``, ``~``, ``./``, ``../`` or ``$VAR``, is ``.``/``..``, climbs
    with a ``..`` segment anywhere (``a/../../x``), or is a ``file:`` URL.
    Numbers, booleans and null under path keys are ignored; any other non-string there
    (bytes, objects) is refused as ``invalid_path``, as are empty strings, null bytes,
    names the filesystem cannot encode and variables the host does not have.
    More than :data:`MAX_MISSION_PATHS` paths is refused (``too_many_paths``) before
    any is resolved. Other strings (prose, ``https://`` URLs, ``src/main.py``) are
    not paths here; what an agent does with them is the sandbox's to confine.

Resolution
    Surrounding blanks are dropped, a ``file:`` URL becomes its path, ``$VAR`` and
    ``~`` are expanded from the host's environment, a relative path is joined to the
    mission workspace (at dispatch, before it exists: ``<workspace root>/_dispatch_``),
    then ``os.path.realpath`` follows every symlink that exists.

Rules, in this order
    ``special_filesystem``: a path in /proc, /dev or /sys (before or after symlinks)
    describes the server (its cwd, open files, pid), so it is refused outright.
    ``protected_root`` (only profiles with ``hard_block``): the nearest root that
    contains the path is a protected one. An allowed root nested inside a protected
    one wins below it (the default workspaces under the state dir); a protected root
    nested inside an allowed one wins below it; on a tie the protected root wins.
    ``outside_allowed_roots`` (every profile): no allowed root contains the path.

A refusal names the key and the path as the caller wrote them, never the resolved
path (that would tell the caller where a symlink or ``~`` points on the server);
the resolved path is kept on the exception (``GuardViolation.resolved``) for logs.

"Contains" compares realpath strings (NFC-normalised on both sides for protected
roots, so a unicode look-alike counts as the root) and also the ``(st_dev, st_ino)``
of every existing ancestor, so an alias the strings miss (a bind mount, a case- or
unicode-folding filesystem, a root moved and replaced by a symlink since start-up)
is still recognised as the same directory.

The guard judges paths as they are when called, which is why the worker calls it
again just before execution.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ua_vp.errors import ConfigError, GuardViolation, TooManyPaths

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.profiles import Profile

PATH_KEYS = frozenset(
    {"path", "paths", "file", "files", "dir", "dirs", "directory", "directories", "root", "repo", "cwd", "workspace"}
    | {"target", "output", "folder", "folders", "workdir", "filepath", "filename", "pathname", "location"}
)
PATH_SUFFIXES = (
    *("_path", "_paths", "_dir", "_dirs", "_file", "_files", "_root", "_roots"),
    *("_directory", "_directories", "_folder", "_folders", "_filename", "_location"),
)
PATH_PREFIXES = ("/", "~", "./", "../")
SPECIAL_ROOTS = (Path("/proc"), Path("/dev"), Path("/sys"))
"""Kernel filesystems: their paths describe the server process (its cwd, open files, pid), not files."""
MAX_MISSION_PATHS = 1000
"""More paths than this in one mission's constraints is refused (``too_many_paths``) before any is resolved."""
_UP_SEGMENT = re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)")
_ENV_REF = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
DISPATCH_DIR = "_dispatch_"
"""Relative paths checked at dispatch resolve under ``<workspace root>/_dispatch_``."""


@dataclass(frozen=True)
class GuardPolicy:
    """What one profile's missions may name; built once per profile at start-up."""

    vp_id: str
    protected: tuple[Path, ...]
    """Realpath'd roots that missions of a ``hard_block`` profile may never reach."""
    allowed: tuple[Path, ...]
    """Realpath'd roots every mission path must be under: workspace root, handoff root, plugin extras."""
    hard_block: bool
    workspace_root: Path | None = None
    """The profile's workspace root; None means the first allowed root."""


def host_protected_roots(settings: Settings) -> list[Path]:
    """The host's own roots: the ``ua_vp`` package, the state dir, any ua-vp checkout
    above the package or the working directory, and ``UA_VP_PROTECTED_ROOTS``."""
    package = Path(__file__).resolve().parent
    starts = [package]
    with contextlib.suppress(OSError):  # a removed working directory leaves the package walk
        starts.append(Path.cwd())
    checkouts = [folder for start in starts for folder in (start, *start.parents) if _is_checkout(folder)]
    return list(_unique([package, settings.state_dir, *checkouts, *settings.protected_roots]))


def build_policy(
    profile: Profile, settings: Settings, *, extra_protected: list[Path], extra_allowed: list[Path]
) -> GuardPolicy:
    """The policy for ``profile``; a :class:`ConfigError` when an allowed root lies inside a protected one."""
    protected = _unique([*host_protected_roots(settings), *extra_protected])
    candidates: list[tuple[str, Path]] = [(f"the workspace root of {profile.vp_id}", profile.workspace_root)]
    if settings.handoff_root is not None:
        candidates.append(("UA_VP_HANDOFF_ROOT", settings.handoff_root))
    candidates += [("an allowed root from a ua_vp_allowed_roots hook", Path(p)) for p in extra_allowed]
    for index, (name, given) in enumerate(candidates):
        root = _real(given)
        hit = _nearest(root, protected, fold=True)
        if hit is None or (index == 0 and _carved_out(root, hit[0], settings)):
            continue
        shown = repr(str(given)) + (f" (resolves to {str(root)!r})" if str(given) != str(root) else "")
        raise ConfigError(
            f"{name} {shown} is inside protected root {str(hit[1])!r}: missions may not be handed the host's "
            "own repo or runtime roots; choose a folder outside them"
            + (" (or leave the workspace root unset for the default under the state dir)" if index == 0 else ""),
            variable=name,
            path=str(given),
            protected_root=str(hit[1]),
        )
    if settings.handoff_root is not None:
        # The host's own roots only: a configured protected root nested in the handoff root is
        # a carve-out the guard and both sandboxes honour (nearest root wins).
        own = [r for r in host_protected_roots(settings) if r not in map(_real, settings.protected_roots)]
        _check_handoff_holds_nothing_protected(settings, own)
    allowed = _unique(given for _, given in candidates)
    return GuardPolicy(profile.vp_id, protected, allowed, profile.hard_block, workspace_root=allowed[0])


def _check_handoff_holds_nothing_protected(settings: Settings, protected: Iterable[Path]) -> None:
    """Missions write the handoff root: a protected root or the database inside it would be theirs to change."""
    from sqlalchemy.engine import make_url

    assert settings.handoff_root is not None
    handoff = _real(settings.handoff_root)
    url = make_url(settings.sqlalchemy_url)
    inside = [(f"the host's own root {str(root)!r}", _real(root)) for root in protected]
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        inside.append((f"the database {url.database!r}", _real(url.database)))
    for what, path in inside:
        if path != handoff and handoff in path.parents:
            raise ConfigError(
                f"UA_VP_HANDOFF_ROOT {str(settings.handoff_root)!r} contains {what}; missions may write anywhere "
                "in the handoff root, so choose a folder that holds neither the database nor a protected root",
                variable="UA_VP_HANDOFF_ROOT",
                path=str(settings.handoff_root),
            )


def check_constraints(policy: GuardPolicy, constraints: dict[str, Any], *, base: Path | None) -> None:
    """Raise :class:`GuardViolation` for the first path in ``constraints`` that breaks a rule.

    ``base`` is the mission workspace relative paths resolve against; None at dispatch.
    """
    if base is None:
        workspace = policy.workspace_root or (policy.allowed[0] if policy.allowed else Path(os.sep))
        base = workspace / DISPATCH_DIR
    found = list(itertools.islice(_walk(constraints), MAX_MISSION_PATHS + 1))
    if len(found) > MAX_MISSION_PATHS:
        raise TooManyPaths(
            f"constraints name more than {MAX_MISSION_PATHS} paths; a mission may name at most "
            f"{MAX_MISSION_PATHS} (put a long list in a file in the workspace instead)",
            limit=MAX_MISSION_PATHS,
        )
    for key, given in found:
        resolved = _resolve(key, given, base)
        # Only what the caller wrote is echoed: the resolved path could reveal what a
        # symlink or `~` points at on the server.
        shown = f"{key} {given!r}"
        details = {"path": given, "key": key}
        protected = _nearest(resolved, policy.protected, fold=True)
        allowed = _nearest(resolved, policy.allowed, fold=False)
        if policy.hard_block and protected and (allowed is None or protected[0] <= allowed[0]):
            raise _violation(
                f"{shown} is inside protected root {str(protected[1])!r} (rule protected_root: {policy.vp_id} may "
                "not touch the host's own repo or runtime roots; set UA_VP_HANDOFF_ROOT for hand-offs)",
                resolved,
                rule="protected_root",
                root=str(protected[1]),
                **details,
            )
        if _hard_linked(resolved):
            # Its other names may lie in a protected root, and no ancestor check can see them.
            raise GuardViolation(
                f"{shown}, a file with more than one hard link (rule hard_link: its other names may be "
                "inside a protected root; copy the file instead of linking it)",
                rule="hard_link",
                **details,
            )
        if allowed is None:
            roots = ", ".join(repr(str(r)) for r in policy.allowed) or "none"
            raise _violation(
                f"{shown} is outside every allowed root ({roots}) (rule outside_allowed_roots: {policy.vp_id} "
                "missions may only use their workspace root, UA_VP_HANDOFF_ROOT or a plugin's allowed roots)",
                resolved,
                rule="outside_allowed_roots",
                **details,
            )


def _violation(message: str, resolved: Path | None, **details: Any) -> GuardViolation:
    violation = GuardViolation(message, **details)
    violation.resolved = resolved  # for the server's log and tests; never sent to the caller
    return violation


def mission_paths(constraints: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key-path, value)`` of every path-like string in ``constraints``, in document order."""
    return [(key, value) for key, value in _walk(constraints) if isinstance(value, str)]


def _walk(constraints: Any) -> Iterator[tuple[str, Any]]:
    # Iterative, with a seen-set: hostile nesting depth or a cyclic dict must not crash the guard.
    stack: list[tuple[str, Any, bool]] = [("constraints", constraints, False)]
    seen: set[int] = set()
    while stack:
        key, value, path_key = stack.pop()
        if isinstance(value, dict | list | tuple):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, dict):
                children = [(f"{key}.{k}", v, _is_path_key(str(k))) for k, v in value.items()]
            else:
                children = [(f"{key}[{i}]", v, path_key) for i, v in enumerate(value)]
            stack.extend(reversed(children))
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            if path_key or _looks_like_path(value):
                yield key, value
        elif path_key and not isinstance(value, int | float | None):
            yield key, value


def _is_path_key(key: str) -> bool:
    # `repoPath`, ` repo-path `, `Repo.Path` and `repo_path` are one key to an agent.
    key = re.sub(r"[\s.-]+", "_", _CAMEL.sub("_", key.strip())).lower()
    return key in PATH_KEYS or key.endswith(PATH_SUFFIXES)


def _looks_like_path(value: str) -> bool:
    """A string that names a path wherever it is: absolute, home-relative, climbing out
    with ``..``, a ``file:`` URL, or starting with an environment variable (``$HOME/.ssh``)."""
    value = value.strip()
    return (
        value in (".", "..")
        or value.startswith(PATH_PREFIXES)
        or value[:5].lower() == "file:"
        or _UP_SEGMENT.search(value) is not None
        or _ENV_REF.match(value) is not None
    )


class _Unexpandable(ValueError):
    pass


def _filesystem_path(value: str) -> str:
    """The path an agent would use for ``value``: a ``file:`` URL's path, ``$VAR`` and ``~``
    expanded from the host's environment (a variable the host lacks is refused: what it
    would expand to in the agent's environment cannot be judged here)."""
    value = value.strip()
    if value[:5].lower() == "file:":
        value = unquote(urlsplit(value).path) or "/"
    for ref in _ENV_REF.findall(value):
        if os.path.expandvars(ref) == ref:
            raise _Unexpandable(f"it names environment variable {ref} that the host does not have")
    return os.path.expanduser(os.path.expandvars(value))


def _resolve(key: str, given: Any, base: Path) -> Path:
    if not isinstance(given, str):
        problem = f"it is a {type(given).__name__}, not a string"
    elif not given.strip():
        problem = "it is empty"
    elif "\x00" in given:
        problem = "it contains a null byte"
    else:
        try:
            lexical = Path(os.path.normpath(os.path.join(base, _filesystem_path(given))))
            # Checked before and after symlinks: /proc/self/cwd is not even resolved.
            if not _special(lexical) and not _special(resolved := Path(os.path.realpath(lexical))):
                return resolved
            raise _violation(
                f"{key} {given!r} is in a kernel filesystem (/proc, /dev or /sys), which describes the "
                "server rather than holding files for a mission (rule special_filesystem)",
                None,
                path=given,
                rule="special_filesystem",
                key=key,
            )
        except _Unexpandable as exc:
            problem = str(exc)
        except (OSError, ValueError) as exc:  # UnicodeEncodeError on lone surrogates is a ValueError
            problem = f"it cannot be resolved ({exc})"
    raise _violation(
        f"{key} {given!r} is not a usable path: {problem} (rule invalid_path)",
        None,
        path=given if isinstance(given, str) else repr(given),
        rule="invalid_path",
        key=key,
    )


def _special(path: Path) -> bool:
    return any(path == root or root in path.parents for root in SPECIAL_ROOTS)


def _nearest(path: Path, roots: Iterable[Path], *, fold: bool) -> tuple[int, Path] | None:
    """Depth (0 = ``path`` itself) and root of the nearest ancestor of ``path`` that is one of ``roots``."""
    name: Callable[[Path], str] = (lambda p: unicodedata.normalize("NFC", str(p))) if fold else str
    roots = list(roots)
    by_name = {name(root): root for root in roots}
    by_identity = {ident: root for root in roots if (ident := _identity(root)) is not None}
    for depth, ancestor in enumerate((path, *path.parents)):
        root = by_name.get(name(ancestor))
        if root is None and by_identity and (ident := _identity(ancestor)) is not None:
            root = by_identity.get(ident)
        if root is not None:
            return depth, root
    return None


def _carved_out(workspace: Path, protected_depth: int, settings: Settings) -> bool:
    # The host keeps default workspaces in <state_dir>/workspaces/: allowed only strictly
    # below that folder, and only when no protected root sits between it and the workspace.
    under = _nearest(workspace, [_real(settings.state_dir / "workspaces")], fold=False)
    return under is not None and 0 < under[0] < protected_depth


def _is_checkout(folder: Path) -> bool:
    try:
        if (folder / ".git").exists() and (folder / "ua_vp").is_dir():
            return True
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            return False
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project")
    except (OSError, ValueError):  # unreadable or not TOML: not ours to protect
        return False
    name = project.get("name") if isinstance(project, dict) else None
    return isinstance(name, str) and re.sub(r"[-_.]+", "-", name).lower() == "ua-vp"


def _hard_linked(path: Path) -> bool:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink > 1


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _unique(paths: Iterable[Path | str]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(_real(p) for p in paths))
