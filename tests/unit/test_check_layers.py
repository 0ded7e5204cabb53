"""``dockyard inspect --layers`` and ``dockyard diff`` on hand-made images: files
added, changed and deleted per layer, wasted bytes and efficiency, the SVG, and the
paths two images differ by."""

from __future__ import annotations

import json
import tarfile
from xml.etree import ElementTree

from dockyard.check.diff import diff_images
from dockyard.check.image import open_image
from dockyard.check.layers import analyse
from tests.conftest import Dockyard
from tests.unit.check_images import F, d, layer, store_image, whiteout

OPAQUE = F("/data/.wh..wh..opq")


def image_layers():
    return [
        layer(
            d("/data"),
            F("/data/big", bytes(1000)),
            F("/data/keep", b"k" * 10),
            F("/data/old", b"o" * 50),
            F("/etc-file", b"1" * 5),
        ),
        layer(F("/data/big", bytes(400)), whiteout("/etc-file"), F("/new", b"n" * 7)),
        layer(OPAQUE, d("/data"), F("/data/fresh", b"f" * 3)),
    ]


def test_layer_report_counts_added_changed_deleted_and_waste(store_root):
    name = store_image(
        store_root,
        "localhost/t/layers:1",
        image_layers(),
        history=["ADD base", "RUN shrink", "RUN reset /data"],
    )
    report = analyse(open_image(name, store_root=store_root))
    rows = [(r.added, r.changed, r.deleted, r.file_bytes, r.wasted) for r in report.layers]
    assert rows == [
        (4, 0, 0, 1065, 1065),  # everything it has is overwritten or deleted later
        (1, 1, 1, 407, 400),  # /etc-file deleted; its /data/big hidden by the opaque dir
        (1, 0, 3, 3, 0),  # the opaque /data hides big, keep, old
    ]
    assert report.total == 1475 and report.wasted == 1465
    assert round(report.efficiency, 4) == round(10 / 1475, 4)
    assert report.largest == [("/new", 7, 2), ("/data/fresh", 3, 3)]
    assert report.layers[1].layer.created_by == "RUN shrink"
    assert report.layers[0].uncompressed == len(image_layers()[0])


def test_opaque_dir_keeps_what_its_own_layer_adds_before_the_marker(store_root):
    tars = [layer(d("/x"), F("/x/a", b"1")), layer(d("/x"), F("/x/b", b"22"), F("/x/.wh..wh..opq"))]
    report = analyse(
        open_image(store_image(store_root, "localhost/t/op:1", tars), store_root=store_root)
    )
    assert report.largest == [("/x/b", 2, 2)]
    assert report.wasted == 1


def test_cli_json_text_and_svg(store_root, tmp_path):
    name = store_image(store_root, "localhost/t/layers:2", image_layers())
    dockyard = Dockyard(store_root)
    svg = tmp_path / "layers.svg"
    doc = json.loads(
        dockyard("inspect", "--layers", "--format", "json", "--svg", str(svg), name).stdout
    )
    assert [layer["wasted_bytes"] for layer in doc["layers"]] == [1065, 400, 0]
    assert doc["efficiency"] == round(10 / 1475, 4)
    tree = ElementTree.parse(svg)
    rects = tree.getroot().findall("{http://www.w3.org/2000/svg}g/{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 6  # kept and wasted for each of 3 layers
    assert float(rects[1].get("width")) > 0 and float(rects[0].get("width")) == 0  # layer 1
    text = dockyard("inspect", "--layers", name).stdout.decode().splitlines()
    assert text[0] == f"{name}: 3 layers, 1.5 kB of files, 1.5 kB wasted, efficiency 0.7%"
    assert text[1].split() == [
        "LAYER",
        "COMPRESSED",
        "UNCOMPRESSED",
        "ADDED",
        "CHANGED",
        "DELETED",
        "WASTED",
        "CREATED",
        "BY",
    ]
    bad = dockyard("inspect", "--svg", str(svg), name, check=False)
    assert bad.returncode != 0 and b"--layers" in bad.stderr


def test_diff_lists_added_removed_changed(store_root):
    one = store_image(store_root, "localhost/t/diff:1", image_layers())
    two = store_image(
        store_root,
        "localhost/t/diff:2",
        [
            *image_layers(),
            layer(F("/new", b"N" * 7), F("/link", kind=tarfile.SYMTYPE, link="/new")),
            layer(whiteout("/data")),
        ],
    )
    result = diff_images(*(open_image(n, store_root=store_root) for n in (one, two)))
    assert result.added == ["/link"]
    assert result.removed == ["/data", "/data/fresh"]
    assert result.changed == [("/new", "content")]
    text = Dockyard(store_root)("diff", one, two).stdout.decode().splitlines()
    assert text == ["A /link", "D /data", "D /data/fresh", "C /new (content)"]


def test_diff_mode_owner_and_kind(store_root):
    one = store_image(store_root, "localhost/t/m:1", [layer(F("/a", b"1"), F("/b", b"2"), d("/c"))])
    two = store_image(
        store_root,
        "localhost/t/m:2",
        [layer(F("/a", b"1", mode=0o755), F("/b", b"2", uid=1000), F("/c", b""))],
    )
    result = diff_images(*(open_image(n, store_root=store_root) for n in (one, two)))
    assert result.changed == [
        ("/a", "mode 0644 -> 0755"),
        ("/b", "owner 0:0 -> 1000:0"),
        ("/c", "dir -> file"),
    ]


def test_a_hardlink_to_a_dot_file_keeps_its_name():
    """A link target is normalised as member names are: ``./.bashrc`` is ``/.bashrc``."""
    import io

    from dockyard.layers.walk import HARDLINK, walk_layer

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as tar:
        target = tarfile.TarInfo("./.bashrc")
        target.size = 3
        tar.addfile(target, io.BytesIO(b"hi\n"))
        link = tarfile.TarInfo("./home/.profile")
        link.type, link.linkname = tarfile.LNKTYPE, "./.bashrc"
        tar.addfile(link)
    entries = []
    walk_layer(io.BytesIO(data.getvalue()), entries.append)
    links = [(e.path, e.linkname) for e in entries if e.kind == HARDLINK]
    assert links == [("/home/.profile", "/.bashrc")]
