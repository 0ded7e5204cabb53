"""The container images Kubernetes manifests and Helm ``values.yaml`` files name.

Each with the file and line it was found at (``dockyard capture --from-manifests``).

Found in every YAML document (multi-document files too):

- workloads -- Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob (and
  a ``kind: List`` of them): the ``image`` of every container, init container and
  ephemeral container of the pod spec;
- anywhere else (values files, other kinds such as a HelmRelease), a values-style
  ``image:`` mapping with a ``repository`` and a ``tag`` (or ``digest``), and optionally
  a ``registry`` (``{registry}/{repository}:{tag}``).

The files come from a repository, so they are hostile input: a directory is walked
without following any symlink (``os.fwalk``, each file opened ``O_NOFOLLOW`` from its
directory's fd), hidden directories are skipped, each file is read up to
:data:`MAX_FILE_SIZE`, at most :data:`MAX_FILES` files are read, and YAML is parsed
safely within :mod:`dockyard.yamlmarks`'s limits (no tags, no alias bombs, bounded
depth and size). A file that is not YAML, a template (``{{ }}``) or a malformed image
reference is a :class:`Problem` at ``file:line``: the caller decides whether it is fatal.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard import reference, yamlmarks
from dockyard.errors import DockyardError, InvalidReference

MAX_FILE_SIZE = 4 << 20
MAX_FILES = 10_000
YAML_SUFFIXES = (".yaml", ".yml")

_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class FoundImage:
    """An image reference and where it was written."""

    ref: reference.Reference
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.ref}"


@dataclass(frozen=True)
class Problem:
    """Something at ``file:line`` that could not be read as images."""

    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


@dataclass
class Scan:
    """What a scan found: images in the order met, and problems."""

    images: list[FoundImage] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def refs(self) -> list[reference.Reference]:
        """Each image once, in the order first met."""
        return list(dict.fromkeys(found.ref for found in self.images))


def scan_paths(paths: list[Path]) -> Scan:
    """Scan files (any name) and directories for the images they name.

    A directory's ``*.yaml``/``*.yml`` files are read, walked without following symlinks.
    A path that is neither is a :class:`DockyardError`.
    """
    scan = Scan()
    budget = [MAX_FILES]
    for path in paths:
        if path.is_dir():
            for relative, data in _walk(path, budget):
                scan_text(data, path / relative, scan)
        else:
            scan_text(_read_one(path), path, scan)
    return scan


def _read_one(path: Path) -> bytes:
    """A file the operator named (symlinks followed: the path is theirs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise DockyardError(f"{path}: cannot read: {e.strerror}") from None
    data = _read_regular(fd, path)
    if data is None:
        raise DockyardError(f"{path}: not a regular file")
    return data


def _read_regular(fd: int, path: Path) -> bytes | None:
    """The content of the open file ``fd`` (closed here) if it is a regular file."""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_FILE_SIZE + 1)
    if len(data) > MAX_FILE_SIZE:
        raise DockyardError(f"{path}: larger than {MAX_FILE_SIZE} bytes: not a manifest")
    return data


def _walk(top: Path, budget: list[int]) -> Iterator[tuple[Path, bytes]]:
    """``(relative path, content)`` of each YAML file under ``top``, in name order; no
    symlink is followed (a symlinked file or directory is skipped)."""
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(top, follow_symlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(YAML_SUFFIXES):
                continue
            relative = Path(dirpath).relative_to(top) / name
            budget[0] -= 1
            if budget[0] < 0:
                raise DockyardError(f"{top}: more than {MAX_FILES} YAML files: not scanned")
            try:
                fd = os.open(name, _READ, dir_fd=dir_fd)
            except OSError:
                continue  # a symlink (ELOOP), or gone since it was listed
            data = _read_regular(fd, top / relative)
            if data is not None:
                yield relative, data


def scan_text(data: bytes, file: Path, scan: Scan) -> None:
    """Add the images of the YAML stream ``data`` (from ``file``) to ``scan``."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        scan.problems.append(Problem(file, data.count(b"\n", 0, e.start) + 1, "not UTF-8"))
        return
    try:
        documents = yamlmarks.load_all(text)
    except yamlmarks.YamlError as e:
        scan.problems.append(Problem(file, e.line, f"not YAML: {e.message}"))
        return
    for document in documents:
        _Finder(document, file, scan).document()


class _Finder:
    """The images of one YAML document."""

    def __init__(self, document: yamlmarks.MarkedDocument, file: Path, scan: Scan):
        self.doc = document
        self.file = file
        self.scan = scan

    def document(self) -> None:
        data = self.doc.data
        if isinstance(data, dict) and data.get("kind") == "List":
            for number, item in enumerate(_list(data.get("items"))):
                self.workload(item, ("items", number))
        elif isinstance(data, dict) and isinstance(data.get("kind"), str):
            self.workload(data, ())
        else:
            self.values(data, ())

    def workload(self, obj: Any, path: yamlmarks.FieldPath) -> None:
        """A Kubernetes object: the containers of its pod spec; values-style images in
        an object of any other kind."""
        if not isinstance(obj, dict):
            return
        spec_path = _POD_SPEC_PATHS.get(obj.get("kind"))  # type: ignore[arg-type]
        if spec_path is None:  # another kind: it may carry chart values (a HelmRelease)
            self.values(obj, path)
            return
        spec: Any = obj
        for key in spec_path:
            spec = spec.get(key) if isinstance(spec, dict) else None
        if not isinstance(spec, dict):
            return
        path = (*path, *spec_path)
        for kind in _CONTAINER_LISTS:
            for number, container in enumerate(_list(spec.get(kind))):
                image = container.get("image") if isinstance(container, dict) else None
                if image is not None:
                    self.found(image, (*path, kind, number, "image"))

    def values(self, data: Any, path: yamlmarks.FieldPath) -> None:
        """Values-style ``image: {registry, repository, tag}`` mappings, at any depth."""
        if isinstance(data, list):
            for number, item in enumerate(data):
                self.values(item, (*path, number))
            return
        if not isinstance(data, dict):
            return
        for key, value in data.items():
            here = (*path, key)
            if key == "image" and isinstance(value, dict) and "repository" in value:
                self.values_image(value, here)
            else:
                self.values(value, here)

    def values_image(self, image: dict, path: yamlmarks.FieldPath) -> None:
        parts = {}
        for key in ("registry", "repository", "tag", "digest"):
            value = image.get(key)
            if isinstance(value, bool | float) or not isinstance(value, str | int | None):
                self.problem(
                    (*path, key), f"image {key} must be a string (quote it: 1.10 reads as 1.1)"
                )
                return
            parts[key] = str(value) if value is not None else ""
        if not parts["tag"] and not parts["digest"]:
            self.problem(path, "image has no tag or digest (the chart decides it): skipped")
            return
        text = parts["repository"]
        if parts["registry"]:
            text = f"{parts['registry'].rstrip('/')}/{text}"
        if parts["tag"]:
            text += f":{parts['tag']}"
        if parts["digest"]:
            text += f"@{parts['digest']}"
        self.found(text, path)

    def found(self, text: Any, path: yamlmarks.FieldPath) -> None:
        if not isinstance(text, str):
            self.problem(path, f"image must be a string, not {type(text).__name__}")
            return
        if "{{" in text or "${" in text:
            self.problem(path, f"image {text!r} is a template: skipped")
            return
        try:
            ref = reference.parse(text)
        except InvalidReference as e:
            self.problem(path, str(e))
            return
        self.scan.images.append(FoundImage(ref, self.file, self.doc.line_of(path) or 1))

    def problem(self, path: yamlmarks.FieldPath, message: str) -> None:
        self.scan.problems.append(Problem(self.file, self.doc.line_of(path), message))


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
