"""GET /ws (CONTRACT §6): the handshake is authenticated before any upgrade; POST /auth/ws-ticket."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, g, request, session

from api import bp
from api.auth import bearer_token, caller
from api.routing import endpoint, reply
from api.schemas import Out, Timestamp
from gatehouse import metrics
from gatehouse.clock import now
from gatehouse.errors import Forbidden, RateLimited, ServiceUnavailable, TokenInvalid
from gatehouse.extensions import sock
from gatehouse.realtime.hub import hub
from gatehouse.services import sessions, ws_tickets
from gatehouse.runtime import setting

realtime = Blueprint("realtime", __name__)
SEAT_RETRY_SECONDS = 30


class WsTicketResult(Out):
    ticket: str
    expires_at: Timestamp


@endpoint(bp, "/auth/ws-ticket", "POST", auth=True, responses={201: WsTicketResult},
          summary="A single-use ticket, valid 60 s, that opens /ws for this session (browsers)")
def ws_ticket():
    ticket, expires_at = ws_tickets.issue(caller(), now())
    return reply(WsTicketResult.model_construct(ticket=ticket, expires_at=expires_at), 201)


@realtime.before_request
def handshake():
    """Who opens the socket, decided on the plain HTTP request: a refusal is a problem+json response
    and no WebSocket is ever opened. The connection's credential lapses with the access token
    (bearer), with a fresh access token's lifetime (ticket), or with the portal session."""
    if hub().registry.full():
        raise ServiceUnavailable("This process holds as many WebSockets as it can; try again shortly.",
                                 retry_after=5)
    moment = now()
    if request.args.get("ticket"):
        # A ticket opens its own session's socket only. Presented together with another session's
        # credential (a bearer token, the portal cookie) it is refused and stays unspent.
        holder = None
        if request.headers.get("Authorization"):
            holder = sessions.verify(bearer_token(), moment)[0].session_id
        elif session.get("sid"):
            holder = sessions.resume(session["sid"], moment).session.id
        lifetime = timedelta(seconds=setting("ACCESS_TOKEN_TTL"))
        caller = ws_tickets.redeem(request.args["ticket"], moment, session_id=holder)
        g.ws = sessions.Member.of(caller), moment + lifetime
    elif request.headers.get("Authorization"):
        # The plain columns only (no account rows): a reconnect storm is thousands of these at once.
        who, claims = sessions.verify(bearer_token(), moment)
        g.ws = who, datetime.fromtimestamp(claims["exp"], timezone.utc)
    elif session.get("sid"):
        if request.headers.get("Origin") != f"{request.scheme}://{request.host}":
            raise Forbidden("A portal session opens /ws only from the service's own origin.")
        caller = sessions.resume(session["sid"], moment)
        g.ws = sessions.Member.of(caller), caller.snapshot.session.expires_at
    else:
        raise TokenInvalid("Open /ws with Authorization: Bearer <accessToken>, a ?ticket= from "
                           "POST /auth/ws-ticket, or the portal's session cookie.")
    # The user's fair share of this instance (CONTRACT §6), taken before the upgrade.
    g.ws_seat = hub().seats.take(g.ws[0].user_id)
    if g.ws_seat is None:
        metrics.rate_limited.labels("websocket").inc()
        raise RateLimited(f"This account holds {setting('WS_CONNECTIONS_PER_USER')} WebSockets on this instance "
                          "already; close one first.", retry_after=SEAT_RETRY_SECONDS)


@realtime.teardown_request
def give_back_seat(_exc):
    """A seat taken by a handshake that never became a connection (the upgrade failed)."""
    seat = g.pop("ws_seat", None)
    if seat is not None:
        hub().seats.give_back(seat)


@sock.route("/ws", bp=realtime)
def ws(socket):
    who, expires_at = g.ws
    hub().serve(socket, who, expires_at, g.pop("ws_seat"))


bp.register_blueprint(realtime)
