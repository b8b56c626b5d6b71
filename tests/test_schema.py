"""The schema comes from migrations only, identical on both databases, with the database enforcing the rules."""
from datetime import datetime, timezone
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from gatehouse.extensions import db
from gatehouse.models import Device, Session, Subscription, User, UserSettings

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TABLES = {"users", "user_settings", "subscriptions", "devices", "sessions", "refresh_tokens", "one_time_codes",
          "ai_usage", "outbox", "idempotency_keys", "rate_limit_windows", "presence_connections", "mfa_totp",
          "recovery_codes", "passkeys", "webauthn_challenges", "mfa_challenges", "sign_in_failures", "ws_tickets",
          "security_events", "link_tokens"}


def test_migrations_build_every_table_and_a_second_upgrade_is_a_no_op(app):
    with app.app_context():
        before = set(inspect(db.engine).get_table_names())
        upgrade()  # already at head: nothing to do, nothing fails
        upgrade()
        after = set(inspect(db.engine).get_table_names())
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert TABLES <= before == after
    assert version == head_revision()


def head_revision() -> str:
    """The one head of migrations/ (a second head would be a fork in the chain)."""
    from alembic.script import ScriptDirectory

    [head] = ScriptDirectory(str(Path(__file__).resolve().parent.parent / "migrations")).get_heads()
    return head


def test_migrations_match_the_models(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def _user(**fields):
    values = dict(email="a@example.com", email_key="a@example.com", region="US", currency="USD", locale="en",
                  timezone="UTC", role="user", show_status="visible", disabled=False, password_hash="x",
                  created_at=NOW, updated_at=NOW, version=1)
    values.update(fields)
    return User(**values)


def test_the_database_refuses_a_second_account_with_the_same_email_key(app):
    with app.app_context():
        db.session.add(_user())
        db.session.commit()
        db.session.add(_user(email="A@example.com"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_the_database_refuses_the_same_username_key_but_allows_many_without_one(app):
    with app.app_context():
        db.session.add_all([_user(email_key="1@x.io"), _user(email_key="2@x.io")])
        db.session.add(_user(email_key="3@x.io", username="Bob", username_key="bob"))
        db.session.commit()
        db.session.add(_user(email_key="4@x.io", username="BOB", username_key="bob"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_foreign_keys_are_enforced(app):
    with app.app_context():
        db.session.add(UserSettings(user_id="no-such-user", preferences={}, updated_at=NOW))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_deleting_a_user_cascades_and_a_deleted_device_unlinks_its_sessions(app):
    with app.app_context():
        user = _user()
        db.session.add(user)
        db.session.flush()
        device = Device(user_id=user.id, client_id="d", name="n", platform="ios", created_at=NOW, last_seen_at=NOW)
        db.session.add_all([device, UserSettings(user_id=user.id, preferences={}, updated_at=NOW),
                            Subscription(user_id=user.id, tier="free", status="active", updated_at=NOW)])
        db.session.flush()
        session = Session(user_id=user.id, device_id=device.id, created_at=NOW, last_seen_at=NOW, expires_at=NOW)
        db.session.add(session)
        db.session.commit()
        session_id, user_id = session.id, user.id

        db.session.execute(text("DELETE FROM devices"))
        db.session.commit()
        assert db.session.execute(text("SELECT device_id FROM sessions WHERE id = :id"),
                                  {"id": session_id}).scalar() is None

        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
        db.session.commit()
        for table in ("user_settings", "subscriptions", "sessions"):
            assert db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_check_constraints_hold(app):
    with app.app_context():
        db.session.add(_user(role="superuser"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_sqlite_connections_have_foreign_keys_and_wal(app, leg):
    if leg != "sqlite":
        pytest.skip("SQLite pragmas")
    with app.app_context(), db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
