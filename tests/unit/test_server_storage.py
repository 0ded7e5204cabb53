"""Storage, upload sessions, garbage collection, auth and bundles, without HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import time

import bcrypt
import pytest

from dockyard.errors import DigestError, DockyardError, ManifestError
from dockyard.oci import mediatypes as mt
from dockyard.registry.server import auth
from dockyard.registry.server.bundle import export, import_archive
from dockyard.registry.server.gc import collect
from dockyard.registry.server.storage import Storage
from tests.support.registry_server import sha256_of as sha


@pytest.fixture
def storage(tmp_path) -> Storage:
    s = Storage(tmp_path / "root")
    s.ensure()
    return s


def upload(storage: Storage, name: str, data: bytes) -> str:
    upload_id = storage.uploads.start(name)
    writer = storage.uploads.open(upload_id)
    writer.write(data)
    writer.finish(sha(data), storage)
    storage.link_blob(name, sha(data))
    return sha(data)


def put_image(storage: Storage, name: str, tag: str, layers: list[bytes]) -> str:
    config = json.dumps({"tag": tag}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": upload(storage, name, config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": mt.OCI_LAYER, "digest": upload(storage, name, b), "size": len(b)}
            for b in layers
        ],
    }
    return storage.put_manifest(name, json.dumps(doc).encode(), mt.OCI_MANIFEST, (tag,))


def test_upload_hash_state_and_restart(storage):
    data = os.urandom(100_000)
    upload_id = storage.uploads.start("a/b")
    writer = storage.uploads.open(upload_id)
    writer.write(data[:40_000])
    writer.close()
    fresh = Storage(storage.root)  # a restarted server: no hash state in memory
    writer = fresh.uploads.open(upload_id)
    assert writer.offset == 40_000
    writer.write(data[40_000:])
    assert writer.finish(sha(data), fresh)
    assert fresh.blobs.read_bytes(sha(data)) == data
    assert fresh.uploads.ids() == []


def test_wrong_digest_keeps_nothing(storage):
    upload_id = storage.uploads.start("a/b")
    writer = storage.uploads.open(upload_id)
    writer.write(b"content")
    with pytest.raises(DigestError):
        writer.finish(sha(b"other"), storage)
    assert list(storage.blobs) == [] and storage.uploads.ids() == []


def test_sha512_upload(storage):
    data = b"512"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    upload_id = storage.uploads.start("a/b")
    writer = storage.uploads.open(upload_id)
    writer.write(data)
    writer.finish(digest, storage)
    assert storage.blobs.has(digest)


def test_manifests_tags_repositories(storage):
    digest = put_image(storage, "team/app", "v1", [b"layer"])
    assert storage.resolve_tag("team/app", "v1") == digest
    assert storage.get_manifest("team/app", "v1").digest == digest
    assert storage.get_manifest("team/app", digest).media_type == mt.OCI_MANIFEST
    assert storage.get_manifest("other/app", digest) is None  # repository-scoped
    put_image(storage, "team/app/sub", "x", [b"l2"])
    assert storage.repositories() == ["team/app", "team/app/sub"]
    assert storage.tags("team/app") == ["v1"]
    other = put_image(storage, "team/app", "v2", [b"other layer"])
    storage.set_tag("team/app", "latest", digest)
    assert storage.tags_of("team/app", digest) == ["latest", "v1"]
    assert storage.delete_manifest("team/app", digest)
    assert storage.tags("team/app") == ["v2"] and storage.get_manifest("team/app", digest) is None
    assert storage.tags_of("team/app", other) == ["v2"]


def test_gc(storage):
    kept = put_image(storage, "gc/app", "1", [b"kept layer"])
    orphan = upload(storage, "gc/app", b"orphan")
    old = time.time() - 7200
    for digest in storage.blobs:
        os.utime(storage.blobs.path(digest), (old, old))
    young = upload(storage, "gc/app", b"young orphan")
    in_progress = storage.uploads.start("gc/app")
    storage.uploads.open(in_progress).write(b"partial")

    dry = collect(storage, dry_run=True)
    assert dry.removed == [orphan] and storage.blobs.has(orphan)
    result = collect(storage)
    assert result.removed == [orphan]
    assert young in result.kept_young
    assert not storage.blobs.has(orphan)
    assert storage.blobs.has(kept)
    assert in_progress in storage.uploads.ids()
    assert result.links_removed == 1  # gc/app's link to the orphan
    # a HEAD (touch) just before the sweep saves an old blob
    storage.delete_manifest("gc/app", kept)
    config = [d for d in storage.blobs if d != kept]
    for digest in storage.blobs:
        os.utime(storage.blobs.path(digest), (old, old))
    storage.touch_blob(config[0])
    result = collect(storage)
    assert storage.blobs.has(config[0]) and not storage.blobs.has(kept)
    assert collect(storage, upload_max_age=0).uploads_removed == [in_progress]


def test_htpasswd_bcrypt(tmp_path):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"# users\nalice:{hashed.replace('$2b$', '$2y$', 1)}\nbob:{hashed}\n")
    users = auth.Htpasswd(path)
    assert users.check("alice", "pw") and users.check("alice", "pw")  # second: remembered
    assert users.check("bob", "pw")
    assert not users.check("alice", "nope") and not users.check("carol", "pw")
    path.write_text("alice:{SHA}abc\n")
    with pytest.raises(auth.HtpasswdError):
        auth.Htpasswd(path)


def test_htpasswd_remembers_good_passwords_briefly(tmp_path):
    now = [0.0]
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    users = auth.Htpasswd(path, cache_ttl=60, clock=lambda: now[0])
    assert not users.remembered("alice", "pw")
    assert users.check("alice", "pw") and users.remembered("alice", "pw")
    assert not users.remembered("alice", "other") and not users.remembered("bob", "pw")
    now[0] = 61.0
    assert not users.remembered("alice", "pw")  # expired
    assert users.check("alice", "pw")
    path.write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n# x\n")
    assert not users.remembered("alice", "pw")  # a reload forgets
    assert users.broken is None


def test_tokens(tmp_path):
    issuer = auth.TokenIssuer(tmp_path / "key")
    requested = auth.parse_scope("repository:a/b:pull,push registry:catalog:*")
    granted = auth.grant(requested, "alice", anonymous_pull=False)
    token, _ = issuer.issue("alice", granted)
    checked = issuer.verify_user(token)
    assert checked is not None
    user, access = checked
    assert user == "alice"
    assert auth.allows(access, "repository", "a/b", "push")
    assert auth.allows(access, "registry", "catalog", "*")
    assert not auth.allows(access, "repository", "a/c", "pull")
    assert issuer.verify_user(token + "x") is None
    assert auth.TokenIssuer(tmp_path / "key").verify_user(token) == checked  # key persists
    assert auth.TokenIssuer(tmp_path / "other").verify_user(token) is None
    expired = auth.TokenIssuer(tmp_path / "key", ttl=-1).issue("alice", granted)[0]
    assert issuer.verify_user(expired) is None
    assert issuer.verify_user(issuer.issue("", [])[0]) == ("", [])  # an anonymous token
    anonymous = auth.grant(requested, None, anonymous_pull=True)
    assert anonymous == [auth.Access("repository", "a/b", frozenset({"pull"}))]
    assert auth.grant(requested, None, anonymous_pull=False) == []


def test_shared_token_key(tmp_path):
    """``auth.token_key``: replicas given one key file accept each other's tokens; a file
    others can read, a link, a short or missing key is refused, never replaced."""
    key = tmp_path / "token.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    token, _ = auth.TokenIssuer(key, create=False).issue("alice", [])
    assert auth.TokenIssuer(key, create=False).verify_user(token) == ("alice", [])
    assert auth.TokenIssuer(tmp_path / "own.key").verify_user(token) is None
    key.chmod(0o640)
    with pytest.raises(DockyardError, match="readable by other users"):
        auth.TokenIssuer(key, create=False)
    key.chmod(0o400)
    link = tmp_path / "link.key"
    link.symlink_to(key)
    with pytest.raises(DockyardError, match=r"link\.key"):
        auth.TokenIssuer(link, create=False)
    short = tmp_path / "short.key"
    short.write_text("abcd")
    short.chmod(0o600)
    with pytest.raises(DockyardError, match="at least 32 bytes"):
        auth.TokenIssuer(short, create=False)
    assert short.read_text() == "abcd"
    with pytest.raises(DockyardError, match=r"missing\.key"):
        auth.TokenIssuer(tmp_path / "missing.key", create=False)
    assert not (tmp_path / "missing.key").exists()


def test_bundle_round_trip(storage, tmp_path):
    digest = put_image(storage, "up/org/app", "1", [b"mirrored"])
    (storage.repo_dir("up/org/app") / "_upstream").write_text("quay.io/org/app")
    untagged = put_image(storage, "local/app", "tmp", [b"local"])
    storage.delete_tag("local/app", "tmp")
    upload(storage, "partial/app", b"x")  # a repository with no manifest: nothing to export
    out = tmp_path / "bundle.tar"
    done = export(storage, out)
    assert {(i.name, i.tag, i.digest) for i in done} == {
        ("quay.io/org/app", "1", digest),
        ("local/app", None, untagged),
    }
    target = Storage(tmp_path / "other")
    loaded = import_archive(target, out)
    assert {(i.repository, i.tag) for i in loaded} == {("up/org/app", "1"), ("local/app", None)}
    assert target.resolve_tag("up/org/app", "1") == digest
    assert target.has_manifest("local/app", untagged)
    assert (target.repo_dir("up/org/app") / "_upstream").read_text() == "quay.io/org/app"
    for d in storage.blobs:
        if d != sha(b"x"):
            assert target.blobs.read_bytes(d) == storage.blobs.read_bytes(d)


def _layout_from_archive(archive, directory) -> None:
    """The OCI layout directory an oci-archive holds (its members, unpacked)."""
    import tarfile

    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile():
                target = directory / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())


def test_bundle_import_of_a_layout_directory(storage, tmp_path):
    digest = put_image(storage, "team/app", "2", [b"layer one", b"layer two"])
    archive = tmp_path / "bundle.tar"
    export(storage, archive)
    layout = tmp_path / "layout"
    _layout_from_archive(archive, layout)
    assert (layout / "index.json").is_file() and not (layout / "index.json").is_symlink()

    target = Storage(tmp_path / "other")
    loaded = import_archive(target, layout)
    assert [(i.repository, i.tag, i.digest) for i in loaded] == [("team/app", "2", digest)]
    assert target.resolve_tag("team/app", "2") == digest
    for d in storage.blobs:
        assert target.blobs.read_bytes(d) == storage.blobs.read_bytes(d)


def test_bundle_import_of_a_layout_reads_nothing_outside_it(storage, tmp_path):
    """A layout whose blob is a symlink out of it (to a file with the right content, so
    only the confinement can refuse it) imports the image without that blob."""
    put_image(storage, "team/app", "2", [b"secret layer"])
    archive = tmp_path / "bundle.tar"
    export(storage, archive)
    layout = tmp_path / "layout"
    _layout_from_archive(archive, layout)
    layer = sha(b"secret layer")
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret layer")
    blob = layout / "blobs" / "sha256" / layer.split(":")[1]
    blob.unlink()
    blob.symlink_to(outside)

    target = Storage(tmp_path / "other")
    import_archive(target, layout)
    assert not target.blobs.has(layer)
    (layout / "index.json").unlink()
    (layout / "index.json").symlink_to(layout / ".." / "bundle.tar")
    with pytest.raises(DockyardError, match="is not an OCI layout"):
        import_archive(Storage(tmp_path / "third"), layout)


def test_bundle_import_reads_no_manifest_past_the_registry_limit(storage, tmp_path):
    digest = put_image(storage, "team/app", "2", [b"layer"])
    archive = tmp_path / "bundle.tar"
    export(storage, archive)
    layout = tmp_path / "layout"
    _layout_from_archive(archive, layout)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(bytes(5 << 20))
    with pytest.raises(ManifestError, match=f"manifest {digest} is over 4194304 bytes"):
        import_archive(Storage(tmp_path / "other"), layout)
