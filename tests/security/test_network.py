"""Network isolation: a RUN step, ``dockyard run`` and a pipeline's build step reach
neither the host's loopback nor the host's own addresses unless the operator says so,
and still reach the outside through the NAT.

The world of these tests, all on this machine: a server on the host's 127.0.0.1; a
veth pair whose host end (a host address, 10.x) has a server too; and, at the far end
of the pair, a network namespace standing for "the internet" with a server of its own,
which the host reaches through the veth and a container through slirp4netns. Each
server answers a connection with its name and closes it.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.runtime.nat import NatNetwork
from dockyard.runtime.netns import create_netns, remove_netns
from tests.conftest import need
from tests.killing import killed_when_ready
from tests.support.waiting import PATIENCE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

IMAGE = "localhost/net-test/busybox:1"


@dataclass
class World:
    loopback: str  # "127.0.0.1 PORT": the host's loopback
    host_address: str  # "10.x.y.1 PORT": the host end of the veth pair
    outside: str  # "10.x.y.2 PORT": a server in another namespace, behind the veth


def _serve(listener: socket.socket, banner: bytes) -> None:
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return  # closed: the test is over
        with connection:
            connection.sendall(banner)


def _listen_on(address: str, port: int, banner: bytes) -> tuple[socket.socket, str]:
    listener = socket.create_server((address, port))
    threading.Thread(target=_serve, args=(listener, banner), daemon=True).start()
    return listener, f"{address} {listener.getsockname()[1]}"


def _listen(address: str, banner: bytes) -> tuple[socket.socket, str]:
    return _listen_on(address, 0, banner)


OUTSIDE_SERVER = """
import socket, sys
listener = socket.create_server((sys.argv[1], 0))
print(listener.getsockname()[1], flush=True)
while True:
    connection, _ = listener.accept()
    connection.sendall(b"OUTSIDE\\n")
    connection.close()
"""


def _ip(*args: str, netns: Path | None = None) -> None:
    inside = ["nsenter", f"--net={netns}"] if netns is not None else []
    subprocess.run([*inside, "ip", *args], check=True, capture_output=True)


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    """The servers of the module docstring; the far namespace is held by a file of
    ``tmp_path`` (not ``ip netns add``'s /run/netns, which podman and ``ip`` may be
    re-mounting at the same time: its namespace files then read as plain files)."""
    need("ip", "nsenter", "slirp4netns", "runc")
    tag = os.urandom(3).hex()
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    host_end, far_end = f"dyh{tag}", f"dyo{tag}"
    namespace = create_netns(tmp_path / "outside.netns")
    server = None
    listeners: list[socket.socket] = []
    try:
        _ip(
            "link",
            "add",
            far_end,
            "type",
            "veth",
            "peer",
            "name",
            host_end,
            "netns",
            str(os.getpid()),
            netns=namespace,
        )
        _ip("addr", "add", f"{subnet}.1/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("addr", "add", f"{subnet}.2/30", "dev", far_end, netns=namespace)
        _ip("link", "set", far_end, "up", netns=namespace)
        server = subprocess.Popen(
            ["nsenter", f"--net={namespace}", sys.executable, "-c", OUTSIDE_SERVER, f"{subnet}.2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        outside = f"{subnet}.2 {server.stdout.readline().strip()}"
        loopback, loopback_at = _listen("127.0.0.1", b"LOOPBACK\n")
        host, host_at = _listen(f"{subnet}.1", b"HOSTADDR\n")
        listeners = [loopback, host]
        yield World(loopback_at, host_at, outside)
    finally:
        for listener in listeners:
            listener.close()
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        remove_netns(namespace)


@pytest.fixture
def image(dockyard, busybox_rootfs) -> str:
    dockyard("import", str(busybox_rootfs), IMAGE)
    return IMAGE


def probe(world: World) -> str:
    """A shell script printing what each server answered (or nothing), one per line."""
    lines = [
        f'echo "{name}=$(nc -w 3 {getattr(world, name)} </dev/null 2>/dev/null)"'
        for name in ("loopback", "host_address", "outside")
    ]
    return "; ".join(lines)


def answers(text: str) -> dict[str, str]:
    """What :func:`probe` printed: name -> banner ('' if unreachable)."""
    found = {}
    for line in text.splitlines():  # a line of output ends with NAME=ANSWER
        if match := re.search(r"(?:^|\s)(loopback|host_address|outside)=(\S*)$", line):
            found[match[1]] = match[2]
    assert set(found) == {"loopback", "host_address", "outside"}, text
    return found


ISOLATED = {"loopback": "", "host_address": "", "outside": "OUTSIDE"}
HOST = {"loopback": "LOOPBACK", "host_address": "HOSTADDR", "outside": "OUTSIDE"}


def build(dockyard, tmp_path: Path, dockerfile: str, *args: str, check: bool = True):
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    result = dockyard(
        "build", "--no-cache", "--progress", "plain", *args, str(context), check=check
    )
    return result.stderr.decode()


# -- RUN steps ----------------------------------------------------------------------


@pytest.mark.parametrize("before", ["", "WORKDIR /w\n"], ids=["made-for-it", "made-ahead"])
def test_a_run_step_reaches_the_outside_but_not_the_host(dockyard, tmp_path, world, image, before):
    """Whether the network is made when the RUN step needs it, or ahead, in a thread,
    while the steps before it run."""
    log = build(dockyard, tmp_path, f"FROM {image}\n{before}RUN {probe(world)}\n")
    assert answers(log) == ISOLATED


def test_a_run_step_has_its_own_hostname(dockyard, tmp_path, world, image):
    dockerfile = f"FROM {image}\nRUN echo name=$(cat /proc/sys/kernel/hostname)\n"
    names = re.findall(r"(?m)\sname=(\S+)$", build(dockyard, tmp_path, dockerfile))
    assert len(names) == 1 and names[0] != os.uname().nodename


def test_the_host_network_is_an_explicit_choice(dockyard, tmp_path, world, image):
    log = build(dockyard, tmp_path, f"FROM {image}\nRUN {probe(world)}\n", "--network", "host")
    assert answers(log) == HOST


def test_no_network_is_loopback_only(dockyard, tmp_path, world, image):
    script = f"{probe(world)}; echo links=$(ls /sys/class/net | tr '\\n' ,)"
    log = build(dockyard, tmp_path, f"FROM {image}\nRUN {script}\n", "--network", "none")
    assert answers(log) == {"loopback": "", "host_address": "", "outside": ""}
    assert "links=lo," in log


def test_run_network_host_needs_the_network_host_entitlement(dockyard, tmp_path, world, image):
    dockerfile = f"FROM {image}\nRUN --network=host {probe(world)}\n"
    refused = build(dockyard, tmp_path, dockerfile, check=False)
    assert "Dockerfile:2" in refused and "network.host" in refused
    assert "LOOPBACK" not in refused
    allowed = build(dockyard, tmp_path, dockerfile, "--allow", "network.host")
    assert answers(allowed) == HOST


def test_run_network_none_and_default_in_one_build(dockyard, tmp_path, world, image):
    log = build(
        dockyard,
        tmp_path,
        f"FROM {image}\nRUN --network=none {probe(world)}\nRUN --network=default {probe(world)}\n",
    )
    first, second = log.split("--network=default", 1)
    assert answers(first)["outside"] == ""
    assert answers(second) == ISOLATED


def test_raw_sockets_cannot_bypass_the_routes(dockyard, tmp_path, world, image):
    """With CAP_NET_RAW a step could write frames to slirp4netns past the namespace's
    reject routes; it has no such capability on the NAT'd network."""
    script = "arping -c 1 -w 1 -I tap0 10.0.2.2 2>&1; grep CapEff /proc/self/status"
    log = build(dockyard, tmp_path, f"FROM {image}\nRUN {script}\n")
    assert "Operation not permitted" in log
    (effective,) = re.findall(r"(?m)^\s*CapEff:\s+([0-9a-f]+)$", log)
    assert not int(effective, 16) & (1 << 13)  # CAP_NET_RAW


# -- dockyard run -------------------------------------------------------------------


def run(dockyard, *args: str) -> str:
    return dockyard("run", "--rm", *args).stdout.decode()


def test_dockyard_run_reaches_the_outside_but_not_the_host(dockyard, world, image):
    assert answers(run(dockyard, image, "sh", "-c", probe(world))) == ISOLATED


def test_dockyard_run_with_the_host_network(dockyard, world, image):
    out = run(dockyard, "--network", "host", image, "sh", "-c", probe(world))
    assert answers(out) == HOST


def test_dockyard_run_with_no_network(dockyard, world, image):
    script = probe(world) + "; ls /sys/class/net"
    out = run(dockyard, "--network", "none", image, "sh", "-c", script)
    assert answers(out) == {"loopback": "", "host_address": "", "outside": ""}
    assert out.split()[-1] == "lo"


# -- a pipeline's build step --------------------------------------------------------


def pipeline(tmp_path: Path, build_fields: str, dockerfile: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    fields = f"tags: [localhost/net-test/built:1]{build_fields}"
    (project / ".dockyard.yml").write_text(f"steps:\n  - name: image\n    build: {{{fields}}}\n")
    (project / "Dockerfile").write_text(dockerfile)
    return project


def ci_run(dockyard, project: Path, *args: str):
    return dockyard("ci", "run", *args, str(project), check=False, timeout=300)


def test_a_pipeline_build_step_does_not_reach_the_host(dockyard, tmp_path, world, image):
    project = pipeline(tmp_path, "", f"FROM {image}\nRUN {probe(world)}\n")
    result = ci_run(dockyard, project)
    assert result.returncode == 0, result.stderr.decode()
    assert answers(result.stdout.decode()) == ISOLATED


def test_a_pipeline_build_gets_the_host_network_only_if_the_run_allows(
    dockyard, tmp_path, world, image
):
    project = pipeline(tmp_path, ", network: host", f"FROM {image}\nRUN {probe(world)}\n")
    refused = ci_run(dockyard, project)
    assert refused.returncode != 0
    assert "--allow-host-network" in refused.stderr.decode()
    assert "LOOPBACK" not in refused.stdout.decode()
    allowed = ci_run(dockyard, project, "--allow-host-network")
    assert allowed.returncode == 0, allowed.stderr.decode()
    assert answers(allowed.stdout.decode()) == HOST


def test_run_network_host_in_a_pipeline_build_needs_the_run_to_allow_it(
    dockyard, tmp_path, world, image
):
    project = pipeline(tmp_path, "", f"FROM {image}\nRUN --network=host {probe(world)}\n")
    refused = ci_run(dockyard, project)
    assert refused.returncode == 1
    assert "network.host" in refused.stdout.decode()
    assert "LOOPBACK" not in refused.stdout.decode()
    allowed = ci_run(dockyard, project, "--allow-host-network")
    assert allowed.returncode == 0, allowed.stderr.decode()
    assert answers(allowed.stdout.decode()) == HOST


def test_pipeline_steps_reach_services_and_the_outside_but_not_the_host(
    dockyard, tmp_path, world, image
):
    """Steps share the run's NAT'd namespace with its services; ``network: none`` is a
    step's own loopback, reaching neither the outside nor the services."""
    project = tmp_path / "project"
    (project / "www").mkdir(parents=True)
    (project / "www" / "index.html").write_text("SERVICE\n")
    script = json.dumps(probe(world))  # a YAML string
    (project / ".dockyard.yml").write_text(
        textwrap.dedent(
            f"""
            services:
              web:
                image: {image}
                command: [busybox, httpd, -f, -p, "8080", -h, /workspace/www]
                ready: {{tcp: 8080, timeout: 30s}}
            steps:
              - name: online
                image: {image}
                commands: [{script}, "echo web=$(wget -qO- http://web:8080/)"]
              - name: offline
                image: {image}
                network: none
                commands:
                  - {script}
                  - "echo web=$(wget -T 3 -qO- http://web:8080/ 2>/dev/null)"
                  - "echo links=$(ls /sys/class/net | tr '\\n' ,)"
            """
        )
    )
    result = ci_run(dockyard, project, "-j", "1")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    online = "\n".join(line for line in lines if line.startswith("online "))
    offline = "\n".join(line for line in lines if line.startswith("offline "))
    assert answers(online) == ISOLATED
    assert "web=SERVICE" in online
    assert answers(offline) == {"loopback": "", "host_address": "", "outside": ""}
    assert re.search(r"web=$", offline, re.M) and "links=lo," in offline


# -- what a killed dockyard leaves -------------------------------------------------


def _hold_a_network(pid_fd: int, ready_fd: int) -> None:
    network = NatNetwork()
    assert network._process is not None
    os.write(pid_fd, f"{network._process.pid}\n".encode())
    os.write(ready_fd, b"1")
    signal.pause()


def test_a_killed_dockyard_leaves_no_nat_process_running():
    need("slirp4netns")
    pid_r, pid_w = os.pipe()
    try:
        with killed_when_ready(_hold_a_network, pid_w):
            slirp = int(os.read(pid_r, 32))
            watch = os.pidfd_open(slirp)
            assert not select.select([watch], [], [], 0)[0]  # running while its owner lives
        assert select.select([watch], [], [], PATIENCE)[0], "slirp4netns outlived its owner"
        os.close(watch)
    finally:
        os.close(pid_r)
        os.close(pid_w)


# -- package downloads through the NAT ----------------------------------------------


@pytest.mark.slow
def test_apt_installs_through_the_nat_on_the_default_network(dockyard, tmp_path, debian_ref):
    """DNS through the NAT's resolver (forwarded to the host's) and downloads from the
    Debian mirror, as a real build needs them."""
    need("slirp4netns")
    dockerfile = (
        f"FROM {debian_ref}\n"
        "RUN grep -x 'nameserver 10.0.2.3' /etc/resolv.conf"
        " && apt-get update -q && apt-get install -y -q --no-install-recommends netbase"
        " && echo INSTALLED-$(dpkg-query -W -f '${Status}' netbase | tr ' ' -)\n"
    )
    log = build(dockyard, tmp_path, dockerfile)
    assert re.search(r"(?m)^\s*INSTALLED-install-ok-installed$", log), log


# -- the NAT's DNS forward ----------------------------------------------------------

NAT_IN_OWN_MOUNTS = """
import subprocess, sys
from dockyard.runtime.nat import NatNetwork
from dockyard.runtime.netns import create_netns, remove_netns
with NatNetwork() as network:
    print(subprocess.run(
        ["nsenter", "--net=" + network.path, sys.executable, "-c", sys.argv[1]],
        capture_output=True, text=True, timeout=30,
    ).stdout, end="")
"""

CONNECT = """
import socket
def tcp(address, port):
    try:
        with socket.create_connection((address, port), timeout=3) as s:
            return s.recv(64).decode().strip() or "connected"
    except OSError:
        return ""
print("dns=" + tcp("10.0.2.3", 53))
print("other_port=" + tcp("10.0.2.3", PORT))
print("gateway=" + tcp("10.0.2.2", PORT))
"""


def test_the_dns_forward_reaches_the_resolvers_port_53_and_no_other(tmp_path):
    """With a resolver on the host's loopback, as systemd-resolved's, 10.0.2.3 reaches
    its port 53, never another port of the host's loopback."""
    need("slirp4netns", "nsenter", "unshare")
    resolver, _ = _listen_on("127.0.0.2", 53, b"RESOLVER\n")
    other, other_at = _listen("127.0.0.2", b"LOOPBACK\n")
    port = other_at.split()[1]
    same_port, _ = _listen_on("127.0.0.1", int(port), b"LOOPBACK\n")  # where 10.0.2.2 leads
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 127.0.0.2\n")
    try:
        result = subprocess.run(
            [
                *(
                    "unshare",
                    "--mount",
                    "sh",
                    "-c",
                    'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                ),
                *(str(resolv_conf), sys.executable, "-c", NAT_IN_OWN_MOUNTS),
                CONNECT.replace("PORT", port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        for listener in (resolver, other, same_port):
            listener.close()
    found = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert found == {"dns": "RESOLVER", "other_port": "", "gateway": ""}


def test_a_steps_own_services_share_a_nat_network_with_it_alone(dockyard, tmp_path, world, image):
    """A step with services of its own gets a NAT'd network of its own: it reaches them
    and the outside, not the host, and not the run's services."""
    project = tmp_path / "project"
    (project / "www").mkdir(parents=True)
    (project / "www" / "index.html").write_text("OWN\n")
    script = json.dumps(probe(world))
    (project / ".dockyard.yml").write_text(
        textwrap.dedent(
            f"""
            services:
              web:
                image: {image}
                command: [busybox, httpd, -f, -p, "8081", -h, /workspace/www]
                ready: {{tcp: 8081, timeout: 30s}}
            steps:
              - name: own
                image: {image}
                services:
                  cache:
                    image: {image}
                    command: [busybox, httpd, -f, -p, "8080", -h, /workspace/www]
                    ready: {{tcp: 8080, timeout: 30s}}
                commands:
                  - {script}
                  - "echo cache=$(wget -qO- http://cache:8080/)"
                  - "echo web=$(wget -T 3 -qO- http://127.0.0.1:8081/ 2>/dev/null)"
              - {{name: shared, image: {image}, services: [web], commands: [true]}}
            """
        )
    )
    result = ci_run(dockyard, project, "-j", "1")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    own = "\n".join(line for line in result.stdout.decode().splitlines() if line.startswith("own "))
    assert answers(own) == ISOLATED
    assert "cache=OWN" in own
    assert re.search(r"web=$", own, re.M)  # the run's service is in another network
