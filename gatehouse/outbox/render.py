"""Mail rendering: templates/email/<name>.txt and .html into one Flask-Mail message per outbox row."""
from __future__ import annotations

from email.utils import parseaddr

from flask import current_app, render_template
from flask_mail import Message

PRODUCT = "Gatehouse"

SUBJECTS = {
    # No code in a subject: MTAs log subjects.
    "verify-email": "Confirm your email address for {product}",
    "reset-password": "Reset your {product} password",
    "password-changed": "Your {product} password was changed",
    "factor-changed": "Two-step verification of your {product} account changed",
    "recovery-code-used": "A {product} recovery code was used",
    "mfa-reset": "Two-step verification of your {product} account was reset",
}


def duration_words(seconds: int) -> str:
    """600 -> "10 minutes", 86400 -> "24 hours", 90 -> "1 minute 30 seconds"."""
    parts = []
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    for amount, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")):
        if amount:
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


def message_id(row_id: str) -> str:
    """Derived from the outbox row, so a mail sent twice (a worker killed after the SMTP reply)
    carries the same Message-ID and is recognisable as one mail."""
    domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"] or "")[1].rpartition("@")[2]
    return f"<{row_id}@{domain or 'gatehouse.invalid'}>"


def render(row_id: str, template: str, recipient: str, context: dict) -> Message:
    values = {"product": PRODUCT, **context}
    if "ttl_seconds" in values:
        values["expires_in"] = duration_words(values["ttl_seconds"])
    subject = SUBJECTS.get(template, "{product}").format_map(_Blank(values))
    message = Message(subject=subject, recipients=[recipient],
                      body=render_template(f"email/{template}.txt", **values),
                      html=render_template(f"email/{template}.html", **values),
                      extra_headers={"Auto-Submitted": "auto-generated"})
    message.msgId = message_id(row_id)
    return message


class _Blank(dict):
    """format_map that leaves an unknown placeholder empty instead of failing the mail."""

    def __missing__(self, key):
        return ""
