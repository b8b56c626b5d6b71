"""A real SMTP sink on loopback (aiosmtpd) that the mail tests read, and helpers to use it."""
from __future__ import annotations

import asyncio
import re
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from tests.servers import free_port

CODE_RE = re.compile(r"^\s{4}(\d{6})\s*$", re.MULTILINE)


class Sink:
    """Receives mail on 127.0.0.1:`port`. `reply` answers DATA with another reply (e.g. a 550);
    `hold` keeps the DATA reply back until `release` is set (a stalled server, to kill a worker mid-send)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.held: list[EmailMessage] = []
        self.reply: str | None = None
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self._controller: Controller | None = None

    # aiosmtpd handler hook
    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        if self.hold:
            self.held.append(message)
            self.entered.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            return "451 4.3.0 aborted by the test"
        if self.reply:
            return self.reply
        self.messages.append(message)
        return "250 2.0.0 OK"

    def start(self) -> Sink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} mails arrived, expected {count}"
        return self.messages

    def to(self, address: str, subject: str = "") -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"] and subject in m["Subject"]]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def code_in(message: EmailMessage) -> str:
    found = CODE_RE.findall(text_of(message))
    assert len(found) == 1, text_of(message)
    return found[0]


def last_code(sink: Sink, address: str, subject: str) -> str:
    mails = sink.to(address, subject)
    assert mails, f"no mail '{subject}' to {address}; got {[m['Subject'] for m in sink.messages]}"
    return code_in(mails[-1])


def mail_settings(sink: Sink, **overrides: str) -> dict:
    """Settings that send to the sink; delivery is explicit (deliver()) unless OUTBOX_INLINE is given."""
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(sink.port), "MAIL_TIMEOUT": "10",
            "MAIL_DEFAULT_SENDER": "Gatehouse <no-reply@gatehouse.test>", "OUTBOX_INLINE": "0", **overrides}


def deliver(app, now=None):
    """One worker pass, as `flask outbox work --once` does it."""
    from gatehouse.extensions import db
    from gatehouse.outbox.worker import deliver_due

    with app.app_context():
        try:
            return deliver_due(now)
        finally:
            db.session.remove()


@pytest.fixture
def smtp_sink():
    sink = Sink().start()
    yield sink
    sink.stop()
