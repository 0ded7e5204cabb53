"""Secrets at rest: AES-256-GCM under a key file only root can read.

The key file is made once, 0600 from its first byte, and published atomically: written
under a temporary name and hard-linked to its final one, so two servers starting at
once end up with one key (the second link fails, and that server reads the winner's).
Each sealed value is ``nonce || ciphertext+tag``, bound by the AAD to what it belongs
to (repository and name), so a sealed value copied to another row does not open.
"""

from __future__ import annotations

import contextlib
import os
import secrets as random
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dockyard.errors import DockyardError

KEY_SIZE = 32
NONCE_SIZE = 12


class SecretKeyError(DockyardError):
    """The key file is unreadable, of the wrong size, or readable by others."""


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, made first if there is none."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.{random.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(random.token_bytes(KEY_SIZE))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another server made it first
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if os.fstat(f.fileno()).st_mode & 0o077:
            raise SecretKeyError(f"{path}: readable by others; chmod 600 it")
        key = f.read(KEY_SIZE + 1)
    if len(key) != KEY_SIZE:
        raise SecretKeyError(f"{path}: not a {KEY_SIZE}-byte key")
    return key


class SecretBox:
    """Seals and opens values with the server's key."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, value: str, context: str) -> bytes:
        nonce = random.token_bytes(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, value.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        try:
            plain = self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context.encode())
        except InvalidTag:
            raise SecretKeyError(f"{context}: does not open with this key") from None
        return plain.decode()


def secret_context(repository_id: int | None, name: str) -> str:
    """What a secret's seal is bound to: its repository (or none: global) and name."""
    return f"secret:{'global' if repository_id is None else repository_id}:{name}"


def webhook_context(repository_id: int) -> str:
    return f"webhook:{repository_id}"
