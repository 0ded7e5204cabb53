"""One exception hierarchy: the CLI turns any of these into one line and exit code 1.

::

    DockyardError
    ├── InvalidReference
    ├── NotFound                   the same "not found" for every home
    │   └── RegistryNotFound       (also a RegistryError)
    ├── DigestError
    ├── ManifestError
    ├── StoreError
    ├── LayerError
    ├── RegistryError
    │   ├── RegistryNotFound
    │   └── AuthError
    ├── LocatedError               ``file:line: message``
    │   ├── InvalidFile            every problem of a pipeline or policy file
    │   └── BuildError
    └── ContainerError

Generic code catches the base it means: ``NotFound`` whether an image was looked for in
the store, a layout, an archive or a registry; ``LocatedError`` for anything that
points into a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.frozen import Frozen


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose (bad input, remote failures, ...)."""


class InvalidReference(DockyardError):
    """A malformed image reference or transport string."""


class NotFound(DockyardError):
    """An image, tag, manifest, blob or path is not where it was looked for (any home)."""


class DigestError(DockyardError):
    """Content did not match its digest, or a digest string is malformed."""


class ManifestError(DockyardError):
    """A manifest, index or config document is invalid or of an unknown media type."""


class StoreError(DockyardError):
    """The local store, a layout or an archive is unusable or cannot be written."""


class LayerError(DockyardError):
    """A layer archive is malformed or tries to escape its root."""


class RegistryError(DockyardError):
    """A registry answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryNotFound(RegistryError, NotFound):
    """A registry answered 404: it has no such repository, manifest or blob."""


class AuthError(RegistryError):
    """The registry refused our credentials (401/403)."""


class LocatedError(DockyardError):
    """An error at a place in a file: ``str()`` is ``file:line: message``.

    ``file`` and ``line`` are None when unknown (the prefix then shrinks to ``file: ``
    or nothing); ``message`` is the text without it.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")
        self.message = message
        self.file = file
        self.line = line


class Problem(Frozen):
    """One thing wrong with a file, where it is."""

    __slots__ = ("field", "line", "message")
    field: str  # such as steps[2].timeout; empty for the file as a whole
    message: str
    line: int | None

    def __init__(self, field: str, message: str, line: int | None) -> None:
        self._set(field=field, message=message, line=line)

    def format(self, file: str) -> str:
        """``file:line: field: message``, leaving out what is unknown."""
        where = f"{file}:{self.line}" if self.line else file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class InvalidFile(LocatedError):
    """A file is invalid; ``problems`` lists every error found, in order, one line each.

    ``line`` and ``message`` are the first problem's; ``str()`` is all of them.
    """

    def __init__(self, file: str, problems: Sequence[Problem]):
        first = problems[0]
        message = f"{first.field}: {first.message}" if first.field else first.message
        super().__init__(message, file, first.line)
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(problem.format(self.file or "") for problem in self.problems)


class BuildError(LocatedError):
    """A Dockerfile problem or a failed build step, at ``file:line`` when known."""


class ContainerError(DockyardError):
    """A container could not be set up or run (mounts, namespaces, the OCI runtime)."""
