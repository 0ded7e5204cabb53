"""The web UI's newer pages in a real browser (headless Chromium, Selenium) against
the server app on a seeded database, no agent needed: signing in with a password, a
run's steps as a keyboard-reachable graph with the failed JUnit test's message and
output first, a 100,000-line log that opens at its tail and loads earlier lines, and
the admin's secrets page. Every page at 1280x800 and 390x844 without sideways
scrolling or console errors; screenshots under ``test-artifacts/browser``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import insert

from dockyard.service import users
from dockyard.service.api import create_app
from dockyard.service.models import Agent, JUnitCase, LogChunk, Repository, Run, Step
from dockyard.service.server import ServerConfig, open_service
from tests.browser import chromium, console_errors, screenshot, served, sign_in_as, wait_until

pytestmark = pytest.mark.e2e

STEPS = [  # name, status, depends_on, duration
    ("compile", "success", [], 3.5),
    ("lint", "success", [], 1.0),
    ("test", "failure", ["compile"], 12.25),
    ("package", "not-started", ["test", "lint"], 0.0),
]
SECRET_VALUE = "s3cret-value-typed-in-the-browser"
LOG_LINES = 100_000
GREEN = LOG_LINES - 1500  # before the tail and the first 500 earlier lines


@dataclass
class Site:
    url: str
    svc: object
    run_id: int


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    svc = open_service(ServerConfig(addr="127.0.0.1:0", data=tmp_path / "data", local_agent=False))
    with svc.db.transaction() as session:
        users.add_user(session, "ada", "admin", users.hash_password("correct horse"))
        users.add_user(session, "rita", "read", users.hash_password("battery staple"))
        repository = Repository(name="project", clone_url="git://127.0.0.1:1/p", run_count=2)
        agent = Agent(name="builder-1")
        session.add_all([repository, agent])
        session.flush()
        run = Run(
            repository_id=repository.id,
            number=1,
            event="push",
            branch="main",
            status="running",
            message="a long build",
        )
        waiting = Run(repository_id=repository.id, number=2, event="manual", labels={"gpu": "true"})
        session.add_all([run, waiting])
        session.flush()
        for name, status, depends_on, duration in STEPS:
            session.add(
                Step(
                    run_id=run.id,
                    name=name,
                    status="pending" if status == "not-started" else status,
                    depends_on=depends_on,
                    duration=duration,
                    agent_id=agent.id,
                    tests={"passed": 1, "failed": 1, "skipped": 0, "failing": ["t.test_broken"]}
                    if name == "test"
                    else None,
                )
            )
        session.add_all(
            [
                JUnitCase(run_id=run.id, step="test", name="t.test_fine", status="passed"),
                JUnitCase(
                    run_id=run.id,
                    step="test",
                    name="t.test_broken",
                    status="failed",
                    message="expected 2, got 3",
                    output="Traceback (most recent call last):\n  assert 2 == 3",
                ),
            ]
        )
        session.execute(
            insert(LogChunk),
            [
                {
                    "run_id": run.id,
                    "attempt": 1,
                    "lines": [["test", log_line(c * 500 + n + 1), False] for n in range(500)],
                }
                for c in range(LOG_LINES // 500)
            ],
        )
        run_id = run.id
    with served(create_app(svc)) as url:
        yield Site(url, svc, run_id)


def log_line(number: int) -> str:
    """Line ``number`` of the long log: line GREEN turns green, and no line after it
    turns it back."""
    return f"\x1b[32mline {number}" if number == GREEN else f"line {number}"


def texts(driver, selector: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", selector
    )


def fits(driver, name: str, ready: str = "main", keyboard: bool = False) -> None:
    """The page at 1280x800 and at 390x844 (once ``ready`` matches something): no
    sideways scrolling, no console error, every status with a word and not a colour
    only; with ``keyboard``, each link, button and field reached with Tab."""
    from selenium.webdriver.common.by import By

    for width, height in ((1280, 800), (390, 844)):
        driver.set_window_size(width, height)
        driver.refresh()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ready), what=f"{name}: {ready}")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width, (name, width, scroll)
        assert wordless_statuses(driver) == [], (name, width)
        if keyboard:
            assert not_reached_by_tab(driver) == [], (name, width)
        screenshot(driver, f"{name}-{width}")
    driver.set_window_size(1280, 800)
    assert console_errors(driver) == [], name


def wordless_statuses(driver) -> list[str]:
    """The statuses shown (``.status``) without a word: by colour alone."""
    return driver.execute_script(
        """return [...document.querySelectorAll('.status')]
            .filter((e) => e.getClientRects().length)
            .map((e) => e.textContent.trim())
            .filter((t) => !/[a-z]{2}/i.test(t));"""
    )


def not_reached_by_tab(driver) -> list[str]:
    """The visible links, buttons and fields that Tab, pressed from the page's top,
    never focuses (as their HTML)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    count = driver.execute_script(
        """const all = [...document.querySelectorAll(
                'a[href], button, input:not([type=hidden]), select, textarea, summary')]
            .filter((e) => !e.disabled && e.getClientRects().length);
        all.forEach((e, i) => { e.dataset.kb = String(i); });
        document.activeElement.blur();
        return all.length;"""
    )
    reached = set()
    for _ in range(count + 5):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        reached.add(driver.execute_script("return document.activeElement.dataset.kb ?? null"))
    return driver.execute_script(
        """return [...document.querySelectorAll('[data-kb]')]
            .filter((e) => !arguments[0].includes(e.dataset.kb)).map((e) => e.outerHTML);""",
        [r for r in reached if r is not None],
    )


def test_a_user_signs_in_with_a_password_and_reads_the_run(site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with chromium() as driver:
        driver.get(site.url + "/login")
        driver.find_element(By.ID, "name").send_keys("ada")
        driver.find_element(By.ID, "password").send_keys("wrong password")
        driver.find_element(By.CSS_SELECTOR, "#password-form button").click()
        wait_until(lambda: texts(driver, "p.error"), what="the refusal")
        assert texts(driver, "p.error") == ["unknown user or wrong password"]
        assert all("401" in e for e in console_errors(driver))  # the refusal's status only
        driver.get(site.url + "/login")
        fits(driver, "login", keyboard=True)
        sign_in_as(driver, site.url, "ada", "correct horse")
        assert "ada, role: admin" in texts(driver, ".role")[0]

        driver.get(site.url + "/repos/project/runs/1")
        labels = [
            a.get_attribute("aria-label")
            for a in driver.find_elements(By.CSS_SELECTOR, "svg.graph a")
        ]
        assert labels == [
            "compile: success, 3.5 s",
            "lint: success, 1.0 s",
            "test: failure, 12.2 s, after compile",
            "package: pending, after test, lint",
        ]
        assert "✖ failure · 12.2 s" in texts(driver, "svg.graph text.state")
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.graph path.edge")) == 3
        # The graph's boxes are links the keyboard reaches, in order.
        driver.execute_script("document.querySelector('a[href$=\"/log\"]').focus()")
        reached = []
        for _ in range(40):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            label = driver.switch_to.active_element.get_attribute("aria-label") or ""
            if ":" in label:
                reached.append(label.split(":")[0])
            if len(reached) == 4:
                break
        assert reached == ["compile", "lint", "test", "package"]
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait_until(lambda: driver.current_url.endswith("/log?step=package"), what="the step")
        driver.back()

        # The failed test first, with its message and output; then the rest.
        wait_until(lambda: texts(driver, ".failing .test"), what="the report")
        assert texts(driver, ".failing .test") == ["t.test_broken"]
        assert texts(driver, ".test-message") == ["expected 2, got 3"]
        driver.find_element(By.CSS_SELECTOR, ".failing details summary").click()
        assert "assert 2 == 3" in driver.find_element(By.CSS_SELECTOR, ".test-output").text
        assert texts(driver, ".other-tests .test") == ["t.test_fine"]
        assert "✔ passed" in texts(driver, ".other-tests li")[0]
        fits(driver, "run-graph")


def test_a_long_log_opens_at_its_tail_and_loads_earlier_lines(site):
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        sign_in_as(driver, site.url, "rita", "battery staple")
        driver.get(site.url + "/repos/project/runs/1/log?step=test")
        wait_until(lambda: driver.find_elements(By.ID, f"L{LOG_LINES}"), what="the last line")
        shown = len(driver.find_elements(By.CSS_SELECTOR, "#log .line"))
        assert shown == 500
        assert (
            driver.find_element(By.ID, "earlier-count").text
            == f"{LOG_LINES - 500} earlier lines not shown"
        )
        assert driver.find_element(By.CSS_SELECTOR, ".failing .test").text == "t.test_broken"
        fits(driver, "log-tail", ready=f"#L{LOG_LINES}")
        earlier = wait_until(
            lambda: [b for b in driver.find_elements(By.ID, "earlier") if b.is_displayed()],
            what="the load-earlier button",
        )
        earlier[0].click()
        wait_until(lambda: driver.find_elements(By.ID, f"L{LOG_LINES - 999}"), what="earlier lines")
        assert (
            driver.find_element(By.CSS_SELECTOR, f"#L{LOG_LINES - 999} .text").text
            == f"line {LOG_LINES - 999}"
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, "#log .line")) == 1000
        # Line GREEN, never loaded, turned the lines after it green: both the tail and
        # the earlier lines start so.
        for number in (LOG_LINES - 999, LOG_LINES - 500, LOG_LINES):
            assert driver.find_elements(By.CSS_SELECTOR, f"#L{number} .text span.fg32"), number
        # A line written now follows the tail, live.
        with site.svc.db.transaction() as session:
            session.add(
                LogChunk(run_id=site.run_id, attempt=1, lines=[["test", "fresh line", False]])
            )
        site.svc.logs.notify()
        wait_until(lambda: driver.find_elements(By.ID, f"L{LOG_LINES + 1}"), what="the live line")
        assert driver.find_element(By.CSS_SELECTOR, f"#L{LOG_LINES + 1} .text").text == "fresh line"
        # A link to an early line loads the log from there.
        driver.get(site.url + "/")
        driver.get(site.url + "/repos/project/runs/1/log?step=test#L99000")
        target = wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#L99000.target"), what="L99000"
        )
        assert target[0].find_element(By.CSS_SELECTOR, ".text").text == "line 99000"
        assert console_errors(driver) == []
        # A read-only user has no secrets page.
        assert driver.find_elements(By.LINK_TEXT, "Secrets") == []


def test_the_queue_says_why_a_run_waits_on_a_page_for_keyboard_and_phone(site):
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        sign_in_as(driver, site.url, "ada", "correct horse")
        driver.find_element(By.LINK_TEXT, "Agents").click()
        wait_until(lambda: texts(driver, "main li"), what="the queue")
        (waiting,) = texts(driver, "main li")
        assert waiting.startswith("project #2: no agent"), waiting
        assert "builder-1" in texts(driver, "main td")
        fits(driver, "agents-queue", keyboard=True)
        driver.find_element(By.LINK_TEXT, "project #2").click()
        wait_until(lambda: driver.current_url.endswith("/repos/project/runs/2"), what="run 2")
        assert "⏳ queued" in texts(driver, ".status")


def test_an_admin_sets_and_deletes_secrets_without_seeing_a_value(site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with chromium() as driver:
        sign_in_as(driver, site.url, "ada", "correct horse")
        driver.find_element(By.LINK_TEXT, "Secrets").click()
        Select(driver.find_element(By.ID, "secret-scope")).select_by_visible_text("project")
        driver.find_element(By.ID, "secret-name").send_keys("DEPLOY_KEY")
        driver.find_element(By.ID, "secret-value").send_keys(SECRET_VALUE)
        driver.find_element(By.CSS_SELECTOR, ".set-secret button").click()
        wait_until(lambda: texts(driver, ".done"), what="the confirmation")
        assert texts(driver, ".done") == ["Secret DEPLOY_KEY set (project)."]
        assert texts(driver, ".secret-name") == ["DEPLOY_KEY"]
        assert texts(driver, "td.scope") == ["scope: project"]
        assert SECRET_VALUE not in driver.page_source
        assert driver.find_element(By.ID, "secret-value").get_attribute("value") == ""
        fits(driver, "secrets", keyboard=True)
        driver.find_element(
            By.CSS_SELECTOR, "button[aria-label='Delete DEPLOY_KEY (project)']"
        ).click()
        wait_until(lambda: "deleted" in "".join(texts(driver, ".done")), what="the deletion")
        assert texts(driver, ".secret-name") == []
        assert console_errors(driver) == []
