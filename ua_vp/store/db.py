"""Engines, migrations and the "is this database migrated?" check."""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ua_vp.errors import DatabaseNotMigrated

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # No pool_pre_ping: it would add a round trip to every claim. A dropped
    # connection fails the statement, the pool invalidates it, and the caller's
    # tenacity policy retries on a fresh one.
    # connect_timeout: a partitioned network fails fast into that retry instead of
    # hanging a connect for minutes.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10},
    )


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from pysqlite so we can say BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL: readers never block the writer. NORMAL is durable across app crashes.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writes (MissionStore.tx marks them) take the write lock up front: a
        # deferred transaction that reads then writes can fail with SQLITE_BUSY
        # mid-way when another process wrote first; with the lock taken at BEGIN,
        # busy_timeout simply waits. Reads stay deferred: in WAL mode they never
        # wait for a writer, not even one frozen mid-transaction.
        write = conn.get_execution_options().get("ua_vp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Apply every migration; safe to call concurrently from several processes."""
    cfg = _alembic_config()
    lock = _sqlite_lock_path(engine)
    if lock is not None:
        # Alembic's DDL plus version bump is not atomic on SQLite across processes.
        with open(lock, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            _run_upgrade(engine, cfg)
    else:
        _run_upgrade(engine, cfg)
    return head_revision()


def _run_upgrade(engine: Engine, cfg: Config) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialise concurrent upgrades of one PostgreSQL database.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(726175)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _sqlite_lock_path(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
        return None
    return Path(engine.url.database).expanduser().with_suffix(".migrate.lock")


def ensure_migrated(engine: Engine, *, auto_upgrade: bool) -> None:
    current = current_revision(engine)
    if current == head_revision():
        return
    if auto_upgrade:
        upgrade(engine)
        return
    where = engine.url.render_as_string(hide_password=True)
    state = "has no ua-vp tables" if current is None else f"is at schema revision {current}, not {head_revision()}"
    raise DatabaseNotMigrated(
        f"the database {where} {state}; run `ua-vp db upgrade` (with the same UA_VP_DATABASE_URL) first",
        current=current,
        head=head_revision(),
    )
