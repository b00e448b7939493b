"""The ops API: a Litestar app (:func:`create_app`) served by ``ua-vp serve``."""

from __future__ import annotations

from ua_vp.api.app import create_app

__all__ = ["create_app"]
