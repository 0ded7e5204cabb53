"""Push and pull of a 240 MB image (4 x 60 MB incompressible layers) against
docker-registry: dockyard vs skopeo, same source, same registry kind, same run.

Goals (issue 15): push <= 0.6x and pull <= 0.5x skopeo's wall time. The two tools run
alternately, so both see the same load on a shared machine.
Run as root: ``python3 bench/bench_transfer.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from pathlib import Path

from common import (
    DOCKYARD,
    docker_registry,
    dockyard_env,
    forget_skopeo_blob_cache,
    report,
    reset_dir,
    run,
    scratch_dir,
    timed_pair,
)

LAYERS = 4
LAYER_MB = 60


def make_image(work: Path, store: Path, name: str) -> None:
    """An image of LAYERS layers, each one file of random bytes, imported into ``store``."""
    from dockyard import reference
    from dockyard.layers import pack
    from dockyard.oci import manifest as manifests
    from dockyard.oci import mediatypes as mt
    from dockyard.oci.descriptor import Descriptor
    from dockyard.oci.home import RawManifest
    from dockyard.store import Store

    target = Store(store)
    layers, diff_ids = [], []
    for i in range(LAYERS):
        layer_dir = work / f"layer{i}"
        layer_dir.mkdir()
        with open(layer_dir / f"data{i}.bin", "wb") as f:
            for _ in range(LAYER_MB):
                f.write(os.urandom(1 << 20))
        with target.blobs.ingest() as blob:
            packed = pack(layer_dir, blob.file)
            blob.commit(packed.digest)
        layers.append(packed.descriptor())
        diff_ids.append(packed.diff_id)
    config = manifests.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    )
    target.blobs.write_bytes(config)
    manifest = manifests.build_manifest(Descriptor.of_bytes(mt.OCI_CONFIG, config), layers)
    destination = target.destination(reference.parse(name))
    destination.put_manifest(RawManifest(manifest.raw, manifest.media_type), root=True)
    destination.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with scratch_dir("transfer-") as tmp:
        work = Path(tmp)
        store = work / "store"
        name = "bench.local/big:1"
        make_image(work, store, name)
        env = dockyard_env(store, work / "pyc")
        pull_store = work / "pull-store"
        pull_env = dockyard_env(pull_store, work / "pyc")
        skopeo_dir = work / "skopeo-oci"
        rows = []

        # Push: a fresh registry for every run (started untimed), so nothing is skipped
        # or mounted.
        registries = ExitStack()
        host = ""

        def fresh_registry() -> None:
            nonlocal host
            registries.close()
            host = registries.enter_context(docker_registry())
            forget_skopeo_blob_cache()

        with registries:
            ours, peer, spread = timed_pair(
                lambda: run(
                    DOCKYARD, "push", "--progress=quiet", name, f"{host}/b/ours:1", env=env
                ),
                lambda: run(
                    "skopeo",
                    "copy",
                    "-q",
                    "--dest-tls-verify=false",
                    f"oci:{store}:{name}",
                    f"docker://{host}/b/peer:1",
                ),
                prepare=fresh_registry,
                repeat=args.repeat,
            )
        rows.append(("push 4x60 MB", ours, peer, spread, 0.6))

        # Pull: one registry holding the image; each run into an empty destination.
        with docker_registry() as source:
            run(DOCKYARD, "push", "--progress=quiet", name, f"{source}/b/img:1", env=env)

            def prepare() -> None:
                reset_dir(pull_store)
                reset_dir(skopeo_dir)
                forget_skopeo_blob_cache()

            ours, peer, spread = timed_pair(
                lambda: run(DOCKYARD, "pull", "-q", f"{source}/b/img:1", env=pull_env),
                lambda: run(
                    "skopeo",
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    f"docker://{source}/b/img:1",
                    f"oci:{skopeo_dir}:img",
                ),
                prepare=prepare,
                repeat=args.repeat,
            )
            rows.append(("pull 4x60 MB", ours, peer, spread, 0.5))
        report("Registry transfer (median wall time; peer = skopeo)", rows)


if __name__ == "__main__":
    main()
