"""One exception hierarchy: the CLI turns any of these into one line and exit code 1."""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose (bad input, remote failures, ...)."""


class InvalidReference(DockyardError):
    """A malformed image reference or transport string."""


class DigestError(DockyardError):
    """Content did not match its digest, or a digest string is malformed."""


class ManifestError(DockyardError):
    """A manifest, index or config document is invalid or of an unknown media type."""


class StoreError(DockyardError):
    """The local store is missing something or cannot be written."""


class NotFound(StoreError):
    """An image, tag or blob does not exist where it was looked for."""


class LayerError(DockyardError):
    """A layer archive is malformed or tries to escape its root."""


class RegistryError(DockyardError):
    """A registry answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthError(RegistryError):
    """The registry refused our credentials (401/403)."""


class BuildError(DockyardError):
    """A Dockerfile (or pipeline file) problem, or a failed build step, at ``file:line``."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")
        self.file = file
        self.line = line


class ContainerError(DockyardError):
    """A container could not be set up or run (mounts, namespaces, the OCI runtime)."""
