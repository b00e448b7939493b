"""``ua-vp``: thin commands over the store, the gateway, the worker and the server.

Errors are translated in one place (:func:`main`): a :class:`UaVpError` prints
``error [code]: message`` and exits 2; never a traceback for a known problem.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from ua_vp.config import Settings, load_settings
from ua_vp.errors import InvalidRequest, UaVpError
from ua_vp.follow import Client, WaitTimedOut
from ua_vp.host import Host
from ua_vp.redact import printable, redact

EXIT_COMPLETED, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_TIMED_OUT = 0, 1, 2, 3, 4
"""``--wait``/``--follow`` exit with the mission's outcome; 2 stays for usage and validation errors."""
STATUS_EXIT = {"completed": EXIT_COMPLETED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class State:
    """Built lazily so ``ua-vp --help`` works with a broken configuration."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.api_url: str | None = None
        self._settings: Settings | None = None
        self._host: Host | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            from ua_vp.logging import configure_logging

            # One-shot commands print their answer; their info logs would only be noise.
            # `serve` and `worker` log at the configured level (see serve_logging()).
            level = self._settings.log_level if self._settings.log_level in ("warning", "error") else "warning"
            configure_logging(level, self._settings.log_format)
        return self._settings

    def serve_logging(self, level: str | None = None) -> None:
        """Long-running commands log at ``--log-level``, else UA_VP_LOG_LEVEL."""
        from ua_vp.logging import configure_logging

        if level:
            self._settings = self.settings.model_copy(update={"log_level": level})
        configure_logging(self.settings.log_level, self.settings.log_format)

    @property
    def host(self) -> Host:
        if self._host is None:
            self._host = Host(self.settings)
        return self._host

    def client(self) -> Client:
        """The server named by ``--api``/``UA_VP_API_URL``, else the database directly."""
        from ua_vp.follow import ApiClient, LocalClient

        url = self.api_url or self.settings.api_url
        if url:
            token = self.settings.ops_token
            return ApiClient(url, token.get_secret_value() if token else None)
        return LocalClient(self.host)


pass_state = click.make_pass_decorator(State)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).as_json = True


def _set_api(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).api_url = value


json_option = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Machine-readable output (accepted before or after the subcommand).",
)
api_option = click.option(
    "--api",
    metavar="URL",
    expose_value=False,
    callback=_set_api,
    help="Go through a running server instead of the database, e.g. http://127.0.0.1:8002 "
    "(default: UA_VP_API_URL; the token is UA_VP_OPS_TOKEN).",
)


def _json_arg(name: str, raw: str | None) -> Any:
    if raw is None:
        return None

    def refuse(constant: str) -> Any:
        raise InvalidRequest(f"--{name} contains {constant}, which is not JSON; use a number")

    try:
        return json.loads(raw, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--{name} is not valid JSON ({exc.msg} at position {exc.pos}): {raw!r}") from None


def _say(text: str, *, err: bool = False) -> None:
    """Every human-facing line goes out here: what agents and callers wrote (an objective,
    an error) may hold terminal escapes, which are shown as ``\\x1b``, never obeyed."""
    click.echo(printable(text), err=err)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[printable(str(r.get(c) if r.get(c) is not None else "-"), one_line=True) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, *body])


def _emit(state: State, payload: Any, human: Callable[[], str]) -> None:
    if state.as_json:
        click.echo(json.dumps(payload, indent=2, default=str))  # JSON escapes control characters itself
    else:
        _say(human())


MISSION_COLUMNS = ("mission_id", "vp_id", "status", "attempt", "priority", "lane", "created_at", "objective")


def _mission_row(m: dict[str, Any]) -> dict[str, Any]:
    objective = m["objective"].replace("\n", " ")
    return {
        **m,
        "objective": objective if len(objective) <= 48 else objective[:45] + "...",
        "created_at": m["created_at"][:19],
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, for every subcommand.")
@click.version_option(package_name="ua-vp", help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """ua-vp: missions for external VP agent workers, through a database.

    Settings come from UA_VP_* variables and ./.env (see `ua-vp profiles` for each
    profile's own). Errors print `error [code]: message` and exit 2.
    """
    ctx.obj = State(as_json)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@json_option
@pass_state
def db_upgrade(state: State) -> None:
    """Apply every migration to UA_VP_DATABASE_URL (the embedded SQLite by default)."""
    from ua_vp.store import db as store_db

    engine = store_db.make_engine(state.settings.sqlalchemy_url)
    revision = store_db.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    _emit(state, {"database": where, "revision": revision}, lambda: f"{where} is at revision {revision}")


def _event_line(e: dict[str, Any]) -> str:
    return f"{e['created_at'][11:23]}  {e['event_type']:<28} {json.dumps(e['payload'])[:100]}"


@cli.command(
    epilog="Exit status with --wait or --follow: 0 completed, 1 failed, 3 cancelled, 4 timed out; "
    "2 for usage and validation errors (also without them)."
)
@click.argument("vp_id")
@click.argument("objective")
@click.option("--type", "mission_type", default="task", show_default=True, help="Mission type the profile accepts.")
@click.option("--constraints", help='JSON object, e.g. \'{"repo_path": "~/src/app"}\'.')
@click.option("--budget", help="JSON object: max_seconds, max_tokens, max_output_bytes.")
@click.option("--priority", type=int, default=None, help="0 runs first; default 100.")
@click.option(
    "--idempotency-key",
    default=None,
    help="Dispatching again with the same key returns the first mission (a different request is refused).",
)
@click.option("--wait", is_flag=True, help="Wait until the mission ends, print it, exit with its outcome.")
@click.option("--follow", is_flag=True, help="Print events as they are committed until the mission ends.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds --wait/--follow wait.")
@api_option
@json_option
@pass_state
@click.pass_context
def dispatch(
    ctx: click.Context,
    state: State,
    vp_id: str,
    objective: str,
    mission_type: str,
    constraints: str | None,
    budget: str | None,
    priority: int | None,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    timeout: float,
) -> None:
    """Queue a mission for VP_ID (directly in the database, or through --api)."""
    request = {
        "vp_id": vp_id,
        "objective": objective,
        "mission_type": mission_type,
        "constraints": _json_arg("constraints", constraints),
        "budget": _json_arg("budget", budget),
        "priority": priority,
        "idempotency_key": idempotency_key,
    }
    client = state.client()
    mission, created = client.dispatch(request)
    mission_id = mission["mission_id"]
    verb = "queued" if created else "already existed (idempotent replay)"
    if not state.as_json:
        _say(f"mission {mission_id} {verb} on lane {mission['lane']}")
    if wait or follow:
        for event in client.follow(mission_id, timeout=timeout):
            if follow and not state.as_json:
                _say(_event_line(event))
        mission = client.mission(mission_id)
    final = mission["result"] or mission["error"]
    _emit(
        state,
        {"mission": mission, "created": created},
        lambda: f"mission {mission_id}: {mission['status']}" + (f"\n{json.dumps(final, indent=2)}" if final else ""),
    )
    if wait or follow:
        ctx.exit(STATUS_EXIT.get(mission["status"], EXIT_FAILED))


@cli.command()
@click.option("--vp-id", default=None, help="Only this profile's missions.")
@click.option("--status", default="all", show_default=True, help="'all' or a comma list, e.g. queued,running.")
@click.option("--limit", type=int, default=50, show_default=True, help="1 to 500.")
@api_option
@json_option
@pass_state
def missions(state: State, vp_id: str | None, status: str, limit: int) -> None:
    """List missions, newest first."""
    found = state.client().missions(vp_id, status, limit)
    _emit(state, {"missions": found}, lambda: _table([_mission_row(m) for m in found], MISSION_COLUMNS))


@cli.command()
@click.argument("mission_id")
@api_option
@json_option
@pass_state
def mission(state: State, mission_id: str) -> None:
    """Show one mission and its events."""
    client = state.client()
    m = client.mission(mission_id)
    evs = client.events(mission_id)

    def human() -> str:
        head = "\n".join(
            f"{k:>20}: {json.dumps(v) if isinstance(v, dict | list) else printable(str(v), one_line=True)}"
            for k, v in m.items()
        )
        rows = [{**e, "created_at": e["created_at"][:23], "payload": json.dumps(e["payload"])[:80]} for e in evs]
        return head + "\n\n" + _table(rows, ("id", "created_at", "event_type", "payload"))

    _emit(state, {"mission": m, "events": evs}, human)


@cli.command()
@click.argument("mission_id")
@api_option
@json_option
@pass_state
def cancel(state: State, mission_id: str) -> None:
    """Cancel a mission: at once if queued, via its worker if running."""
    m, changed = state.client().cancel(mission_id)
    note = "cancel requested" if changed else "unchanged"
    _emit(state, {"mission": m, "changed": changed}, lambda: f"mission {m['mission_id']}: {note}, now {m['status']}")


@cli.command()
@click.option("--vp-id", default=None, help="Only this profile's workers.")
@api_option
@json_option
@pass_state
def sessions(state: State, vp_id: str | None) -> None:
    """List worker sessions (a silent one shows as lost)."""
    found = state.client().sessions(vp_id)
    cols = ("worker_id", "vp_id", "status", "lane", "host", "pid", "active_missions", "capacity", "last_seen_at")
    _emit(state, {"sessions": found}, lambda: _table(found, cols))


@cli.command()
@click.option("--vp-id", default=None, help="Only this profile's figures.")
@api_option
@json_option
@pass_state
def metrics(state: State, vp_id: str | None) -> None:
    """Counts, queue depth, latencies and recovery figures."""
    data = state.client().metrics(vp_id)
    _emit(
        state,
        {"metrics": data},
        lambda: json.dumps({k: v for k, v in data.items() if not k.startswith("recent")}, indent=2),
    )


@cli.command()
@json_option
@pass_state
def profiles(state: State) -> None:
    """List installed and enabled profiles, each with its effective settings (secrets masked)."""
    from ua_vp import sandbox

    registry = state.host.registry
    rows: list[dict[str, Any]] = [
        {
            "vp_id": p.vp_id,
            "name": p.name,
            "enabled": p.vp_id in registry.enabled,
            "runtime": p.runtime,
            "sandbox": sandbox.describe(p, state.settings),
            "workspace_root": str(p.workspace_root),
            "plugin": registry.providers[p.vp_id],
            "settings": registry.effective_settings(p.vp_id),
        }
        for p in sorted(registry.installed.values(), key=lambda p: p.vp_id)
    ]
    missing = registry.enabled_but_missing
    probes = sandbox.probe_all()
    sandboxes = {
        "setting": state.settings.sandbox,
        "protected": state.settings.sandbox_protected,
        "backends": {name: {"works": p.works, "reason": p.reason} for name, p in probes.items()},
    }
    payload = {
        "profiles": rows,
        "enabled_ids": list(registry.enabled),
        "enabled_but_not_installed": missing,
        "remote_ids": registry.remote,
        "broken_plugins": [b.as_dict() for b in registry.broken],
        "sandbox": sandboxes,
    }

    def human() -> str:
        text = _table(rows, ("vp_id", "name", "enabled", "runtime", "sandbox", "workspace_root", "plugin"))
        for row in rows:
            if row["settings"]:
                text += f"\n\n{row['vp_id']} settings:"
                text += "".join(f"\n  {k}={'' if v is None else v}" for k, v in row["settings"].items())
        text += f"\n\nUA_VP_SANDBOX={state.settings.sandbox}; backends on this machine:"
        text += "".join(f"\n  {n}: {'works' if p.works else 'unavailable'}: {p.reason}" for n, p in probes.items())
        if missing:
            text += f"\n\nUA_VP_ENABLED_IDS names {', '.join(missing)}, which no installed plugin provides."
        if registry.remote:
            text += f"\n\nAccepted for workers on other hosts (UA_VP_REMOTE_IDS): {', '.join(registry.remote)}"
        return text + _broken_note(registry.broken)

    _emit(state, payload, human)


def _broken_note(broken: Sequence[Any]) -> str:
    return "".join(
        f"\n\nbroken plugin {b.name} ({b.dist or '?'} {b.version or '?'}), left out: {b.error}" for b in broken
    )


@cli.command()
@json_option
@pass_state
def plugins(state: State) -> None:
    """List the loaded plugins: distribution, version, hooks, and the profiles and runtimes each provides."""
    registry = state.host.registry
    infos = [i.as_dict() for i in registry.plugin_infos()]
    rows = [
        {
            **i,
            "dist": f"{i['dist']} {i['version']}" if i["dist"] else "(built in)",
            "hooks": ",".join(h.removeprefix("ua_vp_") for h in i["hooks"]),
            "provides": ",".join(i["profiles"] + i["runtimes"]) or "-",
        }
        for i in infos
    ]
    payload = {"plugins": infos, "broken": [b.as_dict() for b in registry.broken]}
    _emit(
        state,
        payload,
        lambda: _table(rows, ("name", "dist", "hooks", "provides")) + _broken_note(registry.broken),
    )


@cli.group()
def profile() -> None:
    """Write your own profile."""


@profile.command("new")
@click.argument("name")
@click.option("--vp-id", default=None, help="The vp_id missions are addressed to; default vp.NAME.primary.")
@click.option("--display-name", default=None, help="Short display name, e.g. WEATHER; default NAME upper-cased.")
@click.option(
    "--dir",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the package; default ./ua-vp-NAME (must not exist or be empty).",
)
@json_option
@pass_state
def profile_new(state: State, name: str, vp_id: str | None, display_name: str | None, target: Path | None) -> None:
    """Generate a ready profile package NAME: entry point, settings model, runtime, tests, README."""
    from ua_vp import scaffold

    n = scaffold.names(name, vp_id, display_name)
    tokens = n.tokens()
    where = target or Path(tokens["__DIST__"])
    written = scaffold.generate(n, where)
    payload = {"path": str(where), "dist": tokens["__DIST__"], "vp_id": n.vp_id, "files": [str(p) for p in written]}
    _emit(
        state,
        payload,
        lambda: (
            f"wrote {tokens['__DIST__']} ({n.vp_id}) in {where}\n"
            f'next: pip install -e "{where}[test]" && pytest {where} && ua-vp profiles'
        ),
    )


LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Default: UA_VP_LOG_LEVEL (info).",
)


@cli.command()
@click.option("--profile", "vp_id", required=True, help="The vp_id to serve, e.g. vp.coder.primary.")
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=None, help="Default: UA_VP_MAX_CONCURRENT_MISSIONS."
)
@click.option("--once", is_flag=True, help="Run what is queued now, then exit.")
@LOG_LEVEL
@json_option
@pass_state
def worker(state: State, vp_id: str, concurrency: int | None, once: bool, log_level: str | None) -> None:
    """Run a worker for one profile until SIGTERM/SIGINT (drains with a grace period)."""
    import asyncio

    from tenacity import Retrying

    from ua_vp.worker import DB_RETRY, Worker, run_worker_process

    state.serve_logging(log_level)
    settings = state.settings
    host = state.host
    profile = host.registry.profile(vp_id)
    # A worker (re)started during a database outage waits for it, as a running one does.
    store = Retrying(**DB_RETRY)(lambda: host.store)  # type: ignore[arg-type]
    w = Worker(
        settings=settings,
        store=store,
        registry=host.registry,
        profile=profile,
        concurrency=concurrency or settings.max_concurrent_missions,
    )
    asyncio.run(run_worker_process(w, once=once))


@cli.command()
@click.option("--host", default=None, help="Address to bind; default UA_VP_HOST (127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port; default UA_VP_PORT (8002).")
@LOG_LEVEL
@json_option
@pass_state
def serve(state: State, host: str | None, port: int | None, log_level: str | None) -> None:
    """Run the ops API and the dashboard until SIGTERM/SIGINT."""
    from ua_vp.api.server import run

    state.serve_logging(log_level)
    run(state.settings, host=host, port=port)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        # Outside standalone mode click returns ctx.exit()'s code instead of exiting with it.
        code = cli.main(args=argv, prog_name="ua-vp", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except WaitTimedOut as exc:
        _say(f"error [{exc.code}]: {redact(exc.message)}", err=True)
        sys.exit(EXIT_TIMED_OUT)
    except UaVpError as exc:
        _say(f"error [{exc.code}]: {redact(exc.message)}", err=True)
        sys.exit(EXIT_USAGE)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        _say(f"error [database_unavailable]: {redact(reason)} (check UA_VP_DATABASE_URL)", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
