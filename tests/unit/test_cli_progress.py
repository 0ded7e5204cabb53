"""The terminal progress display: bars redrawn in place, a final state per blob."""

import io

from dockyard.cli.progress import PlainProgress, TerminalProgress
from dockyard.cli.tables import human_bytes
from dockyard.oci.descriptor import Descriptor

LAYER = Descriptor(
    media_type="application/vnd.oci.image.layer.v1.tar+gzip",
    digest="sha256:" + "ab" * 32,
    size=2_000_000,
)
CONFIG = Descriptor(
    media_type="application/vnd.oci.image.config.v1+json",
    digest="sha256:" + "cd" * 32,
    size=500,
)


def test_human_bytes_uses_decimal_units():
    assert human_bytes(999) == "999 B"
    assert human_bytes(1500) == "1.5 kB"
    assert human_bytes(60_000_000) == "60.0 MB"
    assert human_bytes(3_200_000_000_000) == "3200.0 GB"


def test_bars_are_redrawn_in_place():
    out = io.StringIO()
    bars = TerminalProgress(out)
    bars.blob_started(LAYER)
    bars.blob_advanced(LAYER, 1_000_000)
    bars.redraw()
    first = out.getvalue()
    assert first.count("\n") == 1
    assert "abababababab [" in first and "1.0 MB/2.0 MB" in first
    assert "\x1b[" not in first.split("\x1b[2K", 1)[0]  # nothing to move over yet

    bars.blob_finished(CONFIG, skipped=True)
    bars.blob_finished(LAYER, skipped=False)
    bars.redraw()
    second = out.getvalue()[len(first) :]
    assert second.startswith("\x1b[1F")  # back over the one line drawn before
    assert "abababababab done" in second
    assert "cdcdcdcdcdcd exists" in second
    assert second.count("\n") == 2


def test_context_draws_the_final_state_on_exit():
    out = io.StringIO()
    with TerminalProgress(out) as bars:
        bars.blob_finished(LAYER, skipped=False)
    assert out.getvalue().rstrip().endswith("abababababab done     2.0 MB")


def test_plain_progress_prints_one_line_per_finished_blob():
    out = io.StringIO()
    lines = PlainProgress(out)
    lines.blob_started(LAYER)
    lines.blob_advanced(LAYER, 10)
    assert out.getvalue() == ""
    lines.blob_finished(LAYER, skipped=True)
    assert out.getvalue() == f"blob abababababab {2_000_000:>12} bytes  exists\n"
