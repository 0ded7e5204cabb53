"""Platform specifiers (``linux/amd64``, ``linux/arm/v7``) parsed as containerd does."""

from __future__ import annotations

import os
import re

from dockyard.builder.frontend.records import Record, record

_KNOWN_OS = frozenset(
    {
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "windows",
        "zos",
    }
)
_KNOWN_ARCH = frozenset(
    {
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "ppc64",
        "ppc64le",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    }
)
_OS_PART = re.compile(r"[A-Za-z0-9_-]+\Z")
_PART = re.compile(r"[A-Za-z0-9_.-]+\Z")
_MACHINES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's architecture/variant normalization (``aarch64`` -> ``arm64``...)."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


@record
class Platform(Record):
    """An OS/architecture/variant triple."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def host(cls) -> Platform:
        """The machine we run on, as BuildKit's default build platform."""
        host = os.uname()  # platform.uname()'s answer on Linux, without its import
        machine = host.machine.lower()
        arch, variant = _MACHINES.get(machine, normalize_arch(machine, ""))
        return cls(host.sysname.lower() or "linux", arch, variant)

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """``os``, ``arch``, ``os/arch`` or ``os/arch/variant``; ValueError when malformed."""
        if "*" in spec:
            raise ValueError(f"{spec!r}: wildcards not yet supported")
        parts = spec.split("/", 3)
        if not _OS_PART.match(parts[0]):
            raise ValueError(f"{parts[0]!r} is an invalid OS component of {spec!r}")
        for part in parts[1:]:
            if not _PART.match(part):
                raise ValueError(f"{part!r} is an invalid component of {spec!r}")
        os_name = parts[0].lower()
        os_name = "darwin" if os_name == "macos" else os_name
        host = cls.host()
        if len(parts) == 1:
            if os_name in _KNOWN_OS:
                return cls(os_name, host.architecture, host.variant)
            arch, variant = normalize_arch(parts[0], "")
            if arch == "arm" and variant == "v7":
                variant = ""
            if arch in _KNOWN_ARCH:
                return cls(host.os, arch, variant)
            raise ValueError(f"{spec!r}: unknown operating system or architecture")
        if len(parts) == 2:
            arch, variant = normalize_arch(parts[1], "")
            if arch == "arm" and variant == "v7":
                variant = ""
            return cls(os_name, arch, variant)
        if len(parts) == 3:
            arch, variant = normalize_arch(parts[1], parts[2])
            if arch == "arm64" and not variant:
                variant = "v8"
            return cls(os_name, arch, variant)
        raise ValueError(f"{spec!r}: cannot parse platform specifier")
