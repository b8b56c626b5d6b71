"""The transactional mail outbox: enqueue() adds a mail to the caller's transaction."""
from __future__ import annotations

import json
from datetime import datetime

from gatehouse.extensions import db
from gatehouse.models import OutboxMessage
from gatehouse.models.types import new_id
from gatehouse.services.runtime import sealer


def enqueue(template: str, recipient: str, context: dict, *, now: datetime, user_id: str | None = None,
            expires_at: datetime | None = None) -> OutboxMessage:
    """Queue the mail `template` (templates/email/<template>.txt and .html) for `recipient`.

    The context may hold a one-time code, so it is stored encrypted. Nothing is committed here:
    the mail exists only if the caller's transaction commits. `expires_at`: a mail not delivered
    by then (a code that has lapsed) is marked expired instead of sent.
    """
    message = OutboxMessage(
        id=new_id(), user_id=user_id, template=template, recipient=recipient,
        payload=sealer().seal(json.dumps(context).encode()), status="pending", attempts=0,
        next_attempt_at=now, expires_at=expires_at, created_at=now,
    )
    db.session.add(message)
    return message
