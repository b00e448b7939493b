"""The PostgreSQL hot path: each lifecycle statement of :mod:`statements` as ONE
statement that also writes its events, compiled to text once.

Each runs in autocommit, so a claim or a finalize costs one network round trip
instead of four (BEGIN, UPDATE, INSERT event, COMMIT). A statement is atomic on
its own: the data-modifying CTEs update the missions and write their events in
the same implicit transaction, so the history never disagrees with the rows.
Batches (finalize, heartbeat) take their missions from ``unnest`` of arrays, so
one statement ends or extends many missions, each fenced by its own lease token.

The event payload is ``jsonb_build_object`` of the transition's payload keys: no
``jsonb_strip_nulls``, which dropped nulls nested in an error's details where
SQLite kept them (the parity suite compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Select, Text, bindparam, case, cast, func, literal_column, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import Insert, Update
from sqlalchemy.sql.selectable import FromClause

from ua_vp.missions import CLAIM, ENQUEUE, FINALIZE, Transition
from ua_vp.store import statements
from ua_vp.store.statements import lit
from ua_vp.store.tables import events

NOTIFY_CHANNEL = "ua_vp_missions"
"""Payloads are ``queued:<vp_id>:<mission_id>`` and ``cancel:<vp_id>:<mission_id>``."""
NOTIFY_QUEUED = "queued"
NOTIFY_CANCEL = "cancel"

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[attr-defined]
NOW = func.now()


@dataclass(frozen=True)
class Compiled:
    sql: str
    defaults: dict[str, Any]
    """Values of the literal parameters SQLAlchemy made (``attempt + 1``, the TTL)."""

    def params(self, **values: Any) -> dict[str, Any]:
        return {**self.defaults, **values}


def compile_pg(stmt: Any) -> Compiled:
    compiled = stmt.compile(dialect=_DIALECT)
    return Compiled(str(compiled), dict(compiled.params))


def with_events(
    stmt: Update | Insert, transition: Transition, *, order_by: tuple[str, ...] = (), notify: str | None = None
) -> Select[Any]:
    """``stmt`` (RETURNING the mission rows) plus the transition's event for each row.
    Rows come back as the mission's columns plus the event, prefixed ``ev_``, so the
    caller can publish the event without reading it back. ``notify``: also NOTIFY
    each row's vp_id with this kind (delivered at commit, so a woken worker always
    finds the row)."""
    done = stmt.cte("done")
    pairs: list[Any] = []
    for key in transition.payload:
        pairs += [lit(key), done.c[key]]
    named = {s: e for s, e in transition.outcomes.items() if e is not None}
    if len(named) == 1:
        (event,) = named.values()
        event_type: Any = lit(event)
    else:
        event_type = case(*((done.c.status == lit(s), lit(e)) for s, e in named.items()))
    ev = (
        events.insert()
        .from_select(
            ["mission_id", "vp_id", "event_type", "payload", "created_at"],
            select(done.c.mission_id, done.c.vp_id, event_type, func.jsonb_build_object(*pairs), NOW),
        )
        .returning(events.c.id, events.c.mission_id, events.c.event_type, events.c.payload, events.c.created_at)
        .cte("ev")
    )
    query = select(
        done,
        ev.c.id.label("ev_id"),
        ev.c.event_type.label("ev_event_type"),
        ev.c.payload.label("ev_payload"),
        ev.c.created_at.label("ev_created_at"),
    ).join_from(done, ev, done.c.mission_id == ev.c.mission_id)
    if notify is not None:
        # A CTE runs only when referenced, hence the count.
        woken = select(func.pg_notify(lit(NOTIFY_CHANNEL), notify_payload(notify, done))).cte("woken")
        query = query.add_columns(select(func.count()).select_from(woken).scalar_subquery().label("notified"))
    return query.order_by(*(done.c[name] for name in order_by))


def unnest_rows(columns: dict[str, Any]) -> FromClause:
    """The caller's rows as arrays, one parameter per column named ``<column>_array``."""
    arrays = [
        cast(bindparam(f"{name}_array"), ARRAY(JSONB if name in ("result", "error") else Text)) for name in columns
    ]
    return func.unnest(*arrays).table_valued(*columns).render_derived(name="f")


@cache
def enqueue() -> Compiled:
    return compile_pg(with_events(statements.enqueue(pg_insert, now=NOW), ENQUEUE, notify=NOTIFY_QUEUED))


def notify_payload(kind: str, rows: Any) -> Any:
    return lit(kind) + literal_column("':'") + rows.c.vp_id + literal_column("':'") + rows.c.mission_id


@cache
def claim(limit: int, ttl_seconds: float) -> Compiled:
    """One text per batch size (LIMIT is in the text so the plan can be cached)."""
    stmt = statements.claim(limit, now=NOW, later=later(ttl_seconds))
    return compile_pg(with_events(stmt, CLAIM, order_by=("priority", "created_at", "mission_id")))


@cache
def finalize() -> Compiled:
    rows = unnest_rows(statements.FINALIZE_COLUMNS)
    return compile_pg(with_events(statements.finalize(rows, now=NOW), FINALIZE))


@cache
def progress() -> Compiled:
    """Progress events (``payload_array``, in order) for one mission while its lease holds;
    none, and no row back, when it does not. Check and insert are one statement, so the
    FOR SHARE lock holds from one to the other."""
    held = statements.progress_holder(statements.single_row(**statements.PROGRESS_COLUMNS)).cte("held")
    payloads = (
        func.unnest(cast(bindparam("payload_array"), ARRAY(JSONB)))
        .table_valued("payload", with_ordinality="n")
        .render_derived(name="pp")
    )
    rows = (
        select(held.c.mission_id, held.c.vp_id, lit(statements.PROGRESS_EVENT), payloads.c.payload, NOW)
        .select_from(held.join(payloads, true()))
        .order_by(payloads.c.n)
    )
    insert = events.insert().from_select(["mission_id", "vp_id", "event_type", "payload", "created_at"], rows)
    return compile_pg(insert.returning(*events.c))


@cache
def heartbeat(ttl_seconds: float) -> Compiled:
    rows = unnest_rows(statements.HEARTBEAT_COLUMNS)
    return compile_pg(statements.heartbeat(rows, later=later(ttl_seconds)))


def later(ttl_seconds: float) -> Any:
    return NOW + literal_column(f"interval '{float(ttl_seconds)!r} seconds'")
