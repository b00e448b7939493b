"""Persistence: the only package that writes missions, events and sessions."""

from __future__ import annotations

from ua_vp.store.store import CancelOutcome, Enqueued, MissionStore, SessionInfo, open_store

__all__ = ["CancelOutcome", "Enqueued", "MissionStore", "SessionInfo", "open_store"]
