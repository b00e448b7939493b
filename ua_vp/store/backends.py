"""How each backend runs the hot-path statements of :mod:`statements`.

Same statements, same transition table; what differs is only how a statement
and its events are committed:

- PostgreSQL: the statement and its event insert are ONE autocommit statement
  (:mod:`pg_sql`), compiled to text once and run through the driver directly.
- SQLite: the statement inside BEGIN IMMEDIATE, then the event rows, in one
  transaction (SQLite has one writer at a time anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from psycopg.types.json import Jsonb
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ua_vp.missions import CLAIM, ENQUEUE, FINALIZE, Mission, MissionEvent
from ua_vp.store import pg_sql, rows, statements

if TYPE_CHECKING:
    from ua_vp.store.store import MissionStore


class HotPath(Protocol):
    def enqueue(self, values: dict[str, Any]) -> Mission | None:
        """The new mission, or None when its idempotency key was taken."""

    def claim(self, vp_id: str, worker_id: str, limit: int) -> list[Mission]: ...

    def heartbeat(self, leases: Sequence[tuple[str, str]]) -> dict[str, datetime | None]:
        """mission_id -> cancel_requested_at, for each lease still held."""

    def finalize(self, outcomes: Sequence[dict[str, Any]]) -> list[Mission]:
        """The missions ended (those whose lease was still held)."""

    def progress(self, mission_id: str, lease_token: str, payloads: list[dict[str, Any]]) -> bool:
        """Write ``payloads`` (at least one) as progress events while the lease holds."""


class PostgresHotPath:
    def __init__(self, store: MissionStore) -> None:
        self.store = store
        self.ttl = store.lease_ttl.total_seconds()
        self._autocommit = store.engine.execution_options(isolation_level="AUTOCOMMIT")

    def _run(self, compiled: pg_sql.Compiled, **params: Any) -> list[Any]:
        with self._autocommit.connect() as conn:
            found = list(conn.exec_driver_sql(compiled.sql, compiled.params(**params)))
        written = [e for e in map(rows.returned_event, found) if e is not None]
        self.store.publish(written)
        return found

    def enqueue(self, values: dict[str, Any]) -> Mission | None:
        json = {"constraints": Jsonb(values["constraints"]), "budget": Jsonb(values["budget"])}
        found = self._run(pg_sql.enqueue(), **statements.params(**{**values, **json}))
        return rows.mission(found[0]) if found else None

    def claim(self, vp_id: str, worker_id: str, limit: int) -> list[Mission]:
        return [
            rows.mission(r)
            for r in self._run(pg_sql.claim(limit, self.ttl), **statements.params(vp_id=vp_id, worker_id=worker_id))
        ]

    def heartbeat(self, leases: Sequence[tuple[str, str]]) -> dict[str, datetime | None]:
        compiled = pg_sql.heartbeat(self.ttl)
        params = compiled.params(mission_id_array=[m for m, _ in leases], lease_token_array=[t for _, t in leases])
        with self._autocommit.connect() as conn:
            return {r[0]: r[1] for r in conn.exec_driver_sql(compiled.sql, params)}

    def finalize(self, outcomes: Sequence[dict[str, Any]]) -> list[Mission]:
        arrays: dict[str, list[Any]] = {f"{name}_array": [] for name in statements.FINALIZE_COLUMNS}
        for o in outcomes:
            for name in statements.FINALIZE_COLUMNS:
                value = o[name]
                arrays[f"{name}_array"].append(
                    Jsonb(value) if name in ("result", "error") and value is not None else value
                )
        return [rows.mission(r) for r in self._run(pg_sql.finalize(), **arrays)]

    def progress(self, mission_id: str, lease_token: str, payloads: list[dict[str, Any]]) -> bool:
        compiled = pg_sql.progress()
        params = compiled.params(
            **statements.params(mission_id=mission_id, lease_token=lease_token),
            payload_array=[Jsonb(p) for p in payloads],
        )
        with self._autocommit.connect() as conn:
            written = [rows.event(r) for r in conn.exec_driver_sql(compiled.sql, params)]
        self.store.publish(written)
        return bool(written)


class SqliteHotPath:
    def __init__(self, store: MissionStore) -> None:
        self.store = store

    def enqueue(self, values: dict[str, Any]) -> Mission | None:
        with self.store.tx() as conn:
            row = conn.execute(
                statements.enqueue(sqlite_insert, now=self.store.now()), statements.params(**values)
            ).first()
            if row is None:
                return None
            mission = rows.mission(row)
            self.store.write_events(conn, [rows.event_row(ENQUEUE, mission)])
        return mission

    def claim(self, vp_id: str, worker_id: str, limit: int) -> list[Mission]:
        stmt = statements.claim(limit, now=self.store.now(), later=self.store.later())
        with self.store.tx() as conn:
            claimed = sorted(
                (rows.mission(r) for r in conn.execute(stmt, statements.params(vp_id=vp_id, worker_id=worker_id))),
                key=lambda m: (m.priority, m.created_at, m.mission_id),
            )
            self.store.write_events(conn, [rows.event_row(CLAIM, m) for m in claimed])
        return claimed

    def heartbeat(self, leases: Sequence[tuple[str, str]]) -> dict[str, datetime | None]:
        stmt = statements.heartbeat(statements.single_row(**statements.HEARTBEAT_COLUMNS), later=self.store.later())
        out: dict[str, datetime | None] = {}
        with self.store.tx() as conn:
            for mission_id, token in leases:
                for r in conn.execute(stmt, statements.params(mission_id=mission_id, lease_token=token)):
                    out[r[0]] = rows.aware(r[1])
        return out

    def finalize(self, outcomes: Sequence[dict[str, Any]]) -> list[Mission]:
        stmt = statements.finalize(statements.single_row(**statements.FINALIZE_COLUMNS), now=self.store.now())
        done: list[Mission] = []
        with self.store.tx() as conn:
            for o in outcomes:
                done += [rows.mission(r) for r in conn.execute(stmt, statements.params(**o))]
            self.store.write_events(conn, [rows.event_row(FINALIZE, m) for m in done])
        return done

    def progress(self, mission_id: str, lease_token: str, payloads: list[dict[str, Any]]) -> bool:
        stmt = statements.progress_holder(statements.single_row(**statements.PROGRESS_COLUMNS))
        with self.store.tx() as conn:
            row = conn.execute(stmt, statements.params(mission_id=mission_id, lease_token=lease_token)).first()
            if row is None:
                return False
            event = {"mission_id": row.mission_id, "vp_id": row.vp_id, "event_type": statements.PROGRESS_EVENT.value}
            self.store.write_events(conn, [{**event, "payload": p} for p in payloads])
        return True


def hot_path(store: MissionStore) -> HotPath:
    return PostgresHotPath(store) if store.is_postgres else SqliteHotPath(store)


__all__ = ["HotPath", "MissionEvent", "hot_path"]
