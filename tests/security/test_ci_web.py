"""Attacks on the CI service's web UI: markup in branch names, commit messages, authors,
step and test names (escaped in every page) and in log lines (rendered as text by the
page's script, checked in a real browser); cross-site requests with the session cookie
(CSRF value and Origin checked); forged cookies; open redirects; token guessing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from dockyard.service import sessions, users
from dockyard.service.models import LogChunk, Run, Step
from dockyard.service.web import pages
from tests.service_api import Api, service_api

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror="document.title=\'pwned\'">'
SVG = "<svg onload=alert(2)>"


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with service_api(tmp_path) as instance:
        yield instance


def sign_in(api: Api, token: str) -> str:
    """Signs the test client in; returns the session's CSRF value (from the page)."""
    api.client.cookies.clear()
    response = api.client.post("/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = api.client.get("/")
    assert page.status_code == 200
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)[1]


def hostile_run(api: Api) -> None:
    """Run 1 with markup in its branch, message, author, step names and test names."""
    api.call("POST", "/repos/project/runs", api.admin, 201, json={"branch": SCRIPT})
    svc = api.client.app.state.service
    with svc.db.transaction() as session:
        run = session.scalar(select(Run).where(Run.number == 1))
        run.message, run.author, run.error = IMG, SVG, SCRIPT
        session.add(Step(run_id=run.id, name=SVG, status="failure", reason=IMG))
        session.add(
            Step(
                run_id=run.id,
                name=SCRIPT,
                status="success",
                tests={"passed": 1, "failed": 1, "skipped": 0, "failing": [IMG]},
            )
        )
        session.add(LogChunk(run_id=run.id, attempt=1, lines=[[SVG, IMG, False]]))


def test_markup_in_run_fields_is_escaped_on_every_page(api):
    hostile_run(api)
    sign_in(api, api.admin)
    for path in (
        "/",
        "/repos/project",
        "/repos/project/runs/1",
        "/repos/project/runs/1/log?step=%3Csvg%20onload%3Dalert(2)%3E",
        f"/repos/project?branch={SCRIPT}",
    ):
        page = api.client.get(path)
        assert page.status_code == 200, path
        for payload in (SCRIPT, IMG, SVG, "<img"):
            assert payload not in page.text, (path, payload)
        assert not re.search(r'<svg(?! class="graph" )', page.text), path  # the steps' graph
        assert not re.search(r"<script(?![^>]*\ssrc=\"/static/)", page.text), path
    run = api.client.get("/repos/project/runs/1").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run  # shown, as text
    assert "&lt;svg onload=alert(2)&gt;" in run


def test_pages_carry_a_strict_content_security_policy(api):
    sign_in(api, api.admin)
    for path in ("/login", "/", "/repos/project", "/static/app.js", "/api/v1/repos"):
        headers = api.client.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
        assert "frame-ancestors 'none'" in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    page = api.client.get("/repos/project").text
    assert not re.search(r"\son[a-z]+=|\sstyle=", page)  # nothing inline the policy would block


def test_the_session_cookie_is_httponly_strict_and_sealed(api, tmp_path):
    response = api.client.post("/login", data={"token": api.admin}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(sessions.COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS:
    assert api.admin not in cookie and api.admin.removeprefix("dyt_")[:16] not in cookie
    secure = api.client.post(
        "https://testserver/login", data={"token": api.admin}, follow_redirects=False
    )
    assert "Secure" in secure.headers["set-cookie"]


def test_state_changes_with_the_cookie_need_the_csrf_value_and_our_origin(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    csrf = sign_in(api, api.token("write"))
    cancel = "/api/v1/repos/project/runs/1/cancel"
    assert api.client.post(cancel).status_code == 403  # what a forged form would send
    assert api.client.post(cancel, headers={"X-CSRF-Token": "guess"}).status_code == 403
    evil = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert api.client.post(cancel, headers=evil).status_code == 403
    assert api.call("GET", "/repos/project/runs/1", api.admin, 200)["status"] == "queued"
    # Sign-out is a state change too: a cross-site form cannot sign a user out.
    assert api.client.post("/logout", data={"csrf": "guess"}).status_code == 403
    assert api.client.get("/", follow_redirects=False).status_code == 200
    good = {"X-CSRF-Token": csrf, "Origin": "http://testserver"}
    assert api.client.post(cancel, headers=good).status_code == 202
    assert api.call("GET", "/repos/project/runs/1", api.admin, 200)["status"] == "cancelled"


def test_a_cross_site_sign_in_form_is_refused(api):
    response = api.client.post(
        "/login", data={"token": api.admin}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert sessions.COOKIE not in response.headers.get("set-cookie", "")


def test_a_read_session_sees_no_buttons_and_the_api_refuses_it(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    csrf = sign_in(api, api.token("read"))
    page = api.client.get("/repos/project/runs/1").text
    assert "/cancel" not in page and "data-post" not in page
    headers = {"X-CSRF-Token": csrf}
    assert (
        api.client.post("/api/v1/repos/project/runs/1/cancel", headers=headers).status_code == 403
    )
    assert api.client.post("/api/v1/repos/project/runs", headers=headers).status_code == 403
    assert api.call("GET", "/repos/project/runs/1", api.admin, 200)["status"] == "queued"


def test_a_forged_or_tampered_cookie_is_no_session(api):
    sign_in(api, api.admin)
    value = api.client.cookies[sessions.COOKIE]
    tampered = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    for forged in (tampered, "x", "A" * 5000, api.admin):
        api.client.cookies.clear()
        api.client.cookies.set(sessions.COOKIE, forged)
        assert api.client.get("/", follow_redirects=False).status_code == 303
        assert api.client.get("/api/v1/repos").status_code == 401


def test_agent_tokens_cannot_sign_in(api):
    response = api.client.post("/login", data={"token": api.token("agent")})
    assert response.status_code == 401
    assert sessions.COOKIE not in response.headers.get("set-cookie", "")


def test_sign_in_goes_back_only_to_this_server(api):
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:x"):
        response = api.client.post(
            "/login", data={"token": api.admin, "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/", target
    response = api.client.post(
        "/login", data={"token": api.admin, "next": "/repos/project"}, follow_redirects=False
    )
    assert response.headers["location"] == "/repos/project"


def test_guessing_tokens_is_rate_limited(api, monkeypatch):
    monkeypatch.setattr(pages, "SIGN_INS", users.Guard(5))
    codes = [api.client.post("/login", data={"token": f"dyt_{i}"}).status_code for i in range(6)]
    assert codes == [401] * 5 + [429]
    # Even the right token waits now: nothing tells a guesser which guess was right.
    assert api.client.post("/login", data={"token": api.admin}).status_code == 429


def add_user(api: Api, name: str, role: str, password: str) -> None:
    body = {"name": name, "role": role, "password": password}
    api.call("POST", "/users", api.admin, 201, json=body)


def test_guessing_a_password_is_rate_limited_per_client_and_per_user(api, monkeypatch):
    monkeypatch.setattr(pages, "SIGN_INS", users.Guard(3))
    add_user(api, "ada", "write", "correct horse")
    guesses = [
        api.client.post("/login", data={"name": "ada", "password": f"guess {i}"}).status_code
        for i in range(4)
    ]
    assert guesses == [401, 401, 401, 429]
    assert (
        api.client.post("/login", data={"name": "ada", "password": "correct horse"}).status_code
        == 429
    )
    # Another client (a new address) guessing the same user is refused too: the
    # user's own bucket is empty. bcrypt never ran for these.
    other = users.Guard(3)
    for _ in range(3):
        other.take("10.0.0.1", "ada")
    assert other.take("10.0.0.2", "ada") is not None
    assert other.take("10.0.0.2", "bob") is None


def test_a_password_sign_in_sets_the_same_strict_cookie_and_needs_our_origin(api):
    add_user(api, "ada", "read", "correct horse")
    form = {"name": "ada", "password": "correct horse"}
    evil = api.client.post("/login", data=form, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and sessions.COOKIE not in evil.headers.get("set-cookie", "")
    response = api.client.post("/login", data=form, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "correct horse" not in cookie and "ada" not in cookie  # sealed
    secure = api.client.post("https://testserver/login", data=form, follow_redirects=False)
    assert "Secure" in secure.headers["set-cookie"]


def test_a_new_password_or_removal_ends_the_users_sessions(api):
    add_user(api, "ada", "admin", "correct horse")
    response = api.client.post("/login", data={"name": "ada", "password": "correct horse"})
    assert response.status_code == 200 and "ada, role: admin" in response.text
    assert api.client.get("/api/v1/secrets").status_code == 200  # the cookie works on the API
    api.call("PUT", "/users/ada/password", api.admin, 204, json={"password": "battery staple"})
    assert api.client.get("/", follow_redirects=False).status_code == 303
    assert api.client.get("/api/v1/secrets").status_code == 401
    wrong = api.client.post("/login", data={"name": "ada", "password": "correct horse"})
    assert wrong.status_code == 401
    api.client.post("/login", data={"name": "ada", "password": "battery staple"})
    assert api.client.get("/", follow_redirects=False).status_code == 200
    api.call("DELETE", "/users/ada", api.admin, 204)
    assert api.client.get("/", follow_redirects=False).status_code == 303


def test_a_read_user_is_refused_by_the_api_and_cannot_manage_users(api):
    api.call("POST", "/repos/project/runs", api.admin, 201, json={})
    add_user(api, "rita", "read", "correct horse")
    api.client.post("/login", data={"name": "rita", "password": "correct horse"})
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', api.client.get("/").text)[1]
    headers = {"X-CSRF-Token": csrf}
    assert (
        api.client.post("/api/v1/repos/project/runs/1/cancel", headers=headers).status_code == 403
    )
    body = {"name": "mallory", "role": "admin", "password": "correct horse"}
    assert api.client.post("/api/v1/users", json=body, headers=headers).status_code == 403
    assert "/secrets" not in api.client.get("/repos/project/runs/1").text


LOG_LINES = [
    ["build", IMG, False],
    ["build", "\x1b[31;1m" + SCRIPT + "\x1b[0m plain", False],
    ["build", "\x1b]8;;javascript:alert(3)\x1b\\click\x1b]8;;\x1b\\", False],
    ["build", "token=********", False],
]


def test_markup_in_log_lines_is_shown_as_text_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.by import By

    from dockyard.service.api import create_app
    from dockyard.service.server import ADMIN_TOKEN_FILE, ServerConfig, open_service
    from tests.browser import chromium, console_errors, served, sign_in, wait_until

    data = tmp_path / "data"
    svc = open_service(ServerConfig(addr="127.0.0.1:0", data=data, local_agent=False))
    admin = (data / ADMIN_TOKEN_FILE).read_text().strip()
    with svc.db.transaction() as session:
        from dockyard.service.models import Repository

        repository = Repository(name="project", clone_url="git://127.0.0.1:1/p", run_count=1)
        session.add(repository)
        session.flush()
        run = Run(repository_id=repository.id, number=1, event="manual", status="running")
        session.add(run)
        session.flush()
        session.add(LogChunk(run_id=run.id, attempt=1, lines=LOG_LINES))
        run_id = run.id
    with served(create_app(svc)) as url, chromium() as driver:
        sign_in(driver, url, admin)
        driver.get(url + "/repos/project/runs/1/log?step=build")
        lines = wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#log .line .text"), what="log lines"
        )
        assert [line.text for line in lines] == [
            IMG,
            SCRIPT + " plain",
            "click",  # an OSC 8 hyperlink's target is dropped with the escape
            "token=********",
        ]
        log = driver.find_element(By.ID, "log")
        assert log.find_elements(By.CSS_SELECTOR, "img, script, svg, a:not(.ln)") == []
        assert driver.title != "pwned"
        red = log.find_element(By.CSS_SELECTOR, "#L2 .text span")
        assert red.get_attribute("class") == "fg31 b" and red.text == SCRIPT
        # Live: a line written now appears without a reload.
        with svc.db.transaction() as session:
            session.add(LogChunk(run_id=run_id, attempt=1, lines=[["build", SVG, False]]))
        svc.logs.notify()
        wait_until(lambda: driver.find_elements(By.ID, "L5"), what="the live line")
        assert driver.find_element(By.CSS_SELECTOR, "#L5 .text").text == SVG
        assert log.find_elements(By.CSS_SELECTOR, "svg") == []
        assert console_errors(driver) == []


SECRET_VALUE = "hunter2-very-secret-value"


def test_the_secrets_page_takes_values_but_never_sends_one_back(api):
    csrf = sign_in(api, api.admin)
    form = {"csrf": csrf, "scope": "project", "name": "DEPLOY_KEY", "value": SECRET_VALUE}
    response = api.client.post("/secrets", data=form, follow_redirects=False)
    assert response.status_code == 303
    responses = [response, api.client.get(response.headers["location"])]
    global_form = {**form, "scope": "", "name": "SHARED"}
    responses.append(api.client.post("/secrets", data=global_form))
    responses.append(api.client.post("/secrets", data={**form, "name": "bad name"}))  # an error
    responses.append(api.client.post("/secrets", data={**form, "scope": "nowhere"}))
    responses.append(api.client.get("/secrets"))
    page = responses[-1].text
    assert "DEPLOY_KEY" in page and "SHARED" in page and "project" in page
    for r in responses:
        assert SECRET_VALUE not in r.text, r.url
        assert SECRET_VALUE not in str(r.headers), r.url
    names = api.call("GET", "/repos/project/secrets", api.admin, 200)["items"]
    assert names == [{"name": "DEPLOY_KEY"}]
    svc = api.client.app.state.service
    with svc.db.transaction() as session:
        from dockyard.service.api.secrets import secrets_for_run
        from dockyard.service.models import Repository

        repository = session.scalar(select(Repository.id))
        assert secrets_for_run(session, svc.box, repository, ["DEPLOY_KEY", "SHARED"]) == {
            "DEPLOY_KEY": SECRET_VALUE,
            "SHARED": SECRET_VALUE,
        }
    delete = {"csrf": csrf, "scope": "project", "name": "DEPLOY_KEY"}
    assert api.client.post("/secrets/delete", data=delete).status_code == 200
    assert api.call("GET", "/repos/project/secrets", api.admin, 200)["items"] == []


def test_secret_forms_need_the_csrf_value_our_origin_and_an_admin(api):
    csrf = sign_in(api, api.admin)
    form = {"scope": "", "name": "FORGED", "value": "x"}
    assert api.client.post("/secrets", data=form).status_code == 403  # a forged form
    assert api.client.post("/secrets", data={**form, "csrf": "guess"}).status_code == 403
    evil = {"Origin": "https://evil.example"}
    assert api.client.post("/secrets", data={**form, "csrf": csrf}, headers=evil).status_code == 403
    assert api.call("GET", "/secrets", api.admin, 200)["items"] == []
    api.call("PUT", "/secrets/KEPT", api.admin, 204, json={"value": "v"})
    csrf = sign_in(api, api.token("write"))
    assert api.client.get("/secrets").status_code == 403
    assert api.client.post("/secrets", data={**form, "csrf": csrf}).status_code == 403
    delete = {"csrf": csrf, "scope": "", "name": "KEPT"}
    assert api.client.post("/secrets/delete", data=delete).status_code == 403
    assert api.call("GET", "/secrets", api.admin, 200)["items"] == [{"name": "KEPT"}]
    assert 'href="/secrets"' not in api.client.get("/").text
