"""The transactional mail outbox: enqueue() adds a mail to the caller's transaction."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import update

from gatehouse.extensions import db
from gatehouse.i18n import language_of
from gatehouse.models import OutboxMessage, User
from gatehouse.models.types import new_id
from gatehouse.outbox.inline import mark_enqueued
from gatehouse.outbox.render import LANGUAGE, TIMEZONE
from gatehouse.runtime import sealer


def enqueue(template: str, recipient: str, context: dict, *, now: datetime, user_id: str | None = None,
            expires_at: datetime | None = None, locale: str | None = None,
            timezone: str | None = None) -> OutboxMessage:
    """Queue the mail `template` (templates/email/<template>.txt and .html) for `recipient`.

    The context may hold a one-time code, so it is stored encrypted. Nothing is committed here:
    the mail exists only if the caller's transaction commits. `expires_at`: a mail not delivered
    by then (a code that has lapsed) is marked expired instead of sent. The mail speaks the
    recipient's language and time zone as they are now: `locale`/`timezone`, else those of the
    user `user_id` (already in the session, as a rule), else English and UTC.
    """
    if locale is None and user_id is not None:
        user = db.session.get(User, user_id)
        if user is not None:
            locale, timezone = user.locale, timezone or user.timezone
    context = {**context, LANGUAGE: language_of(locale), TIMEZONE: timezone or "UTC"}
    message = OutboxMessage(
        id=new_id(), user_id=user_id, template=template, recipient=recipient,
        payload=sealer().seal(json.dumps(context).encode()), status="pending", attempts=0,
        next_attempt_at=now, expires_at=expires_at, created_at=now,
    )
    db.session.add(message)
    mark_enqueued()
    return message


def supersede(user_id: str, template: str) -> None:
    """Expire the user's still-pending mails of `template` (their code was just replaced by a newer one).

    In the caller's transaction; a mail already being sent is left to finish.
    """
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.user_id == user_id, OutboxMessage.template == template,
               OutboxMessage.status == "pending")
        .values(status="expired", payload=None, last_error="superseded by a newer code")
        .execution_options(synchronize_session=False))
