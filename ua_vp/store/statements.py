"""The lifecycle statements, built once from :data:`ua_vp.missions.LIFECYCLE`.

Each store operation is ONE SQLAlchemy Core statement here, and both backends run
it: SQLite inside BEGIN IMMEDIATE (writing the event rows after it), PostgreSQL
wrapped by :mod:`ua_vp.store.pg_sql` into a single data-modifying statement that
writes the events too. Statuses and event names come from the transition table as
SQL literals (never bind parameters: the partial index on queued rows is only used
by a plan that sees the queued status spelled in the text), so nothing is spelled twice.

Runtime values are named bind parameters; the clock is passed in by the store
(PostgreSQL: the database's ``now()``; SQLite: the one machine's clock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    case,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Update
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import FromClause

from ua_vp.missions import (
    ASK_CANCEL,
    CANCEL_QUEUED,
    CLAIM,
    ENQUEUE,
    FINALIZE,
    HEARTBEAT,
    PROGRESS,
    Event,
    Status,
    Transition,
)
from ua_vp.store.tables import Json, missions

M = missions.c


def lit(value: Status | Event | str) -> ColumnClause[Any]:
    """A status or event name as an SQL string literal (they are our own constants)."""
    text = str(value)
    if "'" in text or "%" in text:
        raise ValueError(f"not a plain name: {text!r}")
    return literal_column(f"'{text}'", String)


def status_in(statuses: Iterable[Status]) -> ColumnElement[bool]:
    ordered = sorted(statuses)
    if len(ordered) == 1:
        return M.status == lit(ordered[0])
    return M.status.in_([lit(s) for s in ordered])


def param(name: str, type_: Any = None) -> Any:
    """A named bind parameter; prefixed, as SQLAlchemy reserves column names in an
    INSERT or UPDATE for its own parameters. Pass values through :func:`params`."""
    return bindparam(f"p_{name}", type_=type_)


def params(**values: Any) -> dict[str, Any]:
    return {f"p_{name}": value for name, value in values.items()}


class new_token(FunctionElement[str]):
    """A fresh fencing token, generated per row inside the statement, so one batched
    claim gives every mission its own."""

    type = String()
    inherit_cache = True


@compiles(new_token, "postgresql")
def _pg_token(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "replace(gen_random_uuid()::text, '-', '')"


@compiles(new_token, "sqlite")
def _sqlite_token(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "lower(hex(randomblob(16)))"


# -- enqueue -------------------------------------------------------------------------------
ENQUEUE_COLUMNS = (
    "mission_id",
    "vp_id",
    "mission_type",
    "objective",
    "constraints",
    "budget",
    "priority",
    "max_attempts",
    "lane",
    "idempotency_key",
    "request_hash",
    "source_session_id",
    "source_turn_id",
    "reply_mode",
    "run_id",
)


def enqueue(insert: Callable[[Any], Any], *, now: ColumnElement[Any]) -> Any:
    """A new queued mission. ``insert`` is the dialect's (both have ON CONFLICT): a
    dispatch with an idempotency key seen before inserts nothing and returns no row;
    a concurrent one waits on the unique index first. The caller reads the winner."""
    (queued,) = ENQUEUE.outcomes
    values = {name: param(name, M[name].type) for name in ENQUEUE_COLUMNS}
    return (
        insert(missions)
        .values(**values, status=lit(queued), attempt=literal_column("0"), created_at=now)
        .on_conflict_do_nothing(index_elements=["vp_id", "idempotency_key"])
        .returning(*missions.c)
    )


# -- claim --------------------------------------------------------------------------------
def claim(limit: int, *, now: ColumnElement[Any], later: ColumnElement[Any]) -> Update:
    """Take up to ``limit`` queued missions of ``:vp_id`` for ``:worker_id``.

    picked: lowest priority then oldest, over the partial index on queued rows (its
    cost follows the queue, not the history). FOR UPDATE SKIP LOCKED (PostgreSQL)
    lets concurrent claimers take different rows without waiting; MATERIALIZED makes
    the locked pick run exactly once (inlined, it may run per row and claim more than
    ``limit``). LIMIT is a number in the text: as a parameter it kept PostgreSQL from
    caching a plan for the prepared statement (30-40% fewer claims, bench/RESULTS.md).
    """
    picked = (
        select(M.mission_id)
        .where(M.vp_id == param("vp_id"), status_in(CLAIM.source))
        .order_by(M.priority, M.created_at, M.mission_id)
        .limit(literal_column(str(int(limit))))
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )
    (running,) = CLAIM.outcomes
    return (
        update(missions)
        .where(M.mission_id == picked.c.mission_id, status_in(CLAIM.source))
        .values(
            status=lit(running),
            attempt=M.attempt + literal_column("1"),
            worker_id=param("worker_id", String),
            lease_token=new_token(),
            lease_expires_at=later,
            started_at=case((M.started_at.is_(None), now), else_=M.started_at),
        )
        .returning(*missions.c)
    )


# -- rows given by the caller ------------------------------------------------------------
def single_row(**columns: Any) -> FromClause:
    """One row of named bind parameters, for the statements that take their missions
    from a row source (``fenced``): SQLite runs them once per mission."""
    return select(*(param(name, type_).label(name) for name, type_ in columns.items())).subquery("f")


FINALIZE_COLUMNS = {
    "mission_id": String(),
    "lease_token": String(),
    "status": String(),
    "result": Json,
    "error": Json,
}
HEARTBEAT_COLUMNS = {"mission_id": String(), "lease_token": String()}


def fenced(rows: FromClause, transition: Transition) -> ColumnElement[bool]:
    """The lease fence, per row: this mission, still in the transition's source
    status, and still held with the caller's own token."""
    return and_(M.mission_id == rows.c.mission_id, M.lease_token == rows.c.lease_token, status_in(transition.source))


PROGRESS_COLUMNS = HEARTBEAT_COLUMNS


def _event(transition: Transition, status: Status) -> Event:
    event = transition.outcomes[status]
    assert event is not None, f"{transition.name} writes no event for {status.value}"
    return event


PROGRESS_EVENT = _event(PROGRESS, Status.RUNNING)


def progress_holder(rows: FromClause) -> Select[Any]:
    """The mission of ``rows`` while its lease holds, for its progress events. FOR SHARE:
    a reap or finalize cannot commit between this check and the events' insert, so no
    progress lands after the final event."""
    return select(M.mission_id, M.vp_id).where(fenced(rows, PROGRESS)).with_for_update(read=True)


def finalize(rows: FromClause, *, now: ColumnElement[Any]) -> Update:
    """End each mission of ``rows`` with its own status, result and error. Clearing the
    token makes any later write with it (a retried commit, a stale worker) match nothing."""
    return (
        update(missions)
        .where(fenced(rows, FINALIZE))
        .values(
            status=rows.c.status,
            result=rows.c.result,
            error=rows.c.error,
            finished_at=now,
            lease_token=null(),
            lease_expires_at=null(),
        )
        .returning(*missions.c)
    )


def heartbeat(rows: FromClause, *, later: ColumnElement[Any]) -> Update:
    """Extend each lease still held; a worker whose mission was reaped (and maybe
    re-claimed) matches no row and learns it lost the lease."""
    return (
        update(missions)
        .where(fenced(rows, HEARTBEAT))
        .values(lease_expires_at=later)
        .returning(M.mission_id, M.cancel_requested_at)
    )


def watch(mission_ids: list[str]) -> Select[Any]:
    """What a worker checks each poll for its running missions: cancel asked, lease gone."""
    return select(M.mission_id, M.lease_token, M.status, M.cancel_requested_at).where(M.mission_id.in_(mission_ids))


# -- cancel -------------------------------------------------------------------------------
def cancel(*, now: ColumnElement[Any]) -> Update:
    """Queued -> cancelled at once; running -> flagged. One statement for both: should a
    reaper move the mission from running back to queued meanwhile, PostgreSQL re-checks
    the WHERE and the CASE on the row as it is now, so the cancel is never lost."""
    (cancelled,) = CANCEL_QUEUED.outcomes
    queued = status_in(CANCEL_QUEUED.source)
    return (
        update(missions)
        .where(
            M.mission_id == param("mission_id"),
            status_in(CANCEL_QUEUED.source | ASK_CANCEL.source),
            M.cancel_requested_at.is_(None),
        )
        .values(
            status=case((queued, lit(cancelled)), else_=M.status),
            cancel_requested_at=now,
            finished_at=case((queued, now), else_=M.finished_at),
            error=case((queued, param("queued_error", Json)), else_=M.error),
        )
        .returning(*missions.c)
    )


def give_back(chosen: ColumnElement[bool], transition: Transition, *, now: ColumnElement[Any]) -> Update:
    """Take the ``chosen`` running missions away from their worker (reap, release):
    cancelled when cancel was asked (never back to the queue), failed when out of
    attempts, queued again otherwise. The error is set by the caller per outcome."""
    asked = M.cancel_requested_at.is_not(None)
    exhausted = M.attempt >= M.max_attempts
    queued, failed, cancelled = Status.QUEUED, Status.FAILED, Status.CANCELLED
    assert set(transition.outcomes) == {queued, failed, cancelled}
    return (
        update(missions)
        .where(chosen, status_in(transition.source))
        .values(
            status=case((asked, lit(cancelled)), (exhausted, lit(failed)), else_=lit(queued)),
            worker_id=null(),
            lease_token=null(),
            lease_expires_at=null(),
            finished_at=case((asked | exhausted, now), else_=null()),
        )
        .returning(*missions.c)
    )
