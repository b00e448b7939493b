"""Every HTML page the server sends is parsed: no asset may come from anywhere but
the server itself, and every asset it names is served (so the pages, the API docs
included, work on a machine with no internet)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from litestar.testing import TestClient

from ua_vp.api import create_app
from ua_vp.config import load_settings
from ua_vp.missions import MissionSpec
from ua_vp.store import open_store

ORIGIN = "http://testserver.local"
PAGES = ["/", "/dispatch", "/workers", "/stats", "/schema", "/schema/swagger"]
URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "manifest", "icon"}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""")


class Links(HTMLParser):
    """Every URL an HTML page names: in URL attributes, in style attributes and in <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (where, url)
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, raw in attrs:
            if raw is None:
                continue
            if name in URL_ATTRIBUTES:
                for part in raw.split(",") if name == "srcset" else [raw]:
                    self.urls.append((f"<{tag} {name}>", part.strip().split(" ")[0]))
            elif name == "style":
                self.urls += [(f"<{tag} style>", a or b) for a, b in CSS_URL.findall(raw)]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += [("<style>", a or b) for a, b in CSS_URL.findall(data)]


def outside(url: str) -> bool:
    """An http(s) (or protocol-relative) URL that is not this server's own."""
    absolute = urljoin(ORIGIN + "/", url)
    parts = urlsplit(absolute)
    return parts.scheme in ("http", "https") and parts.netloc != urlsplit(ORIGIN).netloc


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient[Any]]:
    settings = load_settings(state_dir=tmp_path / "state", database_url=sqlite_url, external_dispatch_enabled=True)
    store = open_store(sqlite_url)
    with TestClient(create_app(settings, store=store), base_url=ORIGIN) as c:
        c.mission_id = store.enqueue(  # type: ignore[attr-defined]
            MissionSpec.create(vp_id="vp.general.primary", objective="x")
        ).mission.mission_id
        yield c
    store.engine.dispose()


def test_no_page_names_an_asset_from_elsewhere_and_every_asset_is_served(client: TestClient[Any]) -> None:
    pages = [*PAGES, f"/missions/{client.mission_id}"]  # type: ignore[attr-defined]
    checked_assets: set[str] = set()
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, f"{page}: {r.status_code} {r.text[:200]}"
        assert r.headers["content-type"].startswith("text/html"), page
        parser = Links()
        parser.feed(r.text)
        assert parser.urls, f"{page} names no asset at all?"
        foreign = [(where, url) for where, url in parser.urls if outside(url)]
        assert not foreign, f"{page} loads from elsewhere: {foreign}"
        for where, url in parser.urls:
            if where.startswith("<a ") or url.startswith(("#", "data:", "mailto:")):
                continue
            path = urlsplit(urljoin(ORIGIN + page, url)).path
            if path in checked_assets:
                continue
            checked_assets.add(path)
            asset = client.get(path)
            assert asset.status_code == 200, f"{page} names {url} ({where}), which answers {asset.status_code}"
            if path.endswith(".css"):
                foreign_css = [u for a, b in CSS_URL.findall(asset.text) if outside(u := a or b)]
                assert not foreign_css, f"{path} loads from elsewhere: {foreign_css}"
    # The docs' scripts and styles are among what was fetched, from the packaged bundle.
    assert {"/assets/swagger/swagger-ui-bundle.js", "/assets/swagger/swagger-ui.css"} <= checked_assets
    assert {"/assets/app.js", "/assets/app.css"} <= checked_assets


def test_dashboard_pages_forbid_other_origins_and_hold_no_data(client: TestClient[Any]) -> None:
    r = client.get("/")
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    # The shell is the same for everyone: the data comes from the token-guarded API.
    assert client.mission_id not in r.text  # type: ignore[attr-defined]


def test_the_checker_sees_a_cdn(client: TestClient[Any]) -> None:
    """The parser would catch what the old /schema page did (CSS and JS from a CDN)."""
    parser = Links()
    parser.feed(
        "<head><link href='https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css' rel='stylesheet'>"
        "<script src='//unpkg.com/x.js'></script><div style=\"background:url('http://evil.example/a.png')\">"
        "<style>@import 'https://fonts.example/f.css';</style><img src='/assets/favicon.svg'></head>"
    )
    assert [url for _, url in parser.urls if outside(url)] == [
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css",
        "//unpkg.com/x.js",
        "http://evil.example/a.png",
        "https://fonts.example/f.css",
    ]


def test_a_hostile_mission_id_in_the_page_url_is_escaped(client: TestClient[Any]) -> None:
    r = client.get('/missions/"><img src=x onerror=alert(1)>')
    assert r.status_code == 200
    assert "<img src=x" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text
