"""One error hierarchy. Every error has a stable ``code`` that the API and the CLI
translate in one place each; messages say what to do about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UaVpError(Exception):
    """Base of every error ua-vp raises on purpose."""

    code = "ua_vp_error"
    http_status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(UaVpError):
    """A setting is missing or invalid; raised at start-up, naming the variable."""

    code = "config_invalid"
    http_status = 500


class InvalidRequest(UaVpError):
    """The caller sent something malformed (bad status name, empty objective...)."""

    code = "invalid_request"
    http_status = 400


class InvalidConstraint(InvalidRequest):
    """A constraint the host enforces has a value it does not understand (``constraints.network``)."""

    code = "invalid_constraint"


class MissionNotFound(UaVpError):
    code = "mission_not_found"
    http_status = 404


class IdempotencyConflict(UaVpError):
    """The idempotency key was used before with a different request."""

    code = "idempotency_conflict"
    http_status = 409


class UnknownProfile(UaVpError):
    """No installed plugin provides this vp_id."""

    code = "unknown_vp_id"
    http_status = 422


class ProfileDisabled(UaVpError):
    """The vp_id is installed but not in ``UA_VP_ENABLED_IDS``."""

    code = "vp_id_disabled"
    http_status = 422


class ProfileBroken(UaVpError):
    """The plugin providing this vp_id raised in one of its hooks and was left out
    (``ua-vp plugins`` shows the error); the other profiles keep working."""

    code = "vp_id_unavailable"
    http_status = 503


class GuardViolation(UaVpError):
    """A mission path breaks a path-guard rule; ``details`` names the path and rule."""

    code = "guard_violation"
    http_status = 403
    resolved: Path | None = None
    """Where the path led on the server: for the server's log, never sent to the caller."""


class TooManyPaths(InvalidRequest):
    """A mission's constraints name more paths than the guard checks for one mission."""

    code = "too_many_paths"
    http_status = 422


class PluginError(UaVpError):
    """Plugins disagree (two claim one vp_id) or an enabled id is not installed."""

    code = "plugin_error"
    http_status = 500


class DatabaseNotMigrated(UaVpError):
    code = "database_not_migrated"
    http_status = 503


class DatabaseUnavailable(UaVpError):
    """The database cannot be reached right now (a request may simply be retried)."""

    code = "database_unavailable"
    http_status = 503


class BudgetExceeded(UaVpError):
    code = "budget_exceeded"
    http_status = 422


class LimitExceeded(UaVpError):
    """A mission's processes ran into a per-mission limit (memory, processes, file size, CPU
    time); ``details`` name the limit and the setting that raises it."""

    code = "limit_exceeded"
    http_status = 422


class RuntimeFailed(UaVpError):
    """A client runtime could not run the mission (exit code, bad output...)."""

    code = "runtime_failed"
    http_status = 500


class PermissionDenied(UaVpError):
    """The agent asked to do something (edit a file, run a command) and its own permission
    rules refused it, so the mission's work is at best partly done."""

    code = "permission_denied"
    http_status = 500
