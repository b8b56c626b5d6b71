"""Command groups of `flask --app wsgi`: users, outbox, keys, idempotency."""
from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from gatehouse.clock import now
from gatehouse.errors import GatehouseError
from gatehouse.extensions import db
from gatehouse.models import User
from gatehouse.params import Email, Params, Password, email_key, parse

users = AppGroup("users", help="Manage accounts.")
outbox = AppGroup("outbox", help="Deliver queued mail.")
idempotency = AppGroup("idempotency", help="Maintain stored Idempotency-Key responses.")
keys = AppGroup("keys", help="Access-token signing keys.")
MAX_PURGE_DAYS = 365_000  # beyond this the cut-off date leaves the calendar


class AdminEmail(Params):
    email: Email


class AdminParams(AdminEmail):
    password: Password


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def describe(err: GatehouseError) -> str:
    if err.errors:
        return "; ".join(f"{e['field']} {e['message']}" for e in err.errors)
    return err.detail


def _new_password(given: str | None, from_stdin: bool) -> str:
    """The new admin's password: from --password (visible to every user of the machine in the process
    list, so only for scripts that have no better way), from the first line of stdin, or asked twice
    at a hidden prompt."""
    if given is not None:
        return given
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("create-admin")
@click.argument("email")
@click.option("--password", help="Password of a new account (prefer the prompt or --password-stdin: a "
                                 "password in the command line is visible to other users).")
@click.option("--password-stdin", "password_stdin", is_flag=True,
              help="Read the new account's password from the first line of stdin.")
def create_admin(email: str, password: str | None, password_stdin: bool) -> None:
    """Create an admin account, or promote the existing account with this email (no password asked)."""
    from gatehouse.services.accounts import new_user

    try:
        address = parse(AdminEmail, {"email": email}).email
    except GatehouseError as err:
        fail(describe(err))
    stamp = now()
    existing = db.session.execute(select(User).where(User.email_key == email_key(address))).unique()
    user = existing.scalar_one_or_none()
    if user is not None:
        from gatehouse.services.admin import promote

        promote(user.id, now=stamp)
        click.echo(f"promoted {user.email} ({user.id}) to admin")
        return
    try:
        params = parse(AdminParams, {"email": email, "password": _new_password(password, password_stdin)})
        user = new_user(email=params.email, password=params.password, now=stamp, role="admin")
        db.session.commit()
    except GatehouseError as err:
        fail(describe(err))
    click.echo(f"created admin {user.email} ({user.id})")


@users.command("purge")
@click.option("--older-than", "days", required=True, metavar="DAYS",
              help="Remove accounts soft-deleted more than this many days ago (0: every soft-deleted account).")
def users_purge(days: str) -> None:
    """Hard-delete soft-deleted accounts and every row keyed by them."""
    from datetime import timedelta

    from gatehouse.services.admin import purge_deleted_users

    if not (days.isascii() and days.isdigit()):
        fail(f"--older-than must be a whole number of days, 0 or more (got {days!r})")
    if int(days) > MAX_PURGE_DAYS:
        fail(f"--older-than must be at most {MAX_PURGE_DAYS} days (got {days})")
    removed = purge_deleted_users(timedelta(days=int(days)), now=now())
    click.echo(f"purged {removed} account{'' if removed == 1 else 's'} soft-deleted more than {int(days)} days ago")


@outbox.command("work")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def outbox_work(once: bool) -> None:
    """Deliver queued mail with retries (the Procfile's worker)."""
    from gatehouse.outbox.worker import deliver_due, work
    from gatehouse.services import housekeeping

    if once:
        removed = housekeeping.run(now())
        click.echo(f"outbox: {deliver_due()}; purged {housekeeping.said(removed)}")
        return
    work(housekeeping=housekeeping.run)


@idempotency.command("purge")
def idempotency_purge() -> None:
    """Delete what expired: Idempotency-Key responses, sign-in failure counters, link tokens, old security events."""
    from gatehouse.services import housekeeping

    click.echo(f"purged {housekeeping.said(housekeeping.run(now()))}")


@keys.command("generate")
@click.option("--alg", "algorithm", type=click.Choice(["ES256", "EdDSA", "RS256"]), default="ES256",
              show_default=True, help="Signing algorithm of the new key.")
def keys_generate(algorithm: str) -> None:
    """Print a new private signing key (PEM) for JWT_PRIVATE_KEY."""
    from gatehouse.security.keys import generate

    click.echo(generate(algorithm), nl=False)
    click.echo(f"Set JWT_PRIVATE_KEY to this PEM (in .env, write its newlines as \\n) to sign access tokens "
               f"with {algorithm}; its public half is served at /.well-known/jwks.json.", err=True)


def register(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(outbox)
    app.cli.add_command(idempotency)
    app.cli.add_command(keys)
