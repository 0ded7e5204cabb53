"""The layer size limits: parsing them, and the meter that enforces them."""

from __future__ import annotations

import io

import pytest

from dockyard.errors import DockyardError
from dockyard.layers.limits import (
    DEFAULT_SIZE,
    DEFAULT_WRITE,
    SIZE_VAR,
    WRITE_VAR,
    LayerTooLarge,
    Limits,
    Meter,
    MeteredReader,
    format_size,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("64G", 64 << 30),
        ("64g", 64 << 30),
        ("512MiB", 512 << 20),
        (" 2 TB ", 2 << 40),
        ("10K", 10 << 10),
        ("none", None),
        ("None", None),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text, "X") == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5G", "64X", "lots", "G"])
def test_parse_size_refuses_anything_else_naming_the_variable(text):
    with pytest.raises(DockyardError, match=f"^X={text!r}: expected a size such as 64G, or none$"):
        parse_size(text, "X")


def test_format_size():
    assert format_size(100) == "100 bytes"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(64 << 20) == "64 MiB"
    assert format_size(32 << 30) == "32 GiB"


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.delenv(SIZE_VAR, raising=False)
    monkeypatch.delenv(WRITE_VAR, raising=False)
    assert Limits.from_env() == Limits(DEFAULT_SIZE, DEFAULT_WRITE)
    assert DEFAULT_WRITE <= DEFAULT_SIZE
    monkeypatch.setenv(SIZE_VAR, "none")
    monkeypatch.setenv(WRITE_VAR, "1G")
    assert Limits.from_env() == Limits(None, 1 << 30)


def test_the_meter_allows_up_to_the_limit_and_not_a_byte_more():
    meter = Meter(Limits(size=100, write=10))
    meter.expand(100)
    meter.write(10)
    with pytest.raises(LayerTooLarge, match=r"^expands to more than 100 bytes \(limit \$DOCK"):
        meter.expand(1)
    with pytest.raises(LayerTooLarge, match=r"^writes more than 10 bytes to disk \(limit \$"):
        meter.write(1)
    unlimited = Meter(Limits(None, None))
    unlimited.expand(1 << 50)
    unlimited.write(1 << 50)


def test_the_metered_reader_counts_what_it_reads_and_stops_at_the_limit():
    meter = Meter(Limits(size=5000, write=None))
    reader = MeteredReader(io.BytesIO(bytes(4000)), meter)
    assert len(reader.read(1000)) == 1000
    assert len(reader.read()) == 3000
    assert meter.expanded == 4000
    with pytest.raises(LayerTooLarge):
        MeteredReader(io.BytesIO(bytes(6000)), meter).read()
