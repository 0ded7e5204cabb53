"""A client naming the upstream (containerd's ``?ns=HOST``) picks where the mirror
connects and what it caches. It must not: reach a host the operator did not allow,
write into the caches with a push, spend the server's own registry logins on a host it
named, or -- with a host it controls that claims every blob -- read a blob the registry
holds for another repository (issue 10: a blob is readable through a repository only
if linked there)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.support.registry_server import FakeRegistry, fake_image, sha256_of, start_server

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_host_not_allowed_is_refused_without_contact(tmp_path):
    manifest, blobs = fake_image(b"layer")
    fake = FakeRegistry({"org/app": ("1", manifest, blobs)})
    server = start_server(tmp_path / "mirror", "--allow-upstream", "registry.example")
    try:
        with httpx.Client(base_url=server.url) as c:
            for path in ("/v2/org/app/manifests/1", f"/v2/org/app/blobs/{next(iter(blobs))}"):
                r = c.get(path, params={"ns": fake.host})
                assert r.status_code == 403, r.text
                assert r.json()["errors"][0]["code"] == "DENIED"
            # nor by the cache's own name
            r = c.get(f"/v2/ns/{fake.host.replace(':', '_')}/org/app/manifests/1")
            assert r.status_code in (400, 404)
        assert fake.requests == []
    finally:
        server.stop()
        fake.close()


def test_no_push_into_the_caches(tmp_path):
    """Not into an allowed host's cache, nor one a host allowed later would use."""
    server = start_server(tmp_path / "mirror", "--allow-upstream", "ghcr.io")
    data = b"poison"
    try:
        with httpx.Client(base_url=server.url) as c:
            for name, params in (
                ("ns/ghcr.io/org/app", {}),
                ("ns/quay.io/org/app", {}),
                ("org/app", {"ns": "ghcr.io"}),
            ):
                r = c.post(
                    f"/v2/{name}/blobs/uploads/",
                    params={**params, "digest": sha256_of(data)},
                    content=data,
                )
                assert r.status_code in (400, 405), (name, r.text)
                r = c.put(
                    f"/v2/{name}/manifests/1",
                    params=params,
                    content=b"{}",
                    headers={"Content-Type": OCI_MANIFEST},
                )
                assert r.status_code in (400, 405), (name, r.text)
        assert not (server.root / "repos" / "ns").exists()
        assert not (server.root / "blobs" / "sha256" / sha256_of(data)[7:]).exists()
    finally:
        server.stop()


def test_lying_named_upstream_cannot_read_another_repositorys_blob(tmp_path):
    """The host the client names says it has every blob: the private blob's bytes are
    never served through its cache, never linked there, and stay intact."""
    secret = b"private layer of another team" * 100
    digest = sha256_of(secret)
    liar = FakeRegistry(lie_about_blobs=True)
    server = start_server(tmp_path / "mirror", "--allow-upstream", liar.host)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/v2/private/app/blobs/uploads/", params={"digest": digest}, content=secret)
            assert r.status_code == 201
            cache = f"ns/{liar.host.replace(':', '_')}/stolen"
            for path, params in (
                ("/v2/stolen/blobs/", {"ns": liar.host}),
                (f"/v2/{cache}/blobs/", {}),
            ):
                try:
                    r = c.get(path + digest, params=params)
                    got = r.content
                except httpx.HTTPError:  # cut off: never a complete answer
                    got = b""
                assert secret not in got
                assert r.status_code != 200 or len(got) < len(secret)
            assert any(m == "GET" for m, _, _ in liar.requests)  # it had to send bytes
            link = server.root / "repos" / cache / "_layers" / "sha256" / digest[7:]
            assert not link.exists()
            assert (server.root / "blobs" / "sha256" / digest[7:]).read_bytes() == secret
    finally:
        server.stop()
        liar.close()


def test_any_host_cannot_reach_the_registry_hosts_own_networks(tmp_path):
    """``--allow-upstream '*'`` lets a client name any host, not a service only the
    registry can reach: loopback (by address or by a name resolving there), link-local
    (cloud metadata), private and the host's own addresses are refused (403) before a
    byte is sent. The operator may still allow such a host by name."""
    manifest, blobs = fake_image(b"internal service")
    fake = FakeRegistry({"org/app": ("1", manifest, blobs)})
    port = fake.host.rsplit(":", 1)[1]
    own = ["10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"]
    server = start_server(tmp_path / "mirror", "--allow-upstream", "*")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for host in (fake.host, f"localhost:{port}", *own):
                for path in ("/v2/org/app/manifests/1", f"/v2/org/app/blobs/{next(iter(blobs))}"):
                    r = c.get(path, params={"ns": host})
                    assert r.status_code == 403, (host, r.text)
                    assert r.json()["errors"][0]["code"] == "DENIED"
                r = c.get(f"/v2/ns/{host.replace(':', '_')}/org/app/manifests/1")
                assert r.status_code == 403, (host, r.text)
        assert fake.requests == []
    finally:
        server.stop()
    named = start_server(tmp_path / "named", "--allow-upstream", "*", "--allow-upstream", fake.host)
    try:
        r = httpx.get(f"{named.url}/v2/org/app/manifests/1", params={"ns": fake.host})
        assert r.status_code == 200 and r.content == manifest
    finally:
        named.stop()
        fake.close()


def test_named_upstream_gets_no_credentials(tmp_path):
    """The server's own login for a host is used for an upstream the operator configured,
    never for the same host named by a client."""
    manifest, blobs = fake_image(b"layer")
    fake = FakeRegistry({"org/app": ("1", manifest, blobs)}, basic_auth=True)
    auth_file = tmp_path / "auth.json"
    token = base64.b64encode(b"robot:server-password").decode()
    auth_file.write_text(json.dumps({"auths": {fake.host: {"auth": token}}}))
    env = {"REGISTRY_AUTH_FILE": str(auth_file)}
    named = start_server(tmp_path / "named", "--allow-upstream", fake.host, env=env)
    try:
        r = httpx.get(f"{named.url}/v2/org/app/manifests/1", params={"ns": fake.host})
        assert r.status_code == 404  # the upstream wants a login: unknown here
        assert fake.requests and all(auth is None for _, _, auth in fake.requests)
    finally:
        named.stop()
    configured = start_server(tmp_path / "conf", "--upstream", f"up=http://{fake.host}", env=env)
    try:
        r = httpx.get(f"{configured.url}/v2/up/org/app/manifests/1")
        assert r.status_code == 200
        assert f"Basic {token}" in {auth for _, _, auth in fake.requests}
    finally:
        configured.stop()
        fake.close()
