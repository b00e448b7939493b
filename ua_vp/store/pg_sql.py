"""The PostgreSQL hot path: claim, heartbeat and finalize as ONE statement each.

Each runs in autocommit, so a claim or a finalize costs one network round trip
instead of four (BEGIN, UPDATE, INSERT event, COMMIT). A statement is atomic on
its own: the data-modifying CTEs below update the mission and write its event in
the same implicit transaction, so the history still never disagrees with the row.

The SQLite path (``MissionStore`` with SQLAlchemy Core) does the same work in a
BEGIN IMMEDIATE transaction; one suite of tests runs against both.
"""

from __future__ import annotations

NOTIFY_CHANNEL = "ua_vp_missions"
"""Payloads are ``queued:<vp_id>:<mission_id>`` and ``cancel:<vp_id>:<mission_id>``."""

# Rows come back as the mission's columns plus the event written with it, prefixed
# ``ev_``, so the caller can publish the event without reading it back.
_EVENT_COLUMNS = (
    "ev.id AS ev_id, ev.event_type AS ev_event_type, ev.payload AS ev_payload, ev.created_at AS ev_created_at"
)

ENQUEUE = f"""
-- ON CONFLICT DO NOTHING: a concurrent dispatch with the same idempotency key waits
-- on the unique index, then returns no row; the caller reads the winner's mission.
WITH m AS (
    INSERT INTO vp_missions (
        mission_id, vp_id, mission_type, objective, constraints, budget, status, priority, attempt,
        max_attempts, lane, idempotency_key, request_hash, source_session_id, source_turn_id,
        reply_mode, run_id, created_at)
    VALUES (
        %(mission_id)s, %(vp_id)s, %(mission_type)s, %(objective)s, %(constraints)s, %(budget)s, 'queued',
        %(priority)s, 0, %(max_attempts)s, %(lane)s, %(idempotency_key)s, %(request_hash)s,
        %(source_session_id)s, %(source_turn_id)s, %(reply_mode)s, %(run_id)s, now())
    ON CONFLICT (vp_id, idempotency_key) DO NOTHING
    RETURNING *
),
ev AS (
    INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
    SELECT mission_id, vp_id, 'vp.mission.dispatched', jsonb_build_object('lane', lane, 'priority', priority), now()
    FROM m
    RETURNING *
),
-- Delivered at commit, so a woken worker always finds the row. A CTE runs only
-- when referenced, hence the count below.
woken AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', 'queued:' || vp_id || ':' || mission_id) FROM m
)
SELECT m.*, {_EVENT_COLUMNS}, (SELECT count(*) FROM woken) AS notified
FROM m JOIN ev USING (mission_id)
"""


def claim(limit: int) -> str:
    """The claim with its LIMIT written into the text, one text per batch size.

    As a bound parameter, LIMIT keeps PostgreSQL from caching a generic plan for the
    prepared statement (it would guess 10% of the queue and scan it), so it planned
    every claim anew: measured 30-40% fewer claims per second (bench/RESULTS.md).
    ``limit`` is an int checked by the caller, never text from outside.
    """
    return CLAIM.replace("%(limit)s", str(int(limit)))


CLAIM = f"""
-- picked: the queued missions of one vp_id, lowest priority then oldest first.
--   It walks ix_vp_missions_queue (partial: status = 'queued'), so its cost follows
--   the queue's length, not the table's history. FOR UPDATE SKIP LOCKED lets
--   concurrent claimers take different rows without waiting on one another.
--   MATERIALIZED makes the locked pick run exactly once; inlined into the UPDATE,
--   PostgreSQL may re-run it per row and claim more than LIMIT missions.
WITH picked AS MATERIALIZED (
    SELECT mission_id FROM vp_missions
    WHERE vp_id = %(vp_id)s AND status = 'queued'
    ORDER BY priority, created_at, mission_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
-- claimed: each row gets its own fencing token, generated per row in the database;
--   lease times use the database clock, shared by every host.
claimed AS (
    UPDATE vp_missions m
    SET status = 'running',
        attempt = m.attempt + 1,
        worker_id = %(worker_id)s,
        lease_token = replace(gen_random_uuid()::text, '-', ''),
        lease_expires_at = now() + make_interval(secs => %(ttl)s),
        started_at = coalesce(m.started_at, now())
    FROM picked
    WHERE m.mission_id = picked.mission_id AND m.status = 'queued'
    RETURNING m.*
),
ev AS (
    INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
    SELECT mission_id, vp_id, 'vp.mission.started',
           jsonb_build_object('worker_id', worker_id, 'attempt', attempt), now()
    FROM claimed
    RETURNING *
)
SELECT claimed.*, {_EVENT_COLUMNS}
FROM claimed JOIN ev USING (mission_id)
ORDER BY claimed.priority, claimed.created_at, claimed.mission_id
"""

HEARTBEAT = """
-- Fenced by the lease token: a worker whose mission was reaped (and maybe
-- re-claimed) matches no row and learns it lost the lease.
UPDATE vp_missions
SET lease_expires_at = now() + make_interval(secs => %(ttl)s)
WHERE mission_id = %(mission_id)s AND lease_token = %(lease_token)s AND status = 'running'
RETURNING cancel_requested_at
"""

FINALIZE = f"""
-- Fenced like the heartbeat; clearing the token makes any later write with it
-- (a retried commit, a stale worker) match nothing.
WITH done AS (
    UPDATE vp_missions
    SET status = %(status)s, result = %(result)s, error = %(error)s, finished_at = now(),
        lease_token = NULL, lease_expires_at = NULL
    WHERE mission_id = %(mission_id)s AND lease_token = %(lease_token)s AND status = 'running'
    RETURNING *
),
ev AS (
    INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
    SELECT mission_id, vp_id, %(event_type)s,
           jsonb_strip_nulls(jsonb_build_object('attempt', attempt, 'worker_id', worker_id, 'error', error)),
           now()
    FROM done
    RETURNING *
)
SELECT done.*, {_EVENT_COLUMNS}
FROM done JOIN ev USING (mission_id)
"""
