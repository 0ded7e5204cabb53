"""Which images Kubernetes manifests and values files name, and where."""

from __future__ import annotations

import textwrap
from pathlib import Path

from dockyard.transfer.manifest_images import Scan, scan_text


def scan(text: str) -> Scan:
    result = Scan()
    scan_text(textwrap.dedent(text).encode(), Path("f.yaml"), result)
    return result


def found(result: Scan) -> list[str]:
    return [f"{f.line} {f.ref}" for f in result.images]


def test_every_workload_kind_and_container_list():
    result = scan(
        """\
        kind: Pod
        spec:
          containers: [{image: "a:1"}]
        ---
        kind: StatefulSet
        spec:
          template:
            spec:
              initContainers:
                - image: b:1
              containers:
                - name: x
                  image: c@sha256:0000000000000000000000000000000000000000000000000000000000000000
              ephemeralContainers:
                - image: d:1
        ---
        kind: List
        items:
          - kind: DaemonSet
            spec: {template: {spec: {containers: [{image: e:1}]}}}
          - kind: Job
            spec: {template: {spec: {containers: [{image: f:1}]}}}
        ---
        kind: CronJob
        spec:
          jobTemplate:
            spec:
              template:
                spec:
                  containers:
                    - image: g:1
        ---
        kind: Service
        spec: {selector: {image: not-an-image}}
        """
    )
    assert found(result) == [
        "3 docker.io/library/a:1",
        "10 docker.io/library/b:1",
        "13 docker.io/library/c@sha256:" + "0" * 64,
        "15 docker.io/library/d:1",
        "20 docker.io/library/e:1",
        "22 docker.io/library/f:1",
        "31 docker.io/library/g:1",
    ]
    assert not result.problems


def test_values_style_images():
    result = scan(
        """\
        image:
          registry: ghcr.io
          repository: org/web
          tag: "1.10"
        workers:
          - image: {repository: quay.io/org/worker, tag: 7}
        pinned:
          image: {repository: org/db, digest: "sha256:%s"}
        unrelated:
          image: just-a-string
        """
        % ("1" * 64)
    )
    assert found(result) == [
        "1 ghcr.io/org/web:1.10",
        "6 quay.io/org/worker:7",
        "8 docker.io/org/db@sha256:" + "1" * 64,
    ]


def test_problems_name_their_line():
    result = scan(
        """\
        image: {repository: envoy, tag: 1.10}
        other:
          image: {repository: app, tag: ""}
        ---
        kind: Deployment
        spec:
          template:
            spec:
              containers:
                - image: "{{ .Values.image }}"
                - image: "bad//name:1"
                - image: 5
        """
    )
    assert not result.images
    assert [(p.line, p.message.split(" (")[0].split(":")[0]) for p in result.problems] == [
        (1, "image tag must be a string"),
        (3, "image has no tag or digest"),
        (10, "image '{{ .Values.image }}' is a template"),
        (11, result.problems[3].message.split(":")[0]),
        (12, "image must be a string, not int"),
    ]
    assert "bad//name:1" in result.problems[3].message


def test_not_yaml_and_not_utf8():
    assert [str(p) for p in scan("a: [b\n").problems] == [
        "f.yaml:2: not YAML: expected ',' or ']', but got '<stream end>'"
    ]
    result = Scan()
    scan_text(b"a: 1\nb: \xff\n", Path("g.yaml"), result)
    assert [str(p) for p in result.problems] == ["g.yaml:2: not UTF-8"]


def test_each_image_once_in_first_order():
    result = scan("kind: Pod\nspec: {containers: [{image: b:1}, {image: a:1}, {image: b:1}]}\n")
    assert [str(r) for r in result.refs()] == ["docker.io/library/b:1", "docker.io/library/a:1"]
