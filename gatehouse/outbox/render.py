"""Mail rendering: templates/email/<name>.txt and .html into one Flask-Mail message per outbox row,
in the language and time zone the row was queued with."""
from __future__ import annotations

from datetime import datetime, timedelta
from email import policy
from email.header import Header
from email.utils import parseaddr

from babel.dates import format_timedelta
from flask import current_app, render_template
from flask_babel import force_locale, gettext
from flask_mail import Message

from gatehouse import i18n
from gatehouse.i18n import N_

PRODUCT = "Gatehouse"
# Keys of the stored context that say how the mail speaks (set by enqueue()).
LANGUAGE = "_language"
TIMEZONE = "_timezone"

SUBJECTS = {
    # No code in a subject: MTAs log subjects.
    "verify-email": N_("Confirm your email address for %(product)s"),
    "reset-password": N_("Reset your %(product)s password"),
    "password-changed": N_("Your %(product)s password was changed"),
    "factor-changed": N_("Two-step verification of your %(product)s account changed"),
    "recovery-code-used": N_("A %(product)s recovery code was used"),
    "mfa-reset": N_("Two-step verification of your %(product)s account was reset"),
    "email-change-code": N_("Confirm your new email address for %(product)s"),
    "email-changed": N_("The email address of your %(product)s account was changed"),
    "new-sign-in": N_("New sign-in to your %(product)s account"),
}


class Mail(Message):
    """Flask-Mail's message, with a subject in any language that arrives as written.

    Flask-Mail encodes a non-ASCII subject without room for "Subject: ", so its first line is too long
    and the SMTP policy folds it again, cutting a word in two where readers then see a space
    ("wurde ge ändert"). Encoded here with the header's name, every line fits and is sent as encoded.
    """

    def _message(self):
        message = super()._message()
        if self.subject and not self.subject.isascii():
            encoded = Header(self.subject, self.charset or "utf-8", header_name="Subject").encode()
            message.policy, sending = policy.compat32, message.policy  # stored as the text given, not re-parsed
            message.replace_header("Subject", encoded)
            message.policy = sending
        return message


def duration_words(seconds: int, language: str = i18n.DEFAULT) -> str:
    """600 -> "10 minutes" ("10 Minuten"), 86400 -> "1 day": the largest whole unit, in `language`."""
    return format_timedelta(timedelta(seconds=int(seconds)), threshold=1, locale=i18n.language_of(language))


def message_id(row_id: str) -> str:
    """Derived from the outbox row, so a mail sent twice (a worker killed after the SMTP reply)
    carries the same Message-ID and is recognisable as one mail."""
    domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"] or "")[1].rpartition("@")[2]
    return f"<{row_id}@{domain or 'gatehouse.invalid'}>"


def render(row_id: str, template: str, recipient: str, context: dict) -> Message:
    language = i18n.language_of(context.get(LANGUAGE))
    timezone = context.get(TIMEZONE)

    def moment(iso: str) -> str:
        try:
            return i18n.moment(datetime.fromisoformat(iso), language, timezone)
        except ValueError:  # queued before timestamps were stored as ISO 8601: shown as queued
            return iso

    values = {"product": PRODUCT, "language": language, "moment": moment,
              **{k: v for k, v in context.items() if k not in (LANGUAGE, TIMEZONE)}}
    if "ttl_seconds" in values:
        values["expires_in"] = duration_words(values["ttl_seconds"], language)
    with force_locale(language):
        subject = gettext(SUBJECTS[template], product=PRODUCT) if template in SUBJECTS else PRODUCT
        message = Mail(subject=subject, recipients=[recipient],
                       body=render_template(f"email/{template}.txt", **values),
                       html=render_template(f"email/{template}.html", **values),
                       extra_headers={"Auto-Submitted": "auto-generated", "Content-Language": language})
    message.msgId = message_id(row_id)
    return message
