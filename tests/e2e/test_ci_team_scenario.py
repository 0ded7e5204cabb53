"""Issue 19's team scenario, end to end on a Debian base: a Flask app tested against a
real PostgreSQL service, as a team's pipeline would (slow: apt downloads from Debian's
mirror, through the build's and the steps' NAT).

One pipeline file, run from two checkouts (branches ``main`` and ``feature``):

- build steps make a PostgreSQL image and the app's image (``localhost/team/app:ci``
  in both checkouts: each run must test its own);
- ``deps`` installs packages from the package index through the step network, its
  cache keyed by ``requirements.txt`` and locked (both branches' runs use it, and apt
  fails at once on a lock another apt holds);
- ``integration``, a matrix of two, each combination with its own database service
  (built earlier in the run, its password a secret), runs the app against it;
- ``flaky`` fails once, then passes on retry; ``notify`` runs only on failure.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dockyard.ci.runs import run_ids
from tests.support.ci import ci_run, clean_host, cli, lines_of, output, rest_of, steps

SHARED_FIXTURES = (clean_host,)  # autouse: pytest finds it here by name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

PIPELINE = """\
name: team-app
variables: {APP: "localhost/team/app:ci", DB: "localhost/team/db:ci"}
steps:
  - name: db-image
    build: {context: ., dockerfile: db.Dockerfile, tags: ["${DB}"]}
  - name: app-image
    build: {context: ., tags: ["${APP}"]}
  - name: deps
    image: DEBIAN
    cache: {key: {files: [requirements.txt]}, paths: [/var/cache/apt/archives], sharing: locked}
    commands:
      - >-
        if ls /var/cache/apt/archives/*.deb >/dev/null 2>&1;
        then echo cache=hit; else echo cache=miss; fi
      - mkdir -p /var/cache/apt/archives/partial
      - apt-get update -q
      - apt-get install -y -q --no-install-recommends --download-only $(cat requirements.txt)
  - name: integration
    depends_on: [db-image, app-image]
    matrix: {DB_NAME: [alpha, beta]}
    image: "${APP}"
    workdir: /app
    secrets: [DB_PASSWORD]
    services:
      db:
        image: "${DB}"
        secrets: [DB_PASSWORD]
        command:
          - sh
          - -c
          - >-
            echo "$DB_PASSWORD" > /tmp/pw && chown postgres /tmp/pw &&
            exec su postgres -s /bin/sh -c '/usr/lib/postgresql/15/bin/initdb -D /tmp/pg
            -U app --pwfile=/tmp/pw -A scram-sha-256 >/dev/null &&
            exec /usr/lib/postgresql/15/bin/postgres -D /tmp/pg -k /tmp
            -c listen_addresses=127.0.0.1'
        ready: {tcp: 5432, timeout: 120s}
        stop_timeout: 5s
    commands: [python3 check.py]
  - name: flaky
    image: DEBIAN
    retry: {count: 1}
    commands: ["if [ ! -e flaky-once ]; then touch flaky-once; exit 1; fi", echo flaky-passed]
  - name: notify
    image: DEBIAN
    when: {status: [failure]}
    commands: [echo notify-ran]
"""

BROKEN = """\
services:
  db: {image: DEBIAN, command: [sh, -c, "exit 1"], ready: {tcp: 5432, timeout: 60s}}
steps:
  - {name: test, image: DEBIAN, services: [db], commands: [echo never]}
  - {name: notify, image: DEBIAN, when: {status: [failure]}, commands: [echo notify-ran]}
"""

DB_DOCKERFILE = """\
FROM DEBIAN
RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-15 \\
 && rm -rf /var/lib/apt/lists/*
"""

APP_DOCKERFILE = """\
FROM DEBIAN
RUN apt-get update -q && apt-get install -y -q --no-install-recommends \\
    python3-flask python3-psycopg2 && rm -rf /var/lib/apt/lists/*
COPY app.py check.py /app/
"""

APP = """\
import os

import psycopg2
from flask import Flask

BRANCH = "BRANCH_NAME"
app = Flask(__name__)


@app.get("/db/<name>")
def create(name):
    connection = psycopg2.connect(
        host="db", user="app", password=os.environ["DB_PASSWORD"], dbname="postgres"
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'create database "{name}"')
        cursor.execute("select count(*) from pg_database where datname not like 'template%'")
        count = cursor.fetchone()[0]
        cursor.execute("show server_version")
        version = cursor.fetchone()[0].split()[0]
    connection.close()
    return f"{BRANCH}: {count} databases, postgres {version}"
"""

CHECK = """\
import os

from app import app

response = app.test_client().get("/db/" + os.environ["DB_NAME"])
print(response.status_code, response.get_data(as_text=True))
assert response.status_code == 200
"""


def checkout(root: Path, debian_ref: str, branch: str) -> Path:
    directory = root / branch / "p"
    directory.mkdir(parents=True)
    files = {
        ".dockyard.yml": PIPELINE,
        "broken.yml": BROKEN,
        "db.Dockerfile": DB_DOCKERFILE,
        "Dockerfile": APP_DOCKERFILE,
        "app.py": APP.replace("BRANCH_NAME", branch),
        "check.py": CHECK,
        "requirements.txt": "netbase\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text.replace("DEBIAN", debian_ref))
    return directory


def integration(out: str, value: str) -> str:
    return output(out, f"integration.DB_NAME-{value}")[-2]


@pytest.mark.slow
def test_the_team_pipeline_on_debian(dockyard, tmp_path, debian_ref, store_root):
    main, feature = (checkout(tmp_path, debian_ref, b) for b in ("main", "feature"))
    secret = ("--secret", "DB_PASSWORD=pg-s3cret")

    # 1. The first run, followed from a second terminal while it runs.
    report = tmp_path / "first.json"
    run = cli(
        store_root, "ci", "run", "--branch", "main", "--json", str(report), *secret, str(main)
    )
    try:
        while not run_ids(store_root):
            assert run.poll() is None, run.communicate()
            time.sleep(0.05)
        follower = cli(store_root, "ci", "logs", "-f", run_ids(store_root)[0])
        followed = rest_of(lines_of(follower), timeout=1200)
        assert follower.wait(timeout=60) == 0
    finally:
        out, err = run.communicate(timeout=1200)
    assert run.returncode == 0, out + err
    doc = json.loads(report.read_text())
    assert any(line.startswith("integration.DB_NAME-alpha | 200 main") for line in followed)
    for value in ("alpha", "beta"):  # each its own server: one database in each
        assert integration(out, value).startswith("200 main: 2 databases, postgres 15.")
    assert "cache=miss" in output(out, "deps")
    flaky = steps(doc)["flaky"]
    assert [a["status"] for a in flaky["attempts"]] == ["failure", "success"]
    assert steps(doc)["notify"]["status"] == "skipped"
    assert "pg-s3cret" not in out

    # 2. Two branches at once, each building localhost/team/app:ci: each tests its own.
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(ci_run, dockyard, directory, "--branch", directory.parent.name, *secret)
            for directory in (main, feature)
        ]
        (main_out, _), (feature_out, _) = (future.result() for future in runs)
    assert integration(main_out, "alpha").startswith("200 main: ")
    assert integration(feature_out, "beta").startswith("200 feature: ")
    assert "cache=hit" in output(main_out, "deps")  # same requirements: the same cache

    # 3. The key file changes: a miss.
    (main / "requirements.txt").write_text("netbase\nmedia-types\n")
    out, _ = ci_run(dockyard, main, "--only", "deps")
    assert "cache=miss" in output(out, "deps")

    # 4. A service that fails runs the failure step.
    out, doc = ci_run(dockyard, main, "--file", str(main / "broken.yml"), expect=1)
    assert doc["error"] == "service db exited with code 1 before it was ready"
    assert steps(doc)["test"]["status"] == "cancelled"
    assert "notify-ran" in output(out, "notify")
