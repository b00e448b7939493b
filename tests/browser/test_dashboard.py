"""What a person does with the dashboard, in chromium, against a real server and worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import (
    VP,
    Dashboard,
    console_errors,
    foreign,
    requested_urls,
    screenshot,
    start_dashboard,
    wait_for,
)
from tests.worker.conftest import pid_alive, wait_until

PAGES = {
    "missions": "/",
    "dispatch": "/dispatch",
    "workers": "/workers",
    "metrics": "/stats",
    "api-docs": "/schema",
}


def text_of(driver: Any, css: str) -> str:
    """The text shown by the first match ("" if none), read in one step: the list
    re-renders its rows every poll, so a found element may be gone a moment later."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : ''"
    return str(driver.execute_script(script, css))


def row_status(driver: Any, mission_id: str) -> str:
    return text_of(driver, f'tr[data-mission-id="{mission_id}"] .pill')


def open_row(driver: Any, mission_id: str) -> None:
    """Click the mission's link in the list, retrying if a poll replaced the row meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    def click(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, f'tr[data-mission-id="{mission_id}"] a').click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, click, "a click on the row")


def test_every_page_loads_with_no_console_error_and_no_foreign_request(dashboard: Dashboard) -> None:
    driver = dashboard.driver
    finished = dashboard.dispatch("say:hello say:done")
    wait_until(lambda: dashboard.mission(finished)["status"] == "completed", timeout=30, what="a first mission")
    pages = {**PAGES, "mission": f"/missions/{finished}"}
    for name, path in pages.items():
        dashboard.open(path)
        if name == "api-docs":
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), "Swagger UI to render")
        else:
            wait_for(driver, lambda d: "ok" in d.find_element(By.ID, "live").get_attribute("class"), f"{name} data")
        if name == "metrics":
            wait_for(driver, lambda d: d.find_elements(By.ID, "timeline-chart"), "the chart")
        if name == "mission":
            wait_for(driver, lambda d: d.find_elements(By.ID, "mission-result"), "the result")
        screenshot(driver, f"{name}-1280")
        errors = console_errors(driver)
        assert not errors, f"{path}: console errors {errors}"
        urls = requested_urls(driver)
        assert any(u.startswith(dashboard.url) for u in urls), f"{path}: no request seen at all?"
        assert not foreign(urls, dashboard.url), f"{path} asked another origin for {foreign(urls, dashboard.url)}"


def test_a_mission_dispatched_from_the_form_appears_in_the_list_without_a_reload_and_streams_its_events(
    dashboard: Dashboard,
) -> None:
    driver = dashboard.driver
    dashboard.open("/")
    wait_for(driver, lambda d: "ok" in d.find_element(By.ID, "live").get_attribute("class"), "the list")
    driver.execute_script("window.__not_reloaded = true")
    listing = driver.current_window_handle

    driver.switch_to.new_window("tab")
    dashboard.open("/dispatch")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#vp_id option[value="{VP}"]'), "the profiles")
    Select(driver.find_element(By.ID, "vp_id")).select_by_value(VP)
    driver.find_element(By.ID, "objective").send_keys("say:starting sleep:1.5 say:halfway sleep:1.5 say:done")
    driver.find_element(By.ID, "dispatch-submit").click()
    link = wait_for(driver, lambda d: d.find_elements(By.ID, "dispatched-link"), "the dispatch answer")[0]
    mission_id = link.text
    assert mission_id.startswith("vpm_")
    screenshot(driver, "dispatch-done-1280")
    driver.close()

    driver.switch_to.window(listing)
    wait_for(driver, lambda d: row_status(d, mission_id), "the new mission in the list", logs=dashboard.logs())
    assert driver.execute_script("return window.__not_reloaded") is True, "the list page reloaded"

    open_row(driver, mission_id)
    wait_for(driver, lambda d: d.find_elements(By.ID, "events"), "the mission page")
    # Events arrive while the mission runs, not only at the end.
    wait_for(
        driver,
        lambda d: "progress" in text_of(d, "#events") and text_of(d, "#mission-status") == "running",
        "progress events while running",
        logs=dashboard.logs(),
    )
    screenshot(driver, "mission-running-1280")
    wait_for(driver, lambda d: text_of(d, "#mission-status") == "completed", "the final status", logs=dashboard.logs())
    events = text_of(driver, "#events")
    for kind in ("dispatched", "started", "progress", "completed"):
        assert kind in events
    assert "done" in events  # the agent's last line, as a progress payload
    assert dashboard.mission(mission_id)["status"] == "completed"
    screenshot(driver, "mission-completed-1280")
    assert not console_errors(driver)


def test_cancel_from_the_mission_page_kills_the_running_agent(dashboard: Dashboard, tmp_path: Path) -> None:
    driver = dashboard.driver
    pidfile = tmp_path / "agent.pid"
    mission_id = dashboard.dispatch(f"pid:{pidfile} sleep:300")
    wait_until(pidfile.exists, timeout=30, what="the agent to start", logs=dashboard.logs)
    pid = int(pidfile.read_text())
    assert pid_alive(pid)

    dashboard.open(f"/missions/{mission_id}")
    wait_for(driver, lambda d: text_of(d, "#mission-status") == "running", "running status")
    driver.find_element(By.ID, "cancel").click()
    # The first click only asks; nothing is sent until the confirm.
    confirm = wait_for(driver, lambda d: d.find_elements(By.ID, "cancel-confirm"), "the confirm step")[0]
    screenshot(driver, "mission-cancel-confirm-1280")
    assert dashboard.mission(mission_id)["cancel_requested_at"] is None
    confirm.click()
    # SQLite has no NOTIFY: the worker hears of it at its next heartbeat (lease/3 = 5 s).
    wait_for(driver, lambda d: text_of(d, "#mission-status") == "cancelled", "cancelled", 30, dashboard.logs())
    wait_until(lambda: not pid_alive(pid), timeout=5, what="the agent process to be killed")
    assert "cancelled" in text_of(driver, "#mission-error")
    screenshot(driver, "mission-cancelled-1280")


def test_bad_constraints_show_the_apis_message_next_to_the_field(dashboard: Dashboard) -> None:
    driver = dashboard.driver
    with dashboard.http() as http:
        api = http.post(
            "/api/v1/ops/vp/missions/dispatch", json={"vp_id": VP, "objective": "x", "constraints": [1, 2]}
        ).json()["error"]
    dashboard.open("/dispatch")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#vp_id option[value="{VP}"]'), "the profiles")
    driver.find_element(By.ID, "objective").send_keys("x")
    constraints = driver.find_element(By.ID, "constraints")
    constraints.clear()
    constraints.send_keys("[1, 2]")
    driver.find_element(By.ID, "dispatch-submit").click()
    shown = wait_for(driver, lambda d: text_of(d, "#err-constraints"), "the error under constraints")
    assert shown == f"{api['message']}{api['code']}"  # the message, then its code in a tag
    assert text_of(driver, "#err-constraints .code-tag") == api["code"] == "invalid_request"
    assert "invalid" in constraints.get_attribute("class")
    assert text_of(driver, "#err-objective") == "" and text_of(driver, "#dispatch-banner") == ""
    screenshot(driver, "dispatch-bad-constraints-1280")

    # Text that is not JSON at all never reaches the API; the field says why.
    constraints.clear()
    constraints.send_keys("{nope")
    driver.find_element(By.ID, "dispatch-submit").click()
    wait_for(driver, lambda d: text_of(d, "#err-constraints").startswith("not JSON"), "the JSON error")


def test_the_page_at_390_px_is_usable(dashboard: Dashboard) -> None:
    driver = dashboard.driver
    mission_id = dashboard.dispatch("say:narrow")
    driver.set_window_size(390, 844)
    for name, path in {**PAGES, "mission": f"/missions/{mission_id}"}.items():
        if name == "api-docs":
            continue
        dashboard.open(path)
        wait_for(driver, lambda d: "ok" in d.find_element(By.ID, "live").get_attribute("class"), f"{name} data")
        if name == "missions":
            wait_for(driver, lambda d: row_status(d, mission_id), "the row")
        inner = driver.execute_script("return window.innerWidth")
        assert inner <= 400, f"the window is {inner} px wide, not a phone's"
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {inner} px"
        for element in driver.find_elements(By.CSS_SELECTOR, ".nav a"):
            assert element.size["height"] >= 20  # big enough to tap
        screenshot(driver, f"{name}-390")
    # On a phone the list is a stack of cards whose link still opens the mission.
    dashboard.open("/")
    wait_for(driver, lambda d: row_status(d, mission_id), "the row")
    open_row(driver, mission_id)
    wait_for(driver, lambda d: text_of(d, "#mission-status"), "the mission page")


def test_with_a_token_the_page_asks_refuses_a_wrong_one_and_works_with_the_right_one(
    browser: Any, tmp_path: Path
) -> None:
    dash, stop = start_dashboard(tmp_path, browser, token="s3cret-token", with_worker=False)
    driver = browser
    try:
        mission_id = dash.dispatch("say:hi")
        assert httpx.get(dash.url + "/api/v1/ops/vp/missions").status_code == 401
        dash.open("/")
        wait_for(driver, lambda d: d.find_element(By.ID, "token-dialog").is_displayed(), "the token dialog")
        assert text_of(driver, "#token-reason") == ""
        screenshot(driver, "token-ask-1280")

        driver.find_element(By.ID, "token-input").send_keys("wrong")
        driver.find_element(By.ID, "token-submit").click()
        wait_for(driver, lambda d: "401" in text_of(d, "#token-reason"), "the 401 message")
        assert driver.find_element(By.ID, "token-dialog").is_displayed()
        screenshot(driver, "token-wrong-1280")

        driver.find_element(By.ID, "token-input").send_keys("s3cret-token")
        driver.find_element(By.ID, "token-submit").click()
        wait_for(driver, lambda d: row_status(d, mission_id), "the list with the right token")
        assert not driver.find_element(By.ID, "token-dialog").is_displayed()
        assert driver.execute_script("return sessionStorage.getItem('ua-vp-token')") == "s3cret-token"
        # Never in the URL, never a cookie.
        assert "s3cret" not in driver.current_url and not driver.get_cookies()

        # Asked once: other pages of the same tab use the stored token.
        dash.open(f"/missions/{mission_id}")
        wait_for(driver, lambda d: text_of(d, "#mission-status") == "queued", "the mission without asking again")
        assert not driver.find_element(By.ID, "token-dialog").is_displayed()

        # The server's token changed (or it was wrong all along): a 401 asks again.
        driver.execute_script("sessionStorage.setItem('ua-vp-token', 'stale')")
        dash.open("/workers")
        wait_for(driver, lambda d: "401" in text_of(d, "#token-reason"), "asked again after a 401")
    finally:
        driver.get("about:blank")
        stop()
