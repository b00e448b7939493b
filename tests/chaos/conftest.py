"""Chaos runs: the short ones (marked ``slow``) run with everything else; the long
ones (marked ``chaos``) only by hand: ``pytest tests/chaos -m chaos`` or
``UA_VP_CHAOS=1``. PostgreSQL runs get a private cluster, since they restart it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import required
from ua_vp.store import db as store_db

from .harness import PG_BIN, PgCluster, free_port


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("UA_VP_CHAOS") == "1" or "chaos" in (config.getoption("markexpr") or ""):
        return  # asked for (``-m "not chaos"`` deselects them before they run anyway)
    skip = pytest.mark.skip(reason="long chaos run, by hand: pytest tests/chaos -m chaos (or UA_VP_CHAOS=1)")
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(skip)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A migrated PostgreSQL cluster of this test's own, on a free port, removed afterwards.
    Never the shared test server: the chaos restarts it."""
    if not (PG_BIN / "pg_ctl").exists():
        reason = f"no PostgreSQL binaries in {PG_BIN} (apt-get install postgresql-15, or set PG_BIN)"
        required(reason)
    base = Path(tempfile.mkdtemp(prefix="ua-vp-chaos-pg-"))
    base.chmod(0o755)  # as root the server runs as `postgres`, which must reach its data directory
    cluster = PgCluster(base / "data", free_port())
    try:
        for attempt in range(3):
            try:
                cluster.start()
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
                cluster.port = free_port()  # taken between our probe and the server's bind
        engine = store_db.make_engine(cluster.url)
        store_db.upgrade(engine)
        engine.dispose()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
