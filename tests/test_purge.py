"""`users purge --older-than DAYS`: soft-deleted accounts go for good, with every row keyed by them."""
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import func, select

from gatehouse.extensions import db
from gatehouse.models import (AiUsage, Device, IdempotencyKey, OneTimeCode, OutboxMessage, RefreshToken, Session,
                              Subscription, User, UserSettings)
from tests.actions import PASSWORD

NOW = datetime(2026, 9, 1, 12, tzinfo=timezone.utc)
KEYED = {"user_settings": UserSettings, "subscriptions": Subscription, "devices": Device, "sessions": Session,
         "one_time_codes": OneTimeCode, "ai_usage": AiUsage, "idempotency_keys": IdempotencyKey}


def account_with_every_row(app, api, name: str) -> str:
    """An account with a row in every table keyed by it: settings, subscription, device, sessions,
    refresh tokens, a verification code, its mail in the outbox, AI usage and an idempotency key."""
    body = api.register(email=f"{name}@example.com")
    login = api.login(email=f"{name}@example.com", device={"id": f"{name}-phone", "name": "Phone", "platform": "ios"})
    token = login["tokens"]["accessToken"]
    response = api.patch("/users/me", {"displayName": name}, token=token, headers={"Idempotency-Key": f"{name}-1"})
    assert response.status_code == 200
    with app.app_context():
        db.session.add(AiUsage(user_id=body["user"]["id"], period="2026-08", feature="chat", units=7,
                               updated_at=datetime.now(timezone.utc)))
        db.session.commit()
    return body["user"]["id"]


def rows_of(app, user_id: str) -> dict[str, int]:
    with app.app_context():
        counts = {name: db.session.scalar(select(func.count()).select_from(model).where(model.user_id == user_id))
                  for name, model in KEYED.items()}
        counts["refresh_tokens"] = db.session.scalar(
            select(func.count()).select_from(RefreshToken).join(Session).where(Session.user_id == user_id))
        counts["users"] = db.session.scalar(select(func.count()).select_from(User).where(User.id == user_id))
        counts["outbox"] = db.session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.user_id == user_id))
        return counts


def outbox_to(app, address: str) -> list:
    with app.app_context():
        return list(db.session.execute(select(OutboxMessage.user_id).where(OutboxMessage.recipient == address)).all())


def delete_account(api, email: str) -> None:
    token = api.login(email=email)["tokens"]["accessToken"]
    assert api.delete("/users/me", {"password": PASSWORD}, token).status_code == 204


@pytest.fixture
def accounts(app, api) -> dict:
    """Deleted 31 days before NOW (old), deleted 10 days before (recent), and one never deleted (kept)."""
    ids = {}
    for name, deleted_days_ago in (("old", 31), ("recent", 10), ("kept", None)):
        with time_machine.travel(NOW - timedelta(days=40), tick=False):
            ids[name] = account_with_every_row(app, api, name)
        if deleted_days_ago is not None:
            with time_machine.travel(NOW - timedelta(days=deleted_days_ago), tick=False):
                delete_account(api, f"{name}@example.com")
    return ids


def test_purge_removes_old_deleted_accounts_and_everything_keyed_by_them(app, runner, accounts):
    before = {name: rows_of(app, user_id) for name, user_id in accounts.items()}
    for counts in before.values():
        assert all(counts.values()), counts  # every table has the account's rows to start with
    with time_machine.travel(NOW, tick=False):
        result = runner.invoke(args=["users", "purge", "--older-than", "30"])
    assert result.exit_code == 0, result.output
    assert "purged 1 account" in result.output
    assert set(rows_of(app, accounts["old"]).values()) == {0}
    assert rows_of(app, accounts["recent"]) == before["recent"]
    assert rows_of(app, accounts["kept"]) == before["kept"]
    # Mail already queued stays in the outbox, no longer linked to anyone.
    assert outbox_to(app, "old@example.com") and all(row.user_id is None for row in outbox_to(app, "old@example.com"))


def test_purge_older_than_zero_removes_every_deleted_account_only(app, runner, accounts):
    with time_machine.travel(NOW, tick=False):
        result = runner.invoke(args=["users", "purge", "--older-than", "0"])
    assert result.exit_code == 0 and "purged 2 accounts" in result.output
    assert set(rows_of(app, accounts["old"]).values()) == {0}
    assert set(rows_of(app, accounts["recent"]).values()) == {0}
    assert all(rows_of(app, accounts["kept"]).values())


def test_a_purged_address_can_register_again(app, api, runner, accounts):
    with time_machine.travel(NOW, tick=False):
        runner.invoke(args=["users", "purge", "--older-than", "30"])
    assert api.register(email="old@example.com")["user"]["id"] != accounts["old"]
    api.register(email="recent@example.com", expect=409)


@pytest.mark.parametrize("days", ["-1", "abc", "1.5", "", "１", "99999999999"])
def test_purge_refuses_anything_but_a_whole_number_of_days(app, runner, accounts, days):
    result = runner.invoke(args=["users", "purge", "--older-than", days])
    assert result.exit_code == 1
    assert "--older-than" in result.output
    assert rows_of(app, accounts["old"])["users"] == 1


def test_purge_requires_older_than(runner):
    result = runner.invoke(args=["users", "purge"])
    assert result.exit_code != 0 and "--older-than" in result.output
