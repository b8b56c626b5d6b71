"""normalised emails

Every stored address takes the one form Gatehouse now stores, mails and shows: NFKC, then
email-validator's normal form (domain lower-cased in Unicode, A-labels as U-labels), and its key
that form lower-cased. An address whose new key another account already holds keeps its old form,
so uniqueness holds; no address is lost. The typed forms are not kept, so downgrade changes nothing.

Revision ID: 0003
Revises: 0006
Create Date: 2026-12-01

"""
import logging
import unicodedata

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0006'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _normalised(email):
    # The rule of gatehouse.params.normalise_email as of this revision (kept here, fixed, so that
    # this migration means the same whatever the code becomes).
    text = unicodedata.normalize("NFKC", email).strip()
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return text


def upgrade():
    users = sa.table("users", sa.column("id", sa.String), sa.column("email", sa.String),
                     sa.column("email_key", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.email, users.c.email_key).order_by(users.c.id)).all()
    owner = {row.email_key: row.id for row in rows}
    for row in rows:
        email = _normalised(row.email)
        key = email.lower()
        if (email, key) == (row.email, row.email_key):
            continue
        if owner.get(key, row.id) != row.id:
            log.warning("users %s: normalised address taken by another account; left as it was", row.id)
            continue
        owner.pop(row.email_key, None)
        owner[key] = row.id
        conn.execute(sa.update(users).where(users.c.id == row.id).values(email=email, email_key=key))


def downgrade():
    pass
