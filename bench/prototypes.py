"""A prototype of the next store change, to size it before anyone makes it.

SQL here lives only in the benchmark; ``ua_vp/store`` is untouched. Both variants are the
store's hot path shape (one autocommit statement per claim and per finalize, the event
written by a data-modifying CTE), run through a SQLAlchemy engine and the store's row
mapping, and differ in one thing:

- ``proto-cte``: ``LIMIT`` is a bound parameter, as in the store. PostgreSQL cannot
  reuse a generic plan for it (with an unknown LIMIT it would estimate 10% of the queue
  and hash-join the whole table), so it plans the claim again on every execution.
- ``proto-cte-literal``: ``LIMIT`` is written into the statement (one statement text per
  batch size), so the prepared statement's generic plan is cached and reused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from common import NOOP_VP, Figure, Options, scratch_database, until
from ua_store import RESULT, claim_figures, migrate, open_one

CLAIM = f"""
WITH picked AS MATERIALIZED (
    SELECT mission_id FROM vp_missions
    WHERE vp_id = '{NOOP_VP}' AND status = 'queued'
    ORDER BY priority, created_at, mission_id
    LIMIT {{limit}} FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE vp_missions m SET status = 'running', attempt = m.attempt + 1, worker_id = :worker_id,
        lease_token = replace(gen_random_uuid()::text, '-', ''),
        lease_expires_at = now() + interval '120 seconds', started_at = coalesce(m.started_at, now())
    FROM picked WHERE m.mission_id = picked.mission_id AND m.status = 'queued'
    RETURNING m.*
), ev AS (
    INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
    SELECT mission_id, vp_id, 'vp.mission.started', jsonb_build_object('worker_id', worker_id, 'attempt', attempt),
        now()
    FROM claimed
)
SELECT * FROM claimed ORDER BY priority, created_at, mission_id
"""
FINALIZE = text(
    """
WITH done AS (
    UPDATE vp_missions SET status = 'completed', result = CAST(:result AS jsonb), error = NULL,
        finished_at = now(), lease_token = NULL, lease_expires_at = NULL
    WHERE mission_id = :mission_id AND lease_token = :token AND status = 'running'
    RETURNING *
), ev AS (
    INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
    SELECT mission_id, vp_id, 'vp.mission.completed', jsonb_build_object('attempt', attempt, 'worker_id', worker_id),
        now()
    FROM done
)
SELECT * FROM done
"""
)


def cte_claimer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    from ua_vp.store.store import _mission

    store = open_one(args["url"])
    result = json.dumps(RESULT)
    params: dict[str, Any] = {"worker_id": f"bench-{index}"}
    if args["literal"]:
        claim = text(CLAIM.format(limit=int(args["batch"])))
    else:
        claim, params["n"] = text(CLAIM.format(limit=":n")), args["batch"]
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        ready()
        more, count, t0 = until(args["seconds"]), 0, time.monotonic()
        while more():
            claimed = [_mission(r) for r in conn.execute(claim, params)]
            if not claimed:
                break
            for m in claimed:
                conn.execute(FINALIZE, {"mission_id": m.mission_id, "token": m.lease_token, "result": result})
            count += len(claimed)
    return {"count": count, "t0": t0, "t1": time.monotonic()}


def scenario_prototypes(opts: Options) -> list[Figure]:
    with scratch_database(opts, "proto") as url:
        migrate(url)
        return [
            *claim_figures(
                opts, url, "proto-cte", cte_claimer, "PROTOTYPE: store-shaped CTEs, LIMIT bound", literal=False
            ),
            *claim_figures(
                opts,
                url,
                "proto-cte-literal",
                cte_claimer,
                "PROTOTYPE: the same with LIMIT written into the statement (generic plan cached)",
                literal=True,
            ),
        ]
