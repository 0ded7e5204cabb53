"""The web UI's user commands (add, passwd, rm, ls), for two homes of the users.

Written once for both: a server's API (``dockyard remote user``) and a server's
database opened directly (``dockyard server user``: no running server needed, so the
first admin can be made before anyone can sign in).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import click

from dockyard.cli.common import print_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ROLES = ("read", "write", "admin")  # the user roles of dockyard.service.tokens


class UserBook(Protocol):
    """Where the users are kept; each method raises a DockyardError on refusal."""

    def add(self, name: str, role: str, password: str) -> None: ...

    def passwd(self, name: str, password: str) -> None: ...

    def rm(self, name: str) -> None: ...

    def ls(self) -> list[dict[str, str]]: ...


def _password() -> str:
    """A password from the terminal (asked twice), or else from standard input (one
    trailing newline dropped), so it is in no command line."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    value = sys.stdin.read()
    return value[:-1] if value.endswith("\n") else value


def user_group(
    book: Callable[..., UserBook], options: tuple[Callable[[Any], Any], ...] = ()
) -> click.Group:
    """The ``user`` command group over the users ``book(**options' values)`` opens.

    ``options`` are click options every command takes (where the users are).
    """

    def where(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    @click.group()
    def user() -> None:
        """The web UI's users: add, passwd, rm, ls. Passwords are never shown."""

    @user.command("add")
    @click.argument("name")
    @click.option("--role", type=click.Choice(ROLES), default="read", show_default=True)
    @where
    def add(name: str, role: str, **at: Any) -> None:
        """Add user NAME with a password (from the terminal or standard input)."""
        book(**at).add(name, role, _password())

    @user.command("passwd")
    @click.argument("name")
    @where
    def passwd(name: str, **at: Any) -> None:
        """Set NAME's password; the user's sessions end."""
        book(**at).passwd(name, _password())

    @user.command("rm")
    @click.argument("name")
    @where
    def rm(name: str, **at: Any) -> None:
        """Remove user NAME; their sessions end."""
        book(**at).rm(name)

    @user.command("ls")
    @where
    def ls(**at: Any) -> None:
        """List the users and their roles."""
        items = book(**at).ls()
        print_table(
            [("USER", "ROLE", "ADDED")] + [(u["name"], u["role"], u["created"]) for u in items]
        )

    return user


class DatabaseUsers:
    """The users in a server's database, opened here.

    Opening it migrates it to the newest schema, as a server starting would.
    """

    def __init__(self, url: str):
        from dockyard.service.database import Database, open_engine

        self._db = Database(open_engine(url))

    @contextmanager
    def _session(self) -> Iterator[Session]:
        from dockyard.errors import DockyardError
        from dockyard.service.users import UserError

        try:
            with self._db.transaction() as session:
                yield session
        except UserError as e:
            raise DockyardError(str(e)) from None

    def _hashed(self, password: str) -> str:
        from dockyard.errors import DockyardError
        from dockyard.service.users import UserError, hash_password

        try:
            return hash_password(password)
        except UserError as e:
            raise DockyardError(f"password: {e}") from None

    def add(self, name: str, role: str, password: str) -> None:
        from dockyard.service import users

        hashed = self._hashed(password)
        with self._session() as session:
            users.add_user(session, name, role, hashed)

    def passwd(self, name: str, password: str) -> None:
        from dockyard.service import users

        hashed = self._hashed(password)
        with self._session() as session:
            users.set_password(session, name, hashed)

    def rm(self, name: str) -> None:
        from dockyard.service import users

        with self._session() as session:
            users.remove_user(session, name)

    def ls(self) -> list[dict[str, str]]:
        from dockyard.service import users

        with self._session() as session:
            return users.list_users(session)
