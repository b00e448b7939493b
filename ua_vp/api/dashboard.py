"""The dashboard at ``/`` and the offline API docs at ``/schema``.

Every page is one small HTML shell (``ua_vp/web/shell.html``) naming the page;
``app.js`` fills it from the JSON API with the caller's token (kept in
sessionStorage), so the shells hold no data and need no auth, and the data
routes keep the one auth rule of the API. Every asset is in the wheel: the
dashboard's own under ``/assets``, Swagger UI's from the ``swagger_ui_bundle``
distribution under ``/assets/swagger``. A Content-Security-Policy of ``'self'``
makes the browser refuse anything from elsewhere, should a page ever name it.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from litestar import Controller, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from ua_vp import __version__
from ua_vp.api.missions import MissionId

WEB = Path(__file__).resolve().parent.parent / "web"
ASSETS = "/assets"
SWAGGER_ASSETS = f"{ASSETS}/swagger"

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _shell() -> str:
    return (WEB / "shell.html").read_text(encoding="utf-8")


def render(page: str, title: str, mission_id: str = "") -> Response[str]:
    """The shell for one page: which page, its title, the mission it shows."""
    text = (
        _shell()
        .replace("{{page}}", page)
        .replace("{{title}}", html.escape(title))
        .replace("{{mission_id}}", html.escape(mission_id, quote=True))
        .replace("{{version}}", html.escape(__version__))
    )
    return Response(text, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


class DashboardPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def missions(self) -> Response[str]:
        return render("missions", "Missions")

    @get("/missions/{mission_id:str}", sync_to_thread=False)
    def mission(self, mission_id: MissionId) -> Response[str]:
        return render("mission", f"Mission {mission_id[:64]}", mission_id[:64])

    @get("/dispatch", sync_to_thread=False)
    def dispatch(self) -> Response[str]:
        return render("dispatch", "Dispatch")

    @get("/workers", sync_to_thread=False)
    def workers(self) -> Response[str]:
        return render("workers", "Workers")

    @get("/stats", sync_to_thread=False)
    def stats(self) -> Response[str]:
        return render("stats", "Metrics")


def asset_routers() -> list[Router]:
    long_lived = CacheControlHeader(max_age=3600)
    return [
        create_static_files_router(
            path=ASSETS, directories=[WEB], name="assets", cache_control=long_lived, include_in_schema=False
        ),
        create_static_files_router(
            path=SWAGGER_ASSETS,
            directories=[Path(str(swagger_ui_path))],
            name="swagger-assets",
            cache_control=long_lived,
            include_in_schema=False,
        ),
    ]


def swagger_plugin() -> SwaggerRenderPlugin:
    """Swagger UI from the packaged bundle: the docs render on a machine with no internet."""
    return SwaggerRenderPlugin(
        js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/svg+xml' href='{ASSETS}/favicon.svg'>",
    )
