"""ua-vp: a runtime for external VP agent workers.

The public surface for profile authors is what ``__all__`` lists; import
nothing else from ``ua_vp``.
"""

from __future__ import annotations

from ua_vp.config import PluginSettings, Settings
from ua_vp.errors import (
    BudgetExceeded,
    ConfigError,
    GuardViolation,
    InvalidRequest,
    RuntimeFailed,
    UaVpError,
)
from ua_vp.hookspecs import hookimpl
from ua_vp.missions import Mission, MissionSpec, Status
from ua_vp.profiles import Executor, MissionContext, Profile, Result

__version__ = "0.2.0"

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "Executor",
    "GuardViolation",
    "InvalidRequest",
    "Mission",
    "MissionContext",
    "MissionSpec",
    "PluginSettings",
    "Profile",
    "Result",
    "RuntimeFailed",
    "Settings",
    "Status",
    "UaVpError",
    "__version__",
    "hookimpl",
]
