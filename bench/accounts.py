"""Accounts for the realtime bench: many users with a live session each, and their access tokens.

Signing in thousands of sockets' users through /auth/login would spend the bench's minutes on
argon2; instead the accounts are seeded in bulk (bench/seed.py) and their tokens minted with the
service's own signing code and settings, exactly as a sign-in would issue them.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from bench.seed import seed


def seeded_tokens(env: dict, users: int) -> list[str]:
    """Seed `users` accounts with one session each; one access token per account, in seed order."""
    from gatehouse import create_app
    from gatehouse.extensions import db
    from gatehouse.models import Session, User
    from gatehouse.services import tokens

    app = create_app({key: value for key, value in env.items() if isinstance(value, str)})
    now = datetime.now(timezone.utc)
    with app.app_context():
        with db.engine.begin() as conn:
            seed(conn, users=users, sessions=users, refresh_tokens=0, password_hash="$argon2id$unusable", now=now)
        rows = db.session.execute(select(User, Session).join(Session, Session.user_id == User.id)
                                  .where(User.email.like("%@seed.invalid")).order_by(User.id)).all()
        minted = [tokens.access_token(tokens.Holder.of(user, session), now)[0] for user, session in rows]
        db.session.remove()
        db.engine.dispose()
    return minted
