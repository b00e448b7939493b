"""pytest plugin for profile authors (loaded automatically where ua-vp is installed).

Fixtures placeholder; filled in with the worker."""

from __future__ import annotations
