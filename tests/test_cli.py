"""The flask CLI: schema upgrades and admin accounts."""
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import SecurityEvent, User
from tests.actions import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def test_db_upgrade_builds_an_empty_database_and_a_second_run_is_a_no_op(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}", "SECRET_KEY": "k" * 40}
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "fresh.db").exists()


def test_create_admin_creates_an_admin_account(app, runner):
    result = runner.invoke(args=["users", "create-admin", "Root@Example.com", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.execute(select(User).where(User.email_key == "root@example.com")).unique().scalar_one()
        assert user.role == "admin" and user.settings is not None and user.subscription.tier == "free"


def test_create_admin_promotes_an_existing_account(app, runner, api, events):
    user_id = api.register(email="promote@example.com")["user"]["id"]
    for _ in range(2):  # a second promotion changes nothing
        result = runner.invoke(args=["users", "create-admin", "promote@example.com", "--password", "ignored"])
        assert result.exit_code == 0 and "promoted" in result.output
    with app.app_context():
        user = db.session.execute(select(User).where(User.email_key == "promote@example.com")).unique().scalar_one()
        assert user.role == "admin" and user.version == 2
        [changed] = db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "role_changed")).all()
        assert changed.user_id == user_id and changed.detail == {"role": "admin"}
    assert (user_id, "entity:updated", {"entity": "user", "id": user_id, "version": 2, "fields": ["role"]}) in events
    assert api.login(email="promote@example.com")["user"]["role"] == "admin"


def test_create_admin_refuses_bad_input_with_a_clear_line(runner):
    weak = runner.invoke(args=["users", "create-admin", "new@example.com", "--password", "password123"])
    assert weak.exit_code == 1 and "password" in weak.output
    bad_email = runner.invoke(args=["users", "create-admin", "not-an-email", "--password", PASSWORD])
    assert bad_email.exit_code == 1 and "email" in bad_email.output
