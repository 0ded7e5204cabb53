"""The /etc/hosts, /etc/resolv.conf and /etc/hostname a container gets."""

from __future__ import annotations

from dockyard.runtime import HOST, NONE, etcfiles


def test_hosts_in_an_own_network_namespace():
    text = etcfiles.hosts("box", NONE, {"web": "127.0.0.1", "db": "127.0.0.1"})
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "127.0.1.1\tbox" in lines
    assert lines[-2:] == ["127.0.0.1\tweb", "127.0.0.1\tdb"]


def test_hosts_with_the_host_network_start_from_the_hosts_file(monkeypatch):
    monkeypatch.setattr(etcfiles, "_read", lambda path: "10.0.0.1 gateway")
    assert etcfiles.hosts("box", HOST, {"svc": "127.0.0.1"}) == "10.0.0.1 gateway\n127.0.0.1\tsvc\n"


def test_resolv_conf_drops_loopback_name_servers_outside_the_host_network(monkeypatch):
    host = "search corp\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.1.1\noptions x\n"
    monkeypatch.setattr(etcfiles, "_read", lambda path: host)
    assert etcfiles.resolv_conf(HOST) == host
    assert etcfiles.resolv_conf(NONE) == "search corp\nnameserver 10.1.1.1\noptions x\n"
    assert etcfiles.resolv_conf("/run/netns/pod") == etcfiles.resolv_conf(NONE)


def test_resolv_conf_with_given_name_servers_keeps_only_the_hosts_search_and_options(
    monkeypatch,
):
    host = "search corp\nnameserver 127.0.0.53\nnameserver 10.1.1.1\noptions x"
    monkeypatch.setattr(etcfiles, "_read", lambda path: host)
    expected = "search corp\noptions x\nnameserver 10.0.2.3\n"
    assert etcfiles.resolv_conf("/proc/1/fd/3", ["10.0.2.3"]) == expected


def test_write_makes_the_three_files(tmp_path):
    etcfiles.write(tmp_path, "box", NONE, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(etcfiles.FILES)
    assert (tmp_path / "hostname").read_text() == "box\n"
