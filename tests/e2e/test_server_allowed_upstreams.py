"""Pull-through for hosts the operator allowed rather than configured: containerd's
``?ns=HOST`` with ``registry serve --allow-upstream HOST`` (or ``*``), against fake
upstream registries on loopback. Refusals and attacks are in
tests/security/test_registry_upstreams.py."""

from __future__ import annotations

import httpx
import pytest

from tests.support.registry_server import FakeRegistry, fake_image, sha256_of, start_server

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def cache_name(host: str, repo: str) -> str:
    return f"ns/{host.replace(':', '_')}/{repo}"


def test_allowed_host_is_pulled_through_and_cached(tmp_path):
    manifest, blobs = fake_image(b"allowed layer" * 1000)
    named = FakeRegistry({"org/app": ("1", manifest, blobs)})
    other_manifest, other_blobs = fake_image(b"configured layer" * 1000)
    configured = FakeRegistry({"team/tool": ("2", other_manifest, other_blobs)})
    server = start_server(
        tmp_path / "mirror",
        "--upstream",
        f"conf=http://{configured.host}",
        "--allow-upstream",
        named.host,
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            ns = {"ns": named.host}
            r = c.get("/v2/org/app/manifests/1", params=ns, headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200, r.text
            assert r.headers["docker-content-digest"] == sha256_of(manifest)
            assert r.content == manifest
            for digest, data in blobs.items():
                r = c.get(f"/v2/org/app/blobs/{digest}", params=ns)
                assert r.status_code == 200 and r.content == data
            # the configured upstream is still found by its host
            r = c.get("/v2/team/tool/manifests/2", params={"ns": configured.host})
            assert r.status_code == 200 and r.content == other_manifest

            local = cache_name(named.host, "org/app")
            marker = server.root / "repos" / local / "_upstream"
            assert marker.read_text() == f"{named.host}/org/app"
            assert local in c.get("/v2/_catalog").json()["repositories"]

            # the upstream goes away: everything fetched is served from the cache, by
            # ?ns= and by the cache's own name
            named.close()
            asked = len(named.requests)
            digest = sha256_of(manifest)
            for path, params in (("/v2/org/app", ns), (f"/v2/{local}", {})):
                r = c.get(f"{path}/manifests/{digest}", params=params)
                assert r.status_code == 200 and r.content == manifest
                r = c.get(f"{path}/manifests/1", params=params)  # within the tag TTL
                assert r.status_code == 200 and r.content == manifest
                for blob, data in blobs.items():
                    r = c.get(f"{path}/blobs/{blob}", params=params)
                    assert r.status_code == 200 and r.content == data
            assert len(named.requests) == asked
    finally:
        server.stop()
        configured.close()
        named.close()


def test_any_host_with_star(tmp_path):
    """Beside ``*``, a host on the registry's own networks (this loopback fake) must be
    named to be reached (tests/security/test_registry_upstreams.py)."""
    manifest, blobs = fake_image(b"any host" * 500)
    fake = FakeRegistry({"lib/x": ("v", manifest, blobs)})
    server = start_server(
        tmp_path / "mirror", "--allow-upstream", "*", "--allow-upstream", fake.host
    )
    try:
        r = httpx.get(
            f"{server.url}/v2/lib/x/manifests/v",
            params={"ns": fake.host},
            headers={"Accept": OCI_MANIFEST},
        )
        assert r.status_code == 200 and r.content == manifest
        assert (server.root / "repos" / cache_name(fake.host, "lib/x") / "_upstream").is_file()
        assert any(path == "/v2/lib/x/manifests/v" for _, path, _ in fake.requests)
    finally:
        server.stop()
        fake.close()
