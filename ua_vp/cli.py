"""``ua-vp``: thin commands over the store, the gateway, the worker and the server.

Errors are translated in one place (:func:`main`): a :class:`UaVpError` prints
``error [code]: message`` and exits 2; never a traceback for a known problem.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from ua_vp.config import Settings, load_settings
from ua_vp.errors import InvalidRequest, UaVpError
from ua_vp.missions import parse_statuses
from ua_vp.redact import redact
from ua_vp.store import MissionStore, open_store


class State:
    """Built lazily so ``ua-vp --help`` works with a broken configuration."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._settings: Settings | None = None
        self._store: MissionStore | None = None

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

    def store(self, *, auto_upgrade: bool | None = None) -> MissionStore:
        if self._store is None:
            s = self.settings
            self._store = open_store(
                s.sqlalchemy_url,
                lease_ttl_seconds=s.lease_ttl_seconds,
                auto_upgrade=s.is_embedded if auto_upgrade is None else auto_upgrade,
            )
        return self._store

    def gateway(self) -> Any:
        from ua_vp.dispatch import Gateway
        from ua_vp.plugins import load_registry

        return Gateway(self.settings, self.store(), load_registry(self.settings))


pass_state = click.make_pass_decorator(State)


def _json_arg(name: str, raw: str | None) -> Any:
    if raw is None:
        return None

    def refuse(constant: str) -> Any:
        raise InvalidRequest(f"--{name} contains {constant}, which is not JSON; use a number")

    try:
        return json.loads(raw, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--{name} is not valid JSON ({exc.msg} at position {exc.pos}): {raw!r}") from None


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, *body])


def _emit(state: State, payload: Any, human: Callable[[], str]) -> None:
    click.echo(json.dumps(payload, indent=2, default=str) if state.as_json else human())


MISSION_COLUMNS = ("mission_id", "vp_id", "status", "attempt", "priority", "lane", "created_at", "objective")


def _mission_row(m: dict[str, Any]) -> dict[str, Any]:
    objective = m["objective"].replace("\n", " ")
    return {
        **m,
        "objective": objective if len(objective) <= 48 else objective[:45] + "...",
        "created_at": m["created_at"][:19],
    }


@click.group()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.version_option(package_name="ua-vp")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """ua-vp: missions for external VP agent workers, through a database."""
    ctx.obj = State(as_json)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
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


@cli.command()
@click.argument("vp_id")
@click.argument("objective")
@click.option("--type", "mission_type", default="task", show_default=True)
@click.option("--constraints", help='JSON object, e.g. \'{"repo_path": "~/src/app"}\'.')
@click.option("--budget", help="JSON object: max_seconds, max_tokens, max_output_bytes.")
@click.option("--priority", type=int, default=None, help="0 runs first; default 100.")
@click.option("--idempotency-key", default=None)
@click.option("--wait", is_flag=True, help="Wait until the mission ends and print it.")
@click.option("--follow", is_flag=True, help="Print events as they arrive until the mission ends.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds --wait/--follow wait.")
@click.option("--api", "api_url", default=None, help="Go through a running server, e.g. http://127.0.0.1:8002.")
@pass_state
def dispatch(
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
    api_url: str | None,
) -> None:
    """Queue a mission for VP_ID (directly in the database, or through --api)."""
    from ua_vp.follow import ApiClient, follow_local

    request = {
        "vp_id": vp_id,
        "objective": objective,
        "mission_type": mission_type,
        "constraints": _json_arg("constraints", constraints),
        "budget": _json_arg("budget", budget),
        "priority": priority,
        "idempotency_key": idempotency_key,
    }
    if api_url:
        client = ApiClient(api_url, state.settings.ops_token.get_secret_value() if state.settings.ops_token else None)
        answer = client.dispatch(request)
        mission, created = answer["mission"], answer["created"]
    else:
        enqueued = state.gateway().dispatch(**request)
        mission, created = enqueued.mission.to_public(), enqueued.created
    mission_id = mission["mission_id"]
    verb = "queued" if created else "already existed (idempotent replay)"
    if not state.as_json:
        click.echo(f"mission {mission_id} {verb} on lane {mission['lane']}")
    if wait or follow:
        events = (
            client.follow(mission_id, timeout=timeout)
            if api_url
            else follow_local(state.store(), mission_id, timeout=timeout)
        )
        for event in events:
            if follow and not state.as_json:
                click.echo(_event_line(event))
        mission = client.mission(mission_id) if api_url else state.store().get(mission_id).to_public()
    final = mission["result"] or mission["error"]
    _emit(
        state,
        {"mission": mission, "created": created},
        lambda: f"mission {mission_id}: {mission['status']}" + (f"\n{json.dumps(final, indent=2)}" if final else ""),
    )


@cli.command()
@click.option("--vp-id", default=None)
@click.option("--status", default="all", show_default=True, help="'all' or a comma list, e.g. queued,running.")
@click.option("--limit", type=int, default=50, show_default=True, help="1 to 500.")
@pass_state
def missions(state: State, vp_id: str | None, status: str, limit: int) -> None:
    """List missions, newest first."""
    found = [
        m.to_public() for m in state.store().list_missions(vp_id=vp_id, statuses=parse_statuses(status), limit=limit)
    ]
    _emit(state, {"missions": found}, lambda: _table([_mission_row(m) for m in found], MISSION_COLUMNS))


@cli.command()
@click.argument("mission_id")
@pass_state
def mission(state: State, mission_id: str) -> None:
    """Show one mission and its events."""
    store = state.store()
    m = store.get(mission_id).to_public()
    evs = [e.to_public() for e in store.events(mission_id)]

    def human() -> str:
        head = "\n".join(f"{k:>20}: {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in m.items())
        rows = [{**e, "created_at": e["created_at"][:23], "payload": json.dumps(e["payload"])[:80]} for e in evs]
        return head + "\n\n" + _table(rows, ("id", "created_at", "event_type", "payload"))

    _emit(state, {"mission": m, "events": evs}, human)


@cli.command()
@click.argument("mission_id")
@pass_state
def cancel(state: State, mission_id: str) -> None:
    """Cancel a mission: at once if queued, via its worker if running."""
    outcome = state.gateway().cancel(mission_id)
    m = outcome.mission
    note = "cancel requested" if outcome.changed else "unchanged"
    _emit(
        state,
        {"mission": m.to_public(), "changed": outcome.changed},
        lambda: f"mission {m.mission_id}: {note}, now {m.status.value}",
    )


@cli.command()
@pass_state
def profiles(state: State) -> None:
    """List installed and enabled profiles."""
    from ua_vp import sandbox
    from ua_vp.plugins import load_registry

    registry = load_registry(state.settings, validate=False)
    rows = [
        {
            "vp_id": p.vp_id,
            "name": p.name,
            "enabled": p.vp_id in registry.enabled,
            "runtime": p.runtime,
            "sandbox": sandbox.describe(p, state.settings),
            "workspace_root": str(p.workspace_root),
            "plugin": registry.providers[p.vp_id],
        }
        for p in sorted(registry.installed.values(), key=lambda p: p.vp_id)
    ]
    missing = [i for i in state.settings.enabled_ids if i not in registry.installed]
    probes = sandbox.probe_all()
    sandboxes = {
        "setting": state.settings.sandbox,
        "protected": state.settings.sandbox_protected,
        "backends": {name: {"works": p.works, "reason": p.reason} for name, p in probes.items()},
    }
    payload = {
        "profiles": rows,
        "enabled_ids": state.settings.enabled_ids,
        "enabled_but_not_installed": missing,
        "sandbox": sandboxes,
    }
    human = _table(rows, ("vp_id", "name", "enabled", "runtime", "sandbox", "workspace_root", "plugin"))
    human += f"\n\nUA_VP_SANDBOX={state.settings.sandbox}; backends on this machine:"
    human += "".join(f"\n  {name}: {'works' if p.works else 'unavailable'}: {p.reason}" for name, p in probes.items())
    if missing:
        human += f"\n\nUA_VP_ENABLED_IDS names {', '.join(missing)}, which no installed plugin provides."
    _emit(state, payload, lambda: human)


@cli.command()
@click.option("--vp-id", default=None)
@pass_state
def sessions(state: State, vp_id: str | None) -> None:
    """List worker sessions (a silent one shows as lost)."""
    found = [s.to_public() for s in state.store().list_sessions(vp_id=vp_id)]
    cols = ("worker_id", "vp_id", "status", "lane", "host", "pid", "active_missions", "capacity", "last_seen_at")
    _emit(state, {"sessions": found}, lambda: _table(found, cols))


@cli.command()
@click.option("--vp-id", default=None)
@pass_state
def metrics(state: State, vp_id: str | None) -> None:
    """Counts, queue depth, latencies and recovery figures."""
    from ua_vp.store.metrics import vp_metrics

    data = vp_metrics(state.store(), vp_id)
    _emit(
        state,
        {"metrics": data},
        lambda: json.dumps({k: v for k, v in data.items() if not k.startswith("recent")}, indent=2),
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
@pass_state
def worker(state: State, vp_id: str, concurrency: int | None, once: bool, log_level: str | None) -> None:
    """Run a worker for one profile until SIGTERM/SIGINT (drains with a grace period)."""
    import asyncio

    from tenacity import Retrying

    from ua_vp.plugins import load_registry
    from ua_vp.worker import DB_RETRY, Worker, run_worker_process

    state.serve_logging(log_level)
    settings = state.settings
    registry = load_registry(settings)
    # A worker (re)started during a database outage waits for it, as a running one does.
    store = Retrying(**DB_RETRY)(state.store)  # type: ignore[arg-type]
    w = Worker(
        settings=settings,
        store=store,
        registry=registry,
        profile=registry.profile(vp_id),
        concurrency=concurrency or settings.max_concurrent_missions,
    )
    store.on_events = registry.notify
    asyncio.run(run_worker_process(w, once=once))


@cli.command()
@click.option("--host", default=None, help="Address to bind; default UA_VP_HOST (127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port; default UA_VP_PORT (8002).")
@LOG_LEVEL
@pass_state
def serve(state: State, host: str | None, port: int | None, log_level: str | None) -> None:
    """Run the ops API and the dashboard until SIGTERM/SIGINT."""
    from ua_vp.api.server import run

    state.serve_logging(log_level)
    run(state.settings, host=host, port=port)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="ua-vp", standalone_mode=False)
    except UaVpError as exc:
        click.echo(f"error [{exc.code}]: {redact(exc.message)}", err=True)
        sys.exit(2)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        click.echo(f"error [database_unavailable]: {redact(reason)} (check UA_VP_DATABASE_URL)", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
