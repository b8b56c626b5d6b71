"""One WebSocket after its handshake: the socket, its wsproto state, and the bytes waiting to go out.

flask-sock (simple-websocket over wsproto) answers the upgrade in the request's gunicorn thread;
`take_over` then moves the connection out of that thread's hands, so the thread goes back to
serving HTTP, and the process's loop (gatehouse.realtime.loop) drives the socket from then on.
A Wire never blocks: the loop writes what it can and waits for the socket to drain.
"""
from __future__ import annotations

import os
import socket
import time

from wsproto.connection import Connection as Protocol
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode
from wsproto.utilities import LocalProtocolError

RECEIVE_BYTES = 16384  # also bounds what one read can inflate to (permessage-deflate)
CLOSE_WAIT_SECONDS = 5  # a client that never answers our close frame is cut off after this


class _SmallMessagesPlain(PerMessageDeflate):
    """permessage-deflate as negotiated, but a sender chooses per message (RFC 7692 §6): events of a
    few hundred bytes go uncompressed (a fresh compressor costs 60 µs, more than the bytes it would
    save on a fan-out), larger ones compressed each on its own (server_no_context_takeover is always
    ours to choose, §7.1.1.1). An idle socket so keeps no compressor, and inflates what its client
    compresses as before."""

    SMALL = 1024

    def frame_outbound(self, proto, opcode, rsv, data, fin):
        if fin and opcode is not Opcode.CONTINUATION and len(data) < self.SMALL:
            return rsv, data
        return super().frame_outbound(proto, opcode, rsv, data, fin)


class Wire:
    def __init__(self, sock: socket.socket, protocol: Protocol, max_message: int, max_pending: int):
        sock.setblocking(False)
        self.sock = sock
        self.protocol = protocol
        self.max_message = max_message
        self.max_pending = max_pending
        self.pending = bytearray()  # framed bytes not yet accepted by the kernel
        self._parts: list[str | bytes] = []
        self._length = 0
        self.awaiting_pong = False
        self.close_code: int | None = None  # the peer's close code, once known
        self.closing_since: float | None = None  # monotonic time our close frame was queued
        self.abandon = False  # end as soon as the close frame is written
        self.finished = False  # nothing more is read or written

    @classmethod
    def take_over(cls, ws, max_message: int, max_pending: int) -> "Wire":
        """The connection of simple-websocket's `ws`, moved out of the server's hands.

        The server (gunicorn) closes its socket object when the request ends; a duplicate of the
        descriptor keeps the connection, and the server's descriptor is pointed at a fresh socket
        that was never connected, so that its close (and its graceful shutdown, which would send a
        FIN) touches nothing of ours. `ws` itself is marked closed, so flask-sock's own close after
        the route sends nothing either.
        """
        theirs = ws.sock
        ours = theirs.dup()
        with socket.socket(theirs.family, socket.SOCK_STREAM) as placeholder:
            os.dup2(placeholder.fileno(), theirs.fileno())
        ws.connected = False
        protocol = ws.ws.connection
        for extension in protocol._proto.extensions:  # wsproto's negotiated extensions (pinned version)
            if isinstance(extension, PerMessageDeflate):
                extension.__class__ = _SmallMessagesPlain
                extension.server_no_context_takeover = True
        return cls(ours, protocol, max_message, max_pending)

    # ---- output ----------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.protocol.state is ConnectionState.OPEN and self.closing_since is None

    def send_text(self, text: str) -> None:
        if self.open:
            self.pending += self.protocol.send(TextMessage(data=text))

    def ping(self) -> bool:
        """A ping, unless the last one went unanswered (then False: the peer is gone)."""
        if self.awaiting_pong:
            return False
        if self.open:
            self.pending += self.protocol.send(Ping())
            self.awaiting_pong = True
        return True

    def close(self, code: int, reason: str, wait: bool = True) -> None:
        """Queue our close frame; the socket ends when the peer answers it, after CLOSE_WAIT_SECONDS,
        or (wait=False: the peer is gone or broke the protocol) as soon as the frame is written."""
        if self.protocol.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.pending += self.protocol.send(CloseConnection(code=code, reason=reason))
        if self.closing_since is None:
            self.closing_since = time.monotonic()
        if not wait:
            self.abandon = True

    def flush(self) -> bool:
        """Write what the kernel takes; whether everything went. A peer that lets more than
        max_pending bytes pile up (it stopped reading) is cut off."""
        while self.pending and not self.finished:
            try:
                sent = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.finish()
                return True
            del self.pending[:sent]
        if len(self.pending) > self.max_pending:
            self.finish()
            return True
        if not self.pending and (self.abandon or self.protocol.state is ConnectionState.CLOSED):
            self.finish()  # both close frames are through, or the peer is not worth waiting for
        elif not self.pending and self.closing_since is not None:
            self._half_close()
        return not self.pending

    def _half_close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)  # the peer reads our close frame, then EOF
        except OSError:
            pass

    def overdue(self, now: float) -> bool:
        return self.closing_since is not None and now - self.closing_since >= CLOSE_WAIT_SECONDS

    def finish(self) -> None:
        """Nothing more is read or written; the loop closes the socket (shut) once it has let go of it."""
        self.finished = True
        self.pending.clear()

    def shut(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- input -----------------------------------------------------------------------------------

    def receive(self) -> list[str | bytes]:
        """Read what arrived; the complete messages in it. Pings are answered, pongs noted, a close
        answered; a message beyond max_message closes with 1009, a broken frame as wsproto says."""
        messages: list[str | bytes] = []
        while not self.finished:
            try:
                data = self.sock.recv(RECEIVE_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self._lost()
                break
            try:
                self.protocol.receive_data(data)
                self._events(messages)
            except LocalProtocolError:
                self.finish()
            if len(data) < RECEIVE_BYTES:
                break
        return messages

    def _lost(self) -> None:
        if self.close_code is None:
            self.close_code = CloseReason.ABNORMAL_CLOSURE
        self.finish()

    def _events(self, messages: list) -> None:
        for event in self.protocol.events():
            if isinstance(event, Ping):
                if self.protocol.state is ConnectionState.OPEN:
                    self.pending += self.protocol.send(event.response())
            elif isinstance(event, Pong):
                self.awaiting_pong = False
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                # The peer's close is answered; a frame wsproto could not parse yields one too (the
                # state still open), which closes with its code (1002, 1007, ...).
                if self.protocol.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    self.pending += self.protocol.send(event.response())
                if self.closing_since is None:
                    self.closing_since = time.monotonic()
            elif isinstance(event, (TextMessage, BytesMessage)):
                if self.closing_since is not None:
                    continue
                self._length += len(event.data)
                if self._length > self.max_message:
                    self._parts.clear()
                    self.close(CloseReason.MESSAGE_TOO_BIG, "Message is too big")
                    continue
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts, self._length = self._parts, [], 0
                    messages.append(parts[0] if len(parts) == 1 else type(parts[0])().join(parts))
