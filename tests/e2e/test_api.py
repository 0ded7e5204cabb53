"""The library's verbs against a real registry and runc: pull, push, build with its
outputs, run and prune, called as a user of ``import dockyard`` would."""

from __future__ import annotations

import pytest

import dockyard
from dockyard.containers.catalog import Catalog
from dockyard.reference import parse
from tests.conftest import need

pytestmark = pytest.mark.e2e


def test_pull_then_push_elsewhere_in_the_registry(store_root, busybox_ref, docker_registry):
    pulled = dockyard.pull(busybox_ref, store=store_root)
    store = dockyard.Store(store_root)
    assert store.resolve(parse(busybox_ref)).digest == pulled.digest
    target = f"{docker_registry.host}/api/pushed:1"
    pushed = dockyard.push(busybox_ref, target, store=store)
    remote = dockyard.open_source(f"docker://{target}")
    assert dockyard.parse_location(f"docker://{target}").ref == parse(target)
    assert remote.root_manifest().data == pushed.manifest.data
    with pytest.raises(dockyard.RegistryError):
        dockyard.pull(f"{docker_registry.host}/api/never-pushed:1", store=store)


def test_build_sends_its_image_to_every_output(store_root, busybox_ref, docker_registry, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {busybox_ref}\nCOPY hello.txt /hello.txt\n")
    (context / "hello.txt").write_text("hello\n")
    tag = f"{docker_registry.host}/api/built:1"
    archive, rootfs = tmp_path / "app.tar", tmp_path / "rootfs"
    lines: list[str] = []
    result = dockyard.build(
        context,
        store=store_root,
        tags=[tag],
        push=True,
        outputs=[dockyard.Output("oci-archive", archive), dockyard.Output("local", rootfs)],
        log=lines.append,
    )
    assert result.executed == 1 and any("COPY hello.txt" in line for line in lines)
    assert (rootfs / "hello.txt").read_text() == "hello\n"
    assert (rootfs / "bin" / "busybox").is_file()
    in_archive = dockyard.open_source(f"oci-archive:{archive}:1").root_manifest()
    assert in_archive.data == result.manifest.raw  # built as OCI: nothing to convert
    pushed = dockyard.open_source(f"docker://{tag}").root_manifest()
    assert pushed.data == result.manifest.raw


def test_run_keeps_a_working_container_until_prune_takes_it(store_root, busybox_ref, capfd):
    need("runc")
    created: list[str] = []
    result = dockyard.run(
        busybox_ref,
        ["sh", "-c", "echo made > /made; echo hi; exit 3"],
        store=store_root,
        network="none",
        on_created=created.append,
    )
    assert (result.exit_code, [result.name]) == (3, created)
    assert capfd.readouterr().out == "hi\n"
    store = dockyard.Store(store_root)
    container = Catalog(store).get(created[0])
    assert container.record.exit_code == 3
    assert (container.upper / "made").read_text() == "made\n"

    scratch = dockyard.run(busybox_ref, ["cat", "/made"], store=store, remove=True, network="none")
    assert (scratch.exit_code, scratch.name) == (1, None)  # its own rootfs: no /made
    assert [c.name for c in Catalog(store).list()] == created

    store.untag(parse(busybox_ref))
    kept = dockyard.prune(store)  # the container pins its image
    assert kept.report.removed["blobs"] == [] and Catalog(store).list() != []
    summary = dockyard.prune(store, dockyard.PrunePolicy(containers=True))
    assert [item.name for item in summary.report.removed["containers"]] == created
    assert summary.report.removed["blobs"] and Catalog(store).list() == []
