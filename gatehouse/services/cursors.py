"""Opaque, signed keyset cursors: the (timestamp, id) of the last row of a page, bound to one list."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from gatehouse.errors import field_error
from gatehouse.security.tokens import keyed_hash, same
from gatehouse.runtime import hmac_key


def _signature(listing: str, payload: str) -> str:
    return keyed_hash(hmac_key(), f"{listing}-cursor:{payload}")[:32]


def after(listing: str, moment: datetime, row_id: str) -> str:
    """The cursor of the page that follows the row (moment, row_id) of `listing`."""
    raw = json.dumps([moment.isoformat(), row_id], separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{payload}.{_signature(listing, payload)}"


def position(listing: str, cursor: str) -> tuple[datetime, str]:
    """The (moment, id) a cursor of `listing` names; 422 for anything this service did not sign for it."""
    payload, _, signature = cursor.partition(".")
    if not same(signature, _signature(listing, payload)):
        raise field_error("cursor", "is not a cursor of this list")
    try:
        moment, row_id = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromisoformat(moment), row_id
    except (ValueError, TypeError, binascii.Error):  # signed by us, so only an older format lands here
        raise field_error("cursor", "is not a cursor of this list") from None
