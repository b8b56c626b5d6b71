"""The transactional outbox and its worker, against a real SMTP sink on loopback."""
from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import OutboxMessage
from gatehouse.outbox import enqueue
from gatehouse.outbox.transport import classify
from gatehouse.outbox.worker import backoff
from tests.smtp import Sink, code_in, deliver, mail_settings
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.mail


def rows(app) -> list[OutboxMessage]:
    with app.app_context():
        found = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)).all()
        db.session.expunge_all()
        return found


def queue(app, count: int = 1, template: str = "password-changed", **kwargs) -> list[str]:
    with app.app_context():
        ids = [enqueue(template, f"to{i}@example.com", {"changed_at": "today"}, now=now(), **kwargs).id
               for i in range(count)]
        db.session.commit()
    return ids


def test_a_mail_is_written_only_if_its_transaction_commits(app):
    with app.app_context():
        enqueue("password-changed", "gone@example.com", {}, now=now())
        db.session.rollback()
    assert rows(app) == []
    assert deliver(app).handled == 0


def test_the_payload_is_encrypted_at_rest_and_cleared_once_sent(app, api, smtp_sink):
    api.register(email="sealed@example.com")
    (row,) = rows(app)
    deliver(app)
    code = code_in(smtp_sink.messages[0])
    assert code.encode() not in row.payload and b"sealed" not in row.payload
    (sent,) = rows(app)
    assert sent.status == "sent" and sent.payload is None and sent.sent_at is not None and sent.attempts == 1


def test_sink_down_the_request_still_succeeds_and_the_mail_goes_out_once_when_it_is_back(make_config, leg):
    from gatehouse import create_app

    sink = Sink(port=free_port())  # not started: connections are refused
    app = create_app(make_config(**mail_settings(sink)))
    try:
        client = app.test_client()
        client.post("/auth/register", json={"email": "down@example.com", "password": "correct horse battery"})
        response = client.post("/auth/forgot-password", json={"email": "down@example.com"})
        assert response.status_code == 202

        started = now()
        report = deliver(app, started)
        assert report.outcomes == {"retry": 2}
        for row in rows(app):
            assert row.status == "pending" and row.attempts == 1 and row.payload is not None
            assert "Connection" in row.last_error or "refused" in row.last_error.lower()
            assert started + timedelta(seconds=15) <= row.next_attempt_at <= started + timedelta(seconds=30)

        sink.start()
        assert deliver(app, started + timedelta(seconds=1)).handled == 0  # not due yet
        retry_at = max(row.next_attempt_at for row in rows(app))
        assert deliver(app, retry_at).outcomes == {"sent": 2}
        assert deliver(app, retry_at + timedelta(hours=1)).handled == 0
        assert sorted(m["Subject"] for m in sink.messages) == [
            "Confirm your email address for Gatehouse", "Reset your Gatehouse password"]
        assert all(row.status == "sent" and row.attempts == 2 for row in rows(app))
    finally:
        sink.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_5xx_reply_marks_the_mail_failed_after_one_try(app, smtp_sink):
    smtp_sink.reply = "550 5.1.1 mailbox unavailable"
    queue(app)
    assert deliver(app).outcomes == {"failed": 1}
    (row,) = rows(app)
    assert row.status == "failed" and row.attempts == 1 and row.payload is None
    assert row.last_error.startswith("550")
    assert deliver(app, now() + timedelta(days=1)).handled == 0
    assert smtp_sink.messages == []


def test_a_4xx_reply_is_retried_with_growing_back_off(app, smtp_sink):
    smtp_sink.reply = "451 4.7.1 greylisted, try later"
    queue(app)
    current = now()
    waits = []
    for _ in range(3):
        assert deliver(app, current).outcomes == {"retry": 1}
        (row,) = rows(app)
        waits.append((row.next_attempt_at - current).total_seconds())
        current = row.next_attempt_at
    assert row.status == "pending" and row.attempts == 3 and row.last_error.startswith("451")
    assert 15 <= waits[0] <= 30 and 30 <= waits[1] <= 60 and 60 <= waits[2] <= 120
    smtp_sink.reply = None
    assert deliver(app, current).outcomes == {"sent": 1}


def test_back_off_doubles_up_to_an_hour_with_jitter():
    for attempts, ceiling in ((1, 30), (2, 60), (5, 480), (8, 3600), (20, 3600)):
        waits = {backoff(attempts).total_seconds() for _ in range(20)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered


def test_a_mail_keeps_retrying_until_the_attempt_limit(make_config):
    from gatehouse import create_app

    sink = Sink(port=free_port())  # never started
    app = create_app(make_config(**mail_settings(sink, OUTBOX_MAX_ATTEMPTS="2")))
    try:
        queue(app)
        assert deliver(app).outcomes == {"retry": 1}
        assert deliver(app, now() + timedelta(minutes=5)).outcomes == {"failed": 1}
        (row,) = rows(app)
        assert row.status == "failed" and "gave up after 2 attempts" in row.last_error and row.payload is None
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_reset_mail_whose_code_expired_before_delivery_is_not_sent(app, api, smtp_sink):
    api.register(email="late@example.com")
    deliver(app)
    api.post("/auth/forgot-password", json={"email": "late@example.com"})
    report = deliver(app, now() + timedelta(seconds=601))
    assert report.outcomes == {"expired": 1}
    reset = [r for r in rows(app) if r.template == "reset-password"][0]
    assert reset.status == "expired" and reset.payload is None and reset.sent_at is None
    assert [m["Subject"] for m in smtp_sink.messages] == ["Confirm your email address for Gatehouse"]


def test_outbox_work_once_delivers_what_is_due_and_exits(app, runner, smtp_sink):
    queue(app, 3)
    result = runner.invoke(args=["outbox", "work", "--once"])
    assert result.exit_code == 0, result.output
    assert "3 sent" in result.output
    assert len(smtp_sink.messages) == 3 and all(r.status == "sent" for r in rows(app))
    assert "nothing due" in runner.invoke(args=["outbox", "work", "--once"]).output


def test_a_killed_workers_mail_goes_out_after_the_lease(app, config, smtp_sink):
    (row_id,) = queue(app)
    smtp_sink.hold = True
    env = {**os.environ, **config, "OUTBOX_LEASE_SECONDS": "60", "LOG_LEVEL": "WARNING"}
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "outbox", "work"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert smtp_sink.entered.wait(60), worker.stderr.read1().decode() if worker.poll() is not None else ""
    finally:
        worker.kill()  # SIGKILL, mid-send: the SMTP DATA reply never came
        worker.wait(10)
        worker.stderr.close()
    smtp_sink.hold = False
    smtp_sink.release.set()

    (row,) = rows(app)
    assert row.status == "sending" and row.attempts == 1 and row.payload is not None
    claimed_at = row.lease_until - timedelta(seconds=60)
    assert deliver(app, claimed_at + timedelta(seconds=59)).handled == 0  # still leased to the dead worker
    assert deliver(app, row.lease_until).outcomes == {"sent": 1}

    (row,) = rows(app)
    assert row.status == "sent" and row.attempts == 2 and row.payload is None
    assert [m["Message-ID"] for m in smtp_sink.messages] == [f"<{row_id}@gatehouse.test>"]
    # What the killed worker had already handed over carries the same Message-ID: a duplicate
    # (had the server kept it) is recognisable as the same mail.
    assert [m["Message-ID"] for m in smtp_sink.held] == [f"<{row_id}@gatehouse.test>"]


def test_two_workers_at_once_send_each_mail_once(app, smtp_sink):
    """PostgreSQL: FOR UPDATE SKIP LOCKED gives each worker its own rows; SQLite: one claimer at a time."""
    ids = queue(app, 40)
    barrier = threading.Barrier(2)
    reports = []

    def worker():
        barrier.wait()
        reports.append(deliver(app))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.outcomes.get("sent", 0) for r in reports) == 40
    assert all(r.outcomes.get("sent") for r in reports)  # both took a share
    message_ids = [m["Message-ID"] for m in smtp_sink.messages]
    assert sorted(message_ids) == sorted(f"<{i}@gatehouse.test>" for i in ids)
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(app))


def test_inline_delivery_reaches_the_sink_and_survives_smtp_errors(make_config, smtp_sink):
    from gatehouse import create_app
    from gatehouse.outbox.inline import EXTENSION

    app = create_app(make_config(**mail_settings(smtp_sink, OUTBOX_INLINE="1")))
    try:
        client = app.test_client()
        smtp_sink.reply = "550 5.7.1 refused"
        client.post("/auth/register", json={"email": "first@example.com", "password": "correct horse battery"})
        inline = app.extensions[EXTENSION]
        deadline = now() + timedelta(seconds=10)
        while rows(app)[0].status != "failed" and now() < deadline:
            threading.Event().wait(0.02)
        assert rows(app)[0].status == "failed"

        smtp_sink.reply = None
        client.post("/auth/register", json={"email": "second@example.com", "password": "correct horse battery"})
        (mail,) = smtp_sink.wait_for(1)
        assert mail["To"] == "second@example.com"
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()  # stops the thread
    assert not inline.running


def test_without_mail_server_mails_are_printed_with_their_code(make_config, capsys):
    from gatehouse import create_app

    app = create_app(make_config(OUTBOX_INLINE="0"))
    try:
        app.test_client().post("/auth/register", json={"email": "console@example.com",
                                                       "password": "correct horse battery"})
        assert deliver(app).outcomes == {"sent": 1}
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    out = capsys.readouterr().out
    assert "To: console@example.com" in out and "Your verification code is:" in out
    assert any(line.strip().isdigit() and len(line.strip()) == 6 for line in out.splitlines())


@pytest.mark.parametrize(("error", "kind"), [
    (ConnectionRefusedError(111, "Connection refused"), "Transient"),
    (TimeoutError("timed out"), "Transient"),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "Transient"),
    (smtplib.SMTPConnectError(554, b"no service"), "Transient"),
    (smtplib.SMTPAuthenticationError(535, b"bad credentials"), "Transient"),
    (smtplib.SMTPSenderRefused(451, b"try later", "a@b.c"), "Transient"),
    (smtplib.SMTPDataError(552, b"too big"), "Permanent"),
    (smtplib.SMTPRecipientsRefused({"x@y.z": (450, b"mailbox busy")}), "Transient"),
    (smtplib.SMTPRecipientsRefused({"x@y.z": (550, b"no such user")}), "Permanent"),
    (ValueError("cannot build the message"), "Permanent"),
])
def test_smtp_failures_are_classified_by_reply(error, kind):
    classified = classify(error)
    assert type(classified).__name__ == kind
    assert classified.reason
