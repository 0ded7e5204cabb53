"""The CI service's web UI in a real browser (headless Chromium driven by Selenium)
against a real ``dockyard server`` with an agent and a git repository: sign in, trigger
a run, see its steps drawn as their graph, watch a log grow without a reload, see the
failed JUnit test first with its message and output, cancel a run, and a read-only user
(signed in with a password) without buttons whose API calls are refused. Each page is
saved as a screenshot under ``test-artifacts/browser``; no page may log a console error.
"""

from __future__ import annotations

import os

import pytest

from tests.browser import chromium, console_errors, screenshot, sign_in, sign_in_as, wait_until
from tests.e2e.service_support import pipeline

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

JUNIT = (
    '<testsuite><testcase name="test_fine"/><testcase name="test_broken">'
    '<failure message="expected 2, got 3">assert 2 == 3</failure></testcase></testsuite>'
)
PIPELINE = f"""
steps:
  - name: compile
    image: IMAGE
    commands: ["echo compiled"]
  - name: test
    image: IMAGE
    depends_on: [compile]
    commands:
      - echo first line
      - if [ "$CI_RUN_NUMBER" = 2 ]; then echo waiting; sleep 300; fi
      - sleep 4
      - echo '{JUNIT}' > junit.xml
      - printf '\\033[32mgreen\\033[0m done\\n'
      - mkdir -p dist && echo built > dist/app.txt
      - echo last line
    reports: {{junit: junit.xml}}
    artifacts: ["dist/**"]
"""


def test_a_user_follows_a_run_in_the_browser(server, repo, busybox_ref, tmp_path):
    from selenium.webdriver.common.by import By

    repo.commit({".dockyard.yml": pipeline(busybox_ref, PIPELINE)})
    server.add_repo(repo, {})
    server.agent("worker", "", tmp_path / "store-w")
    admin = (server.data / "admin-token").read_text().strip()
    reader = {"name": "rita", "role": "read", "password": "correct horse"}
    server.call("POST", "/users", 201, json=reader)

    def texts(selector: str) -> list[str]:
        """What the elements show, read in one step (a page may reload meanwhile)."""
        return driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText)",
            selector,
        )

    def page_done(name: str) -> None:
        screenshot(driver, name)
        assert console_errors(driver) == [], name

    with chromium() as driver:
        sign_in(driver, server.url, admin)
        assert texts("table.list td a")[0] == "project"
        page_done("repositories")

        # Trigger a run from the repository's page: the button goes to the new run.
        driver.get(server.url + "/repos/project")
        driver.find_element(By.CSS_SELECTOR, "button[data-post]").click()
        wait_until(lambda: driver.current_url.endswith("/repos/project/runs/1"), what="run 1")
        step = wait_until(lambda: driver.find_elements(By.LINK_TEXT, "test"), what="the step")
        labels = [
            a.get_attribute("aria-label")
            for a in driver.find_elements(By.CSS_SELECTOR, "svg.graph a")
        ]
        assert [label.split(":")[0] for label in labels] == ["compile", "test"]
        assert labels[1].endswith(", after compile")  # drawn as soon as the agent read it
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.graph path.edge")) == 1
        page_done("run-started")

        # The step's log: lines appear while the step runs, without a reload.
        step[0].click()
        driver.execute_script("window.notReloaded = true")
        wait_until(lambda: "first line" in texts("#log .text"), what="the first line")
        assert server.call("GET", "/repos/project/runs/1")["status"] == "running"
        assert "last line" not in texts("#log .text")
        wait_until(lambda: "last line" in texts("#log .text"), what="the last line")
        assert driver.execute_script("return window.notReloaded") is True
        green = driver.find_element(By.CSS_SELECTOR, "#log .text span.fg32")
        assert green.text == "green"
        wait_until(lambda: "success" in texts("#log-state"), what="the end of the log")
        page_done("step-log")

        # The run: the failed test first with its message and output, counts, the rest,
        # the artifact, the graph's boxes with their status and duration.
        driver.get(server.url + "/repos/project/runs/1")
        assert texts(".failing li .test") == ["test_broken"]
        assert texts(".test-message") == ["expected 2, got 3"]
        assert "assert 2 == 3" in driver.execute_script(
            "return document.querySelector('.test-output').textContent"
        )
        assert texts(".other-tests .test") == ["test_fine"]
        assert texts(".counts")[0].startswith("1 failed, 1 passed")
        assert "test/dist/app.txt" in texts(".artifacts a")
        assert texts("table.steps td:nth-child(4)") == ["worker", "worker"]  # the steps' agent
        states = driver.execute_script(
            "return [...document.querySelectorAll('svg.graph text.state')]"
            ".map((e) => e.textContent)"
        )
        assert [t.split(" · ")[0] for t in states] == [
            "✔ success",
            "✔ success",
        ]
        page_done("run-finished")

        # A second run, cancelled from its page.
        driver.get(server.url + "/repos/project")
        driver.find_element(By.CSS_SELECTOR, "button[data-post]").click()
        wait_until(lambda: driver.current_url.endswith("/runs/2"), what="run 2")
        wait_until(lambda: _log_has(server, 2, "waiting"), what="run 2 to wait")
        driver.refresh()
        driver.find_element(By.ID, "cancel").click()
        wait_until(lambda: "cancelled" in "".join(texts("#run")), what="the run cancelled")
        assert server.call("GET", "/repos/project/runs/2")["status"] == "cancelled"
        page_done("run-cancelled")

        # The runs page on a phone-sized screen: no sideways scrolling.
        driver.set_window_size(390, 844)
        driver.get(server.url + "/repos/project?status=cancelled")
        assert [t.split()[0] for t in texts("table.runs td:first-child")] == ["#2"]
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
        page_done("runs-phone")
        driver.set_window_size(1280, 800)

        # A read-only user: no buttons, and the API refuses the calls anyway.
        driver.find_element(By.CSS_SELECTOR, ".signout button").click()
        wait_until(lambda: "/login" in driver.current_url, what="the sign-out")
        sign_in_as(driver, server.url, "rita", "correct horse")
        driver.get(server.url + "/repos/project/runs/1")
        assert driver.find_elements(By.CSS_SELECTOR, "button[data-post]") == []
        page_done("run-read-only")
        statuses = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const post = (url) => fetch(url, {method: "POST", headers: {"X-CSRF-Token": csrf}})
              .then((r) => r.status);
            Promise.all([post("/api/v1/repos/project/runs/1/restart"),
                         post("/api/v1/repos/project/runs")]).then(done);
            """
        )
        assert statuses == [403, 403]
    assert server.call("GET", "/repos/project/runs")["total"] == 2


def _log_has(server, number: int, text: str) -> bool:
    chunks = server.call("GET", f"/repos/project/runs/{number}/logs")["chunks"]
    return any(line[1] == text for chunk in chunks for line in chunk["lines"])
