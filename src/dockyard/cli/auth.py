"""``dockyard login`` / ``logout``: credentials in docker's config.json format."""

from __future__ import annotations

import sys

import click

from dockyard.cli.common import tls_option


@click.command()
@click.argument("host")
@click.option("-u", "--username", prompt=True)
@click.option("-p", "--password", help="Prefer --password-stdin: argv is visible to others.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@tls_option
def login(
    host: str, username: str, password: str | None, password_stdin: bool, tls_verify: bool | None
) -> None:
    """Check credentials against HOST and store them for later commands."""
    from dockyard.registry.client import login as do_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    path = do_login(host, username, password, tls_verify=tls_verify)
    click.echo(f"Login Succeeded (credentials in {path})")


@click.command()
@click.argument("host")
def logout(host: str) -> None:
    """Forget the stored credentials for HOST."""
    from dockyard.registry.client import logout as do_logout

    if not do_logout(host):
        raise click.ClickException(f"not logged in to {host}")
    click.echo(f"Removed login credentials for {host}")
