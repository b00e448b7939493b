"""Real databases for every test: SQLite files and PostgreSQL databases cloned
from a migrated template (built once per session, as procrastinate and pgqueuer do)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ua_vp.store import MissionStore, open_store
from ua_vp.store import db as store_db

TEMPLATE_DB = "ua_vp_test_template"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def required(reason: str) -> NoReturn:
    """Skip a test whose real part is missing here; under CI=true, where .ci/run installs every
    part, fail instead: a CI run that skipped the real thing would prove nothing."""
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true this must run, not skip")
    pytest.skip(reason)


def _admin_url() -> str | None:
    return os.environ.get("UA_VP_TEST_DATABASE_URL")


def _conninfo(url: str, dbname: str | None = None) -> str:
    u = make_url(url)
    if dbname:
        u = u.set(database=dbname)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template() -> str:
    """The admin URL of a server holding a migrated template database."""
    url = _admin_url()
    reason = "no PostgreSQL: set UA_VP_TEST_DATABASE_URL (scripts/pg_test_server.sh start prints one)"
    if not url:
        required(reason)
    try:
        with psycopg.connect(_conninfo(url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    except psycopg.OperationalError as exc:
        required(f"PostgreSQL at {url} unreachable: {exc}")
    engine = store_db.make_engine(_conninfo(url, TEMPLATE_DB).replace("postgresql://", "postgresql+psycopg://", 1))
    store_db.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database for one test (a SQLAlchemy URL)."""
    name = f"ua_vp_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(pg_template), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield _conninfo(pg_template, name).replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(_conninfo(pg_template), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = store_db.make_engine(f"sqlite:///{path}")
    store_db.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "ua_vp.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[MissionStore]:
    s = open_store(db_url, lease_ttl_seconds=60)
    yield s
    s.engine.dispose()


@pytest.fixture
def short_lease_store(db_url: str) -> Iterator[MissionStore]:
    """Leases of 0.2 s so reaping can be shown by waiting, not by editing rows."""
    s = open_store(db_url, lease_ttl_seconds=0.2)
    yield s
    s.engine.dispose()
