"""Settings: every ``UA_VP_*`` variable, typed and validated in one place.

Read from the environment and an optional ``.env`` in the working directory.
A bad value fails at start-up with a :class:`ConfigError` naming the variable
and what is allowed; nothing else in ua-vp reads the environment.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ua_vp import redact
from ua_vp.errors import ConfigError

ENV_PREFIX = "UA_VP_"
CommaList = Annotated[list[str], NoDecode]
PathList = Annotated[list[Path], NoDecode]
PortList = Annotated[list[int], NoDecode]
_COMMON = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    validate_default=True,
    # `UA_VP_OPS_TOKEN=` (as in a copied .env.sample) means unset, not an empty
    # token that an empty Bearer header would match, nor the current directory.
    env_ignore_empty=True,
)
ArgList = Annotated[list[str], NoDecode]
# Arguments the agent runtimes set themselves; passing them again would break the output they parse.
_RESERVED_ARGS = {
    "claude_args": ("-p", "--print", "--output-format", "--permission-mode", "--dangerously-skip-permissions", "--"),
    "codex_args": ("--json", "--", "--sandbox", "-s", "--dangerously-bypass-approvals-and-sandbox"),
}


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ua-vp"


class Settings(BaseSettings):
    """Every setting of a ua-vp host or worker. Field ``foo`` is variable ``UA_VP_FOO``."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix=ENV_PREFIX)
    _plugin_settings: dict[type[BaseSettings], BaseSettings] = PrivateAttr(default_factory=dict)

    # --- where things live -------------------------------------------------
    state_dir: Path = Field(default_factory=_default_state_dir)
    """Runtime state: the embedded SQLite database, default workspaces. Protected by the guard."""
    database_url: str | None = None
    """SQLAlchemy URL. Unset: SQLite at ``<state_dir>/ua_vp.db``. ``postgresql://`` uses psycopg 3."""

    # --- gateway --------------------------------------------------------------
    dispatch_mode: Literal["db_pull", "in_process"] = "db_pull"
    """``db_pull``: missions wait in the database for workers (with external dispatch on)."""
    external_dispatch_enabled: bool = False
    """On with ``db_pull``: leave missions to external ``ua-vp worker`` processes.
    Off (default): the server's in-process lane runs them."""
    enabled_ids: CommaList | None = None
    """Comma list of the installed profiles this host serves. Unset: every installed profile."""
    remote_ids: CommaList = Field(default_factory=list)
    """Comma list of vp_ids this gateway accepts although no installed plugin provides them: their
    workers (with the plugin) run on other hosts against the same database. Dispatch checks only the
    envelope; the worker-time guard, which always runs, judges the paths."""

    # --- worker ---------------------------------------------------------------
    poll_interval_seconds: float = Field(default=5.0, ge=1.0, le=3600.0)
    """How often an idle worker looks for missions (LISTEN wakes it sooner on PostgreSQL)."""
    lease_ttl_seconds: float = Field(default=120.0, ge=15.0, le=86_400.0)
    """How long a claim holds without a heartbeat; heartbeats come every TTL/3."""
    listen: bool = True
    """PostgreSQL: LISTEN for new missions and cancels. 0 for PgBouncer in transaction
    mode (no LISTEN there); workers then react within a poll interval."""
    max_concurrent_missions: int = Field(default=1, ge=1, le=256)
    """Missions one worker process runs at once."""
    max_attempts: int = Field(default=3, ge=1, le=100)
    """Claims a mission gets before an expired lease fails it with ``lease_expired``."""
    retention_days: float | None = Field(default=None, gt=0, le=36_500)
    """Unset: keep everything. Set: ``ua-vp serve`` deletes missions (and their events)
    that finished more than this many days ago, hourly, as ``ua-vp db prune`` does."""
    mission_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400.0)
    """Time budget of a mission whose ``budget.max_seconds`` is unset: no agent runs unbounded."""
    mission_memory_mb: int = Field(default=8192, ge=0, le=16 * 1024 * 1024)
    """Memory of each process tree a mission starts, in MiB (a cgroup where the worker may make one,
    else per process by RLIMIT_DATA; see ua_vp/limits.py). 0: no limit."""
    mission_max_pids: int = Field(default=4096, ge=0, le=4_194_304)
    """Processes and threads of each process tree a mission starts (cgroup only). 0: no limit."""
    mission_max_file_mb: int = Field(default=4096, ge=0, le=1024 * 1024 * 1024)
    """Largest file a mission's process may write, in MiB (RLIMIT_FSIZE). 0: no limit."""
    mission_output_log_mb: int = Field(default=16, ge=0, le=1024 * 1024)
    """Largest full output log (stdout and stderr of a mission's processes) kept per attempt under
    ``<state_dir>/output``, in MiB; past it the log says how much was cut. 0: no log."""
    mission_cpu_seconds: int = Field(default=7200, ge=0, le=365 * 86_400)
    """CPU time of each process a mission starts, all its threads together (RLIMIT_CPU). 0: no limit."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    """On SIGTERM/SIGINT, how long running missions may finish before they are cancelled."""

    # --- plugins ----------------------------------------------------------------
    load_plugins: CommaList | None = None
    """Comma list of the plugin distributions (or entry-point names) to load, as ``LLM_LOAD_PLUGINS``
    does it. Unset: every installed one; ``none``: none (only the built-in runtimes)."""
    trace_hooks: bool = False
    """Log every hook call and its result (pluggy's tracing) at debug level."""

    # --- path guards (profile settings live in their plugins: see ``ua-vp profiles``) ---
    handoff_root: Path | None = None
    """A folder outside the protected roots that missions may also use (allowlisted)."""
    protected_roots: PathList = Field(default_factory=list)
    """Extra protected roots, comma separated, on top of the host's own."""

    # --- sandbox (see ua_vp/sandbox.py) ----------------------------------------
    sandbox: Literal["auto", "bwrap", "landlock", "none"] = "auto"
    """Confinement of the processes a mission starts: ``auto`` (the strongest backend that works
    here, probed at worker start), ``bwrap``, ``landlock``, or ``none`` (unconfined; warns on every mission)."""
    sandbox_protected: Literal["hide", "read-only"] = "hide"
    """What sandboxed processes see of the protected roots: ``hide`` (an empty folder) or ``read-only``
    (needed when the agent's own program lives inside one, e.g. a venv in the checkout)."""
    sandbox_home_readable: CommaList = Field(default_factory=list)
    """Names inside the worker user's HOME that sandboxed processes may read (``.rustup,.gradle``),
    besides the entries holding a ``PATH`` folder or the worker's Python; the rest of HOME is hidden.
    ``*`` keeps all of HOME readable except its credential stores (``.ssh``, ``.aws``, ...)."""
    sandbox_loopback_ports: PortList = Field(default_factory=list)
    """Comma list of TCP ports of the host's 127.0.0.1 (a local model proxy: LiteLLM, Ollama) that a
    sandboxed mission with network may reach at its own 127.0.0.1, through a relay; nothing else of the
    host's loopback answers it. Empty (default): none. Never the ops API's port (``UA_VP_PORT``,
    ``UA_VP_API_URL``'s) nor a PostgreSQL's on loopback (``UA_VP_DATABASE_URL``'s). Without a sandbox
    (``none``) the mission shares the host's network anyway and the list means nothing."""
    allow_unsandboxed: bool = False
    """Let a hard-blocking profile (CODIE with ``UA_VP_HARD_BLOCK_UA_REPO=1``) run its agent with no sandbox."""
    agent_env: CommaList = Field(default_factory=list)
    """Comma list of variable names a mission's processes may see besides the base set (PATH, LANG,
    LC_*, TZ, TERM, a private HOME and TMPDIR) and what the runtime declares; nothing else passes."""

    # --- client runtimes (each profile's choice is a profile setting) -----------
    command: str | None = None
    """Command template for the ``command`` runtime, e.g. ``my-agent --task {objective_file}``."""
    claude_bin: str = "claude"
    claude_permission_mode: Literal["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"] | None = (
        None
    )
    """Claude Code's ``--permission-mode``. Unset: ``bypassPermissions`` inside a sandbox (the sandbox is
    the boundary: the agent edits and runs commands in its workspace), ``acceptEdits`` without one."""
    claude_args: ArgList = Field(default_factory=list)
    """Extra ``claude`` arguments, shell-quoted (``--model sonnet --allowedTools "Bash(git *)" Edit``)."""
    codex_bin: str = "codex"
    codex_args: ArgList = Field(default_factory=list)
    """Extra ``codex exec`` arguments, shell-quoted (``--model o4-mini -c model_reasoning_effort=low``)."""
    agent_home_template: Path | None = None
    """A folder copied into every mission's home instead of the worker user's own agent files
    (``~/.claude/settings.json``, ``~/.claude/.credentials.json``, ``~/.codex/config.toml``, ``~/.codex/auth.json``)."""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_token_limit_field: Literal["max_completion_tokens", "max_tokens", "none"] = "max_completion_tokens"
    """The request field that carries ``budget.max_tokens``: ``max_completion_tokens`` (OpenAI's current
    name, which its newer models require), ``max_tokens`` (older compatible servers), ``none`` (not sent)."""

    # --- ops API --------------------------------------------------------------
    api_url: str | None = None
    """A running server the CLI's commands go through instead of the database, e.g.
    ``http://127.0.0.1:8002`` (same as ``--api``)."""
    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=1, le=65535)
    ops_token: SecretStr | None = None
    """Set: every ops route needs ``Authorization: Bearer <token>``."""
    allow_unauthenticated_bind: bool = False
    """Explicit opt-out: serve on a non-loopback address without a token."""
    tokenless_callers: Literal["owner", "any"] = "owner"
    """Without a token: ``owner`` accepts calls only from the server's own OS user (the peer
    of the loopback connection); ``any`` accepts every caller that can connect."""
    allowed_hosts: CommaList = Field(default_factory=list)
    """Extra names the ``Host`` header may carry (loopback names, the bind address and this
    machine's name always may); ``*`` accepts any."""
    max_event_streams: int = Field(default=64, ge=1, le=100_000)
    """Server-Sent Event streams open at once, in total (429 ``too_many_streams`` above)."""
    max_event_streams_per_client: int = Field(default=16, ge=1, le=100_000)
    """Server-Sent Event streams one client address may hold open at once."""
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)

    # --- logs -----------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"

    @field_validator("enabled_ids", "remote_ids", "load_plugins", "allowed_hosts", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("claude_args", "codex_args", mode="before")
    @classmethod
    def _split_args(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split like a shell command line: {exc}") from None
        reserved = _RESERVED_ARGS[str(info.field_name)]
        for arg in value if isinstance(value, list) else []:
            if isinstance(arg, str) and arg.split("=", 1)[0] in reserved:
                raise ValueError(f"{arg!r} is set by ua-vp itself; these may not be given: {', '.join(reserved)}")
        return value

    @field_validator("sandbox_loopback_ports", mode="before")
    @classmethod
    def _split_ports(cls, value: Any) -> Any:
        parts = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        ports = []
        for part in parts if isinstance(parts, list) else []:
            if not (isinstance(part, int) or (isinstance(part, str) and part.isdigit())) or not 1 <= int(part) <= 65535:
                raise ValueError(f"{part!r} is not a TCP port (1-65535)")
            ports.append(int(part))
        return sorted(set(ports)) if isinstance(parts, list) else value

    @field_validator("agent_env", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        names = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        for name in names if isinstance(names, list) else []:
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a variable name")
            if name.upper().startswith(ENV_PREFIX):
                raise ValueError(f"{name} is one of ua-vp's own settings, which missions never see")
        return names

    @field_validator("sandbox_home_readable", mode="before")
    @classmethod
    def _split_home_names(cls, value: Any) -> Any:
        names = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        for name in names if isinstance(names, list) else []:
            parts = Path(str(name)).parts
            if name != "*" and (not parts or Path(str(name)).is_absolute() or ".." in parts):
                raise ValueError(f"{name!r} is not a name inside HOME (relative, no '..'; or * for all of HOME)")
        return names

    @field_validator("protected_roots", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "log_level", "log_format", "dispatch_mode", "sandbox", "sandbox_protected", "tokenless_callers", mode="before"
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            url = make_url(value.strip())
        except ArgumentError:
            raise ValueError(
                "is not a database URL; use sqlite:///path/to/file.db or postgresql://user:pass@host:5432/db"
            ) from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"backend {url.get_backend_name()!r} is not supported; use sqlite or postgresql")
        return value.strip()

    @model_validator(mode="after")
    def _poll_within_lease(self) -> Settings:
        # An idle worker updates its session once per poll; sessions silent for a
        # lease TTL are reported lost, so a poll that long would mislabel live workers.
        if self.poll_interval_seconds * 2 > self.lease_ttl_seconds:
            raise ValueError(
                f"UA_VP_POLL_INTERVAL_SECONDS ({self.poll_interval_seconds:g}) must be at most half of "
                f"UA_VP_LEASE_TTL_SECONDS ({self.lease_ttl_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _loopback_ports_spare_our_own(self) -> Settings:
        # A mission that could reach the ops API could dispatch, cancel or read every mission;
        # one that reached the database could rewrite them.
        for port, owner in self.own_loopback_ports().items():
            if port in self.sandbox_loopback_ports:
                raise ValueError(f"UA_VP_SANDBOX_LOOPBACK_PORTS may not hold port {port}: it is {owner}")
        return self

    @model_validator(mode="after")
    def _expand_paths(self) -> Settings:
        self.state_dir = self.state_dir.expanduser()
        if self.handoff_root is not None:
            self.handoff_root = self.handoff_root.expanduser()
        if self.agent_home_template is not None:
            self.agent_home_template = self.agent_home_template.expanduser()
        return self

    @model_validator(mode="after")
    def _remember_secrets(self) -> Settings:
        # Whatever prints an error or a log line from now on masks these (ua_vp.redact).
        password = make_url(self.database_url).password if self.database_url else None
        redact.remember(
            self.ops_token.get_secret_value() if self.ops_token else None,
            self.openai_api_key.get_secret_value() if self.openai_api_key else None,
            str(password) if password else None,
        )
        return self

    # --- derived ----------------------------------------------------------------
    @cached_property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver made explicit (psycopg 3 for PostgreSQL)."""
        raw = self.database_url or f"sqlite:///{self.state_dir / 'ua_vp.db'}"
        url = make_url(raw)
        if url.get_backend_name() == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    def own_loopback_ports(self) -> dict[int, str]:
        """The ports of ua-vp's own services that may listen on the host's loopback, and what each is:
        no mission may reach them (``UA_VP_SANDBOX_LOOPBACK_PORTS``)."""
        found = {self.port: "the ops API's (UA_VP_PORT)"}
        if self.api_url:
            with contextlib.suppress(ValueError):
                api = urlsplit(self.api_url)
                if api.port and _is_loopback(api.hostname):
                    found.setdefault(api.port, "the ops API's (UA_VP_API_URL)")
        if self.database_url:
            url = make_url(self.database_url)
            given = url.query.get("host", ())
            hosts = [url.host, *([given] if isinstance(given, str) else given)]
            if url.get_backend_name() == "postgresql" and any(_is_loopback(h) for h in hosts):
                found.setdefault(url.port or 5432, "the database's (UA_VP_DATABASE_URL)")
        return found

    @property
    def is_embedded(self) -> bool:
        return self.database_url is None

    @property
    def external_dispatch(self) -> bool:
        """True when dispatched missions wait for external workers instead of the in-process lane."""
        return self.external_dispatch_enabled and self.dispatch_mode == "db_pull"

    @property
    def homes_root(self) -> Path:
        """Where each mission attempt gets its private home (``<state_dir>/homes``)."""
        return self.state_dir / "homes"

    @property
    def output_root(self) -> Path:
        """Where each mission attempt's full output log is kept (``<state_dir>/output``)."""
        return self.state_dir / "output"

    def workspace_root(self, name: str, configured: Path | None) -> Path:
        return (configured or self.state_dir / "workspaces" / name).expanduser()

    def plugin(self, model: type[S], **overrides: Any) -> S:
        """The settings a plugin declared (its ``ua_vp_plugin_settings`` hook), read from the
        environment and ``.env`` once per host settings object and validated like the host's:
        a bad value is a :class:`ConfigError` naming the variable. ``overrides`` (tests) apply
        on the first read only."""
        if model not in self._plugin_settings:
            values = _validated(model, overrides)
            # A plugin's secrets are masked wherever ua-vp prints, as the host's are.
            redact.remember(*(v.get_secret_value() for v in dict(values).values() if isinstance(v, SecretStr)))
            self._plugin_settings[model] = values
        found = self._plugin_settings[model]
        assert isinstance(found, model)
        return found


class PluginSettings(BaseSettings):
    """Base for a plugin's own settings: subclass it with your own ``env_prefix``, e.g.
    ``model_config = SettingsConfigDict(env_prefix="UA_VP_EXAMPLE_")``, and return the class
    from your ``ua_vp_plugin_settings`` hook. Same rules as the host's: ``.env`` aware, an
    empty value means unset, a bad value stops start-up naming its variable. Declare secrets
    as ``SecretStr``: ``ua-vp profiles`` masks them."""

    model_config = SettingsConfigDict(**_COMMON)


S = TypeVar("S", bound=BaseSettings)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def variable_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field (or the alias an error names) is read from."""
    aliases = {str(f.validation_alias).lower() for f in model.model_fields.values() if f.validation_alias}
    if field.lower() in aliases:
        return field.upper()
    info = model.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias.upper()
    return (str(model.model_config.get("env_prefix") or "") + field).upper()


def _validated(model: type[S], overrides: dict[str, Any]) -> S:
    try:
        return model(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"] if isinstance(p, str))
            given = err.get("input")
            if field.lower() == "database_url" and isinstance(given, str):
                given = redact.redact_url(given)
            shown = "" if isinstance(given, dict) else f" (got {redact.redact(repr(given))})"
            # Checks across fields (no loc) name their variables in the message itself.
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{variable_name(model, field)}: {message}{shown}" if field else message)
        raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems) from None


def load_settings(**overrides: Any) -> Settings:
    """Build the host settings, turning a validation error into one naming the variables."""
    return _validated(Settings, overrides)
