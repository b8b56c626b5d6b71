"""Helpers for second-factor tests: enrol TOTP, sign in through the second step, read token claims."""
from __future__ import annotations

from datetime import datetime

import jwt
import pyotp

from tests.actions import PASSWORD


def claims(access_token: str) -> dict:
    return jwt.decode(access_token, options={"verify_signature": False})


def code(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def enrol_totp(api, token: str, now: datetime) -> tuple[str, list[str]]:
    """TOTP turned on for the caller: (secret, recovery codes)."""
    started = api.post("/users/me/mfa/totp", token=token)
    assert started.status_code == 201, started.get_json()
    secret = started.get_json()["secret"]
    confirmed = api.post("/users/me/mfa/totp/confirm", {"code": code(secret, now)}, token=token)
    assert confirmed.status_code == 200, confirmed.get_json()
    return secret, confirmed.get_json()["recoveryCodes"]


def password_step(api, email: str, **extra) -> dict:
    """The first step of a sign-in of an account with a second factor: the mfa_required problem body."""
    response = api.client.post("/auth/login", json={"email": email, "password": PASSWORD, **extra})
    assert response.status_code == 401, response.get_json()
    body = response.get_json()
    assert body["code"] == "mfa_required", body
    return body


def verify(api, mfa_token: str, **proof):
    return api.client.post("/auth/mfa/verify", json={"mfaToken": mfa_token, **proof})


def mails(app, user_id: str) -> list[tuple[str, dict]]:
    """The user's queued mails as (template, context), the sealed context opened; oldest first (mails of
    one instant in no set order)."""
    import json

    from sqlalchemy import select

    from gatehouse.extensions import db
    from gatehouse.models import OutboxMessage
    from gatehouse.runtime import sealer

    with app.app_context():
        rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == user_id)
                                  .order_by(OutboxMessage.created_at, OutboxMessage.id)).all()
        return [(row.template, json.loads(sealer().open(row.payload))) for row in rows]
