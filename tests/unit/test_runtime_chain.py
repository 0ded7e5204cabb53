"""Chain IDs (OCI image spec) and overlay mount options for many layers."""

from __future__ import annotations

import hashlib

import pytest

from dockyard.errors import DigestError
from dockyard.runtime import chain_id, chain_ids
from dockyard.runtime.mounts import PAGE_SIZE, overlay_options

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def test_chain_ids_follow_the_oci_definition():
    ab = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {C}".encode()).hexdigest()
    assert chain_ids([A, B, C]) == [A, ab, abc]
    assert chain_id(None, A) == A
    assert chain_id(ab, C) == abc
    assert chain_ids([]) == []


def test_chain_ids_depend_on_order_and_validate():
    assert chain_ids([A, B])[-1] != chain_ids([B, A])[-1]
    with pytest.raises(DigestError):
        chain_ids([A, "sha256:nothex"])


def test_overlay_options():
    assert overlay_options(["/l2", "/l1"], "/u", "/w") == (
        "lowerdir=/l2:/l1,upperdir=/u,workdir=/w,index=off,redirect_dir=off,metacopy=off,volatile"
    )


def test_plain_paths_of_many_layers_overflow_a_page_but_fd_names_fit():
    store = "/var/lib/dockyard/snapshots/"
    lowers = [store + hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
    assert len(overlay_options(lowers, "/u", "/w")) > PAGE_SIZE
    names = [f"/proc/self/fd/{fd}" for fd in range(100, 302)]
    assert len(overlay_options(names[:200], names[200], names[201])) < PAGE_SIZE
