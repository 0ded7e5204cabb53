"""The image gate and disk accounting: ``dockyard check`` and ``dockyard df``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dockyard.cli.common import parse_platform, platform_option, settings, tls_option


@click.command()
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy file (YAML). Default: secrets are errors, a root user a warning.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "junit"]),
    default="text",
    show_default=True,
)
@platform_option
@tls_option
def check(
    images: tuple[str, ...],
    policy_file: Path | None,
    output_format: str,
    platform: str | None,
    tls_verify: bool | None,
) -> None:
    """Check each IMAGE against a policy; exit 1 if a rule of severity error fails.

    IMAGE is a store reference or any transport (docker://REF streams the layers from
    the registry without pulling them). Each finding names its rule, layer and path.
    """
    from dockyard.check import report
    from dockyard.check.image import open_image
    from dockyard.check.policy import DEFAULT_POLICY, load_policy
    from dockyard.check.run import check_image

    policy = load_policy(policy_file) if policy_file else DEFAULT_POLICY
    root = settings().root
    wanted = parse_platform(platform)

    def opener(name: str):
        return open_image(name, store_root=root, tls_verify=tls_verify, platform=wanted)

    results = [check_image(opener(name), policy, opener) for name in images]
    if output_format == "json":
        sys.stdout.write(report.as_json(results))
    elif output_format == "junit":
        sys.stdout.write(report.junit(results, policy.enabled()))
    else:
        sys.stdout.write(report.text(results))
    if any(result.failed for result in results):
        sys.exit(1)


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
def df(output_format: str) -> None:
    """Bytes the store uses per kind, and what `dockyard prune` could reclaim.

    Kinds: images (shared by several, or their own), unreferenced blobs, build cache, snapshots,
    cache mounts, pipeline runs and caches."""
    from dockyard.cli.common import open_store, print_json, print_table
    from dockyard.cli.tables import human_bytes
    from dockyard.disk.usage import KINDS, take_stock

    usage = take_stock(open_store())
    rows = []
    for kind in KINDS:
        items = usage.of(kind)
        rows.append(
            {
                "kind": kind,
                "items": len(items),
                "size": sum(item.size for item in items),
                "shared": sum(item.size for item in items if item.shared),
                "reclaimable": sum(item.size for item in items if item.reclaimable),
            }
        )
    if output_format == "json":
        print_json({"kinds": rows, "total": usage.total})
        return
    table = [("KIND", "ITEMS", "SIZE", "SHARED", "UNIQUE", "RECLAIMABLE")]
    for kind in KINDS:
        items = usage.of(kind)
        size = sum(item.size for item in items)
        shared = sum(item.size for item in items if item.shared)
        table.append(
            (
                kind,
                str(len(items)),
                human_bytes(size),
                human_bytes(shared),
                human_bytes(size - shared),
                human_bytes(sum(item.size for item in items if item.reclaimable)),
            )
        )
    table.append(("total", str(len(usage.items)), human_bytes(usage.total), "", "", ""))
    print_table(table)
