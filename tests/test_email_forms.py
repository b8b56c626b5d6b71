"""One form per address: what is stored, mailed and shown is the normalised address, so a Unicode
compatibility form (full-width letters) or an A-label domain is the same address as its plain form."""
from __future__ import annotations

from datetime import datetime, timezone

from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from gatehouse.extensions import db
from gatehouse.models import OutboxMessage, User
from tests.actions import PASSWORD, problem
from tests.smtp import deliver, last_code, mail_settings

FULL_WIDTH = "ｖｉｃｔｉｍ@example.com"
RESET = "Reset your Gatehouse password"
NEW_PASSWORD = "the real owner's new passphrase"


def stored(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [(u.email, u.email_key) for u in db.session.scalars(select(User).order_by(User.created_at)).unique()]


def test_a_full_width_squat_of_a_taken_address_is_refused(app, api):
    api.register(email="victim@example.com")
    problem(api.post("/auth/register", json={"email": FULL_WIDTH, "password": PASSWORD}), 409, "email_taken")
    problem(api.post("/auth/register", json={"email": "VICTIM@EXAMPLE.COM", "password": PASSWORD}), 409,
            "email_taken")
    assert stored(app) == [("victim@example.com", "victim@example.com")]


def test_a_full_width_registration_is_the_plain_address_and_its_owner_keeps_it(make_app, smtp_sink):
    from tests.actions import Api

    app = make_app(**mail_settings(smtp_sink))
    api = Api(app.test_client())
    squatter = api.register(email=FULL_WIDTH, password="the squatter's passphrase")
    assert squatter["user"]["email"] == "victim@example.com"  # stored, shown ...
    assert stored(app) == [("victim@example.com", "victim@example.com")]
    with app.app_context():  # ... and mailed as the one address
        assert db.session.scalars(select(OutboxMessage.recipient)).all() == ["victim@example.com"]
    problem(api.post("/auth/register", json={"email": "victim@example.com", "password": PASSWORD}), 409,
            "email_taken")
    # The real owner takes the account back: the reset mail goes to the real address.
    assert api.post("/auth/forgot-password", json={"email": "victim@example.com"}).status_code == 202
    deliver(app)
    code = last_code(smtp_sink, "victim@example.com", RESET)
    assert all(FULL_WIDTH not in message["To"] for message in smtp_sink.messages)
    response = api.post("/auth/reset-password", json={"email": "victim@example.com", "code": code,
                                                      "newPassword": NEW_PASSWORD})
    assert response.status_code == 200
    api.login(email="victim@example.com", password=NEW_PASSWORD)
    api.login(email=FULL_WIDTH, password=NEW_PASSWORD)  # any form of the address names the account
    problem(api.post("/auth/login", json={"email": FULL_WIDTH, "password": "the squatter's passphrase"}), 401,
            "invalid_credentials")


def test_an_idn_domain_has_one_form_whether_typed_as_punycode_or_unicode(app, api):
    body = api.register(email="user@xn--bcher-kva.example")
    assert body["user"]["email"] == "user@bücher.example"
    problem(api.post("/auth/register", json={"email": "user@BÜCHER.example", "password": PASSWORD}), 409,
            "email_taken")
    api.login(email="user@bücher.example")
    api.login(email="User@XN--BCHER-KVA.example")
    assert stored(app) == [("user@bücher.example", "user@bücher.example")]


def test_the_migration_normalises_stored_addresses_and_keeps_them_unique(app):
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def add(conn, user_id: str, email: str, key: str) -> None:
        conn.execute(text(
            "INSERT INTO users (id, email, email_key, region, currency, locale, timezone, role, show_status, "
            "disabled, password_hash, created_at, updated_at, version) VALUES (:id, :email, :key, 'US', 'USD', "
            "'en', 'UTC', 'user', 'visible', false, 'x', :at, :at, 1)"), {"id": user_id, "email": email, "key": key,
                                                                          "at": stamp})

    with app.app_context():
        downgrade(revision="0003-1")  # the schema just before this migration
        with db.engine.begin() as conn:
            # rows as the previous revision wrote them: the address as typed, its key NFKC lower-cased
            add(conn, "00000000-0000-0000-0000-000000000001", FULL_WIDTH, "victim@example.com")
            add(conn, "00000000-0000-0000-0000-000000000002", "Ann@XN--BCHER-KVA.example", "ann@xn--bcher-kva.example")
            add(conn, "00000000-0000-0000-0000-000000000003", "ann@bücher.example", "ann@bücher.example")
            add(conn, "00000000-0000-0000-0000-000000000004", "Plain@Example.com", "plain@example.com")
        upgrade()
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, email, email_key FROM users ORDER BY id")).all()
        db.engine.dispose()
    assert [tuple(row)[1:] for row in rows] == [
        ("victim@example.com", "victim@example.com"),
        ("Ann@XN--BCHER-KVA.example", "ann@xn--bcher-kva.example"),  # its normal form is taken: left as it was
        ("ann@bücher.example", "ann@bücher.example"),
        ("Plain@example.com", "plain@example.com"),
    ]
