"""The schema the migrations build is the schema the code expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ua_vp.errors import DatabaseNotMigrated
from ua_vp.store import db, open_store
from ua_vp.store.tables import metadata


def test_migrations_match_the_table_definitions(db_url: str) -> None:
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_an_unmigrated_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(DatabaseNotMigrated, match="run `ua-vp db upgrade`"):
        open_store(url)


def test_the_embedded_database_upgrades_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'ua_vp.db'}"
    store = open_store(url, auto_upgrade=True)
    assert db.current_revision(store.engine) == db.head_revision()


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = db.make_engine(db_url)
    assert db.upgrade(engine) == db.upgrade(engine) == db.head_revision()
