"""Push and pull of a 240 MB image (4 x 60 MB incompressible layers) against
docker-registry: dockyard vs skopeo, same source, same registry kind, same run.

Goal (issue 2): push and pull each <= 0.8x skopeo's wall time.
Run as root: ``python3 bench/bench_transfer.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
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
    timed,
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

        # Push: a fresh registry for every run, so nothing is skipped or mounted.
        def push_with(argv_of):
            def action():
                with docker_registry() as host:
                    forget_skopeo_blob_cache()
                    run(*argv_of(host), env=env)

            return action

        # Registry start-up is inside the timed action for both tools alike; measure
        # it alone and subtract it.
        def registry_only():
            with docker_registry():
                pass

        startup = timed(registry_only, repeat=args.repeat)
        ours = timed(
            push_with(lambda h: [DOCKYARD, "push", "--progress=quiet", name, f"{h}/b/ours:1"]),
            repeat=args.repeat,
        )
        peer = timed(
            push_with(
                lambda h: [
                    "skopeo",
                    "copy",
                    "-q",
                    "--dest-tls-verify=false",
                    f"oci:{store}:{name}",
                    f"docker://{h}/b/peer:1",
                ]
            ),
            repeat=args.repeat,
        )
        rows.append(("push 4x60 MB", ours - startup, peer - startup))

        # Pull: one registry holding the image; each run into an empty destination.
        with docker_registry() as host:
            run(DOCKYARD, "push", "--progress=quiet", name, f"{host}/b/img:1", env=env)
            ours = timed(
                lambda: run(DOCKYARD, "pull", "-q", f"{host}/b/img:1", env=pull_env),
                prepare=lambda: reset_dir(pull_store),
                repeat=args.repeat,
            )
            peer = timed(
                lambda: run(
                    "skopeo",
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    f"docker://{host}/b/img:1",
                    f"oci:{skopeo_dir}:img",
                ),
                prepare=lambda: (reset_dir(skopeo_dir), forget_skopeo_blob_cache()),
                repeat=args.repeat,
            )
            rows.append(("pull 4x60 MB", ours, peer))
        report("Registry transfer (median wall time; peer = skopeo)", rows, goal=0.8)


if __name__ == "__main__":
    main()
