"""How a rendered mail leaves the process: SMTP through Flask-Mail, or the console in development.

Every failure is raised as Transient (retry later) or Permanent (never retry), so the worker holds
one rule for both and no SMTP detail leaks past this module.
"""
from __future__ import annotations

import smtplib
import sys
import threading

from flask import current_app
from flask_mail import Connection, Message


class DeliveryError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason[:500]


class Transient(DeliveryError):
    """Try again later: the server is down, busy (4xx) or our credentials are being fixed."""


class Permanent(DeliveryError):
    """Never try again: the server refused this mail (5xx) or it cannot be built."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}".strip()
    return f"{type(exc).__name__}: {exc}".strip()


def classify(exc: BaseException) -> DeliveryError:
    """4xx replies and connection trouble are transient; 5xx replies are permanent (RFC 5321 §4.2.1)."""
    reason = _describe(exc)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        reason = "; ".join(f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                           for code, msg in exc.recipients.values())
        return Transient(reason) if any(400 <= code < 500 for code in codes) else Permanent(reason)
    # A refused greeting or login is about the server or our settings, not this mail: retry it.
    if isinstance(exc, (smtplib.SMTPConnectError, smtplib.SMTPAuthenticationError)):
        return Transient(reason)
    if isinstance(exc, smtplib.SMTPResponseException):
        return Permanent(reason) if 500 <= exc.smtp_code < 600 else Transient(reason)
    if isinstance(exc, (smtplib.SMTPException, OSError)):  # disconnects, refused connections, time-outs
        return Transient(reason)
    return Permanent(reason)


class _TimedConnection(Connection):
    """Flask-Mail's connection with a socket time-out, so a stalled server cannot hold a worker forever."""

    def __init__(self, mail, timeout: float):
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self):
        mail = self.mail
        smtp = smtplib.SMTP_SSL if mail.use_ssl else smtplib.SMTP
        host = smtp(mail.server, mail.port, timeout=self.timeout)
        try:
            if mail.use_tls:
                host.starttls()
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
        except BaseException:
            host.close()
            raise
        return host


class SmtpTransport:
    """One SMTP connection reused for a batch; dropped after any failure and reopened on the next send."""

    def __init__(self):
        self._mail = current_app.extensions["mail"]
        self._timeout = current_app.config["MAIL_TIMEOUT"]
        self._connection: _TimedConnection | None = None

    def send(self, message: Message) -> None:
        try:
            if self._connection is None:
                self._connection = _TimedConnection(self._mail, self._timeout).__enter__()
            self._connection.send(message)
        except Exception as exc:
            self.close()
            raise classify(exc) from exc

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.host is not None:
            try:
                connection.host.quit()
            except (smtplib.SMTPException, OSError):
                connection.host.close()


_console_lock = threading.Lock()


class ConsoleTransport:
    """Development without MAIL_SERVER: the mail is printed to stdout, its code readable there."""

    def send(self, message: Message) -> None:
        text = "\n".join([
            "----- mail (not sent: MAIL_SERVER is unset) -----",
            f"Message-ID: {message.msgId}",
            f"From: {message.sender}",
            f"To: {', '.join(message.recipients)}",
            f"Subject: {message.subject}",
            "",
            message.body.rstrip(),
            "----- end of mail -----",
        ])
        with _console_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        pass


def open_transport() -> SmtpTransport | ConsoleTransport:
    return ConsoleTransport() if current_app.config["MAIL_CONSOLE"] else SmtpTransport()
