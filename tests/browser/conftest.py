"""The dashboard in a real browser: Debian's chromium driven by Selenium through
Debian's chromedriver (installed by ``.ci/run`` with apt; nothing is downloaded),
against a real ``ua-vp serve`` and a real ``ua-vp worker`` running the ``command``
runtime with ``tests/worker/mission_agent.py`` as its agent.

Screenshots go to ``test-artifacts/screenshots/`` (or ``UA_VP_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.conftest import Served, start_server
from tests.conftest import required
from tests.worker.conftest import Workers
from ua_vp.store import open_store

CHROMIUM = os.environ.get("UA_VP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("UA_VP_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("UA_VP_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
VP = "vp.general.primary"
WAIT = 20.0


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        reason = f"no browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        required(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session, with a fresh profile and no network of its own."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ua-vp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI: chromium's own sandbox refuses to run
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    # Console messages and every network request the page makes, for the assertions.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Dashboard:
    """A served dashboard with its worker, and the browser pointed at it."""

    served: Served
    workers: Workers
    driver: Any
    token: str | None = None

    @property
    def url(self) -> str:
        return self.served.url

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def dispatch(self, objective: str, **body: Any) -> str:
        with self.http() as http:
            r = http.post("/api/v1/ops/vp/missions/dispatch", json={"vp_id": VP, "objective": objective, **body})
        assert r.status_code == 201, r.text
        return str(r.json()["mission"]["mission_id"])

    def mission(self, mission_id: str) -> dict[str, Any]:
        with self.http() as http:
            return dict(http.get(f"/api/v1/ops/vp/missions/{mission_id}").json()["mission"])

    def logs(self) -> str:
        return self.served.log.read_text(errors="replace") + "\n" + self.workers.logs()


def start_dashboard(
    tmp: Path, driver: Any, *, token: str | None = None, with_worker: bool = True
) -> tuple[Dashboard, Callable[[], None]]:
    db = f"sqlite:///{tmp / 'ua_vp.db'}"
    open_store(db, auto_upgrade=True).engine.dispose()
    workers = Workers(db, tmp)
    env = {k: v for k, v in workers.env().items() if k.startswith("UA_VP_") and k not in ("UA_VP_LOG_FORMAT",)}
    env.update({"UA_VP_EXTERNAL_DISPATCH_ENABLED": "1", "UA_VP_LOG_FORMAT": "json"})
    if token:
        env["UA_VP_OPS_TOKEN"] = token
    served = start_server(env, tmp)
    if with_worker:
        workers.start()
    dash = Dashboard(served=served, workers=workers, driver=driver, token=token)

    def stop() -> None:
        workers.stop_all()
        code = served.stop()
        assert code == 0, f"ua-vp serve exited {code}:\n{served.log.read_text()}"

    return dash, stop


@pytest.fixture(scope="module")
def dashboard(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A token-less server (loopback) with one worker; shared by a module's tests."""
    dash, stop = start_dashboard(tmp_path_factory.mktemp("dashboard"), browser)
    yield dash
    stop()


@pytest.fixture(autouse=True)
def _fresh_tab(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts on a blank page of its own size, with empty logs and storage."""
    if "browser" not in request.fixturenames:
        yield
        return
    driver = request.getfixturevalue("browser")
    driver.set_window_size(1280, 900)
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get_log("performance")
    yield
    driver.get("about:blank")


# ---------------------------------------------------------------------------
# What the browser saw
# ---------------------------------------------------------------------------


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the last call (from the DevTools network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def foreign(urls: list[str], origin: str) -> list[str]:
    ours = urlsplit(origin)
    return [
        u
        for u in urls
        if urlsplit(u).scheme in ("http", "https", "ws", "wss")
        and (urlsplit(u).hostname, urlsplit(u).port) != (ours.hostname, ours.port)
    ]


def screenshot(driver: Any, name: str) -> Path:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # The whole page, not just the window: resize to the document's height first.
    width = driver.execute_script("return window.innerWidth")
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
    size = driver.get_window_size()
    driver.set_window_size(size["width"], min(int(height) + (size["height"] - _inner_height(driver)), 4000))
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    assert width > 0
    return path


def _inner_height(driver: Any) -> int:
    return int(driver.execute_script("return window.innerHeight"))


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT, logs: str = "") -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}") from None
