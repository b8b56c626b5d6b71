"""Every table of CONTRACT §8, one module per aggregate."""
from gatehouse.models.mfa import MfaChallenge, MfaTotp, Passkey, RecoveryCode, WebauthnChallenge
from gatehouse.models.outbox import OutboxMessage
from gatehouse.models.records import AiUsage, IdempotencyKey, OneTimeCode, SignInFailure
from gatehouse.models.security import LinkToken, SecurityEvent
from gatehouse.models.session import Device, RefreshToken, Session
from gatehouse.models.shared_state import PresenceConnection, RateLimitWindow
from gatehouse.models.user import Subscription, User, UserSettings
from gatehouse.models.ws_ticket import WsTicket

__all__ = [
    "AiUsage", "Device", "IdempotencyKey", "LinkToken", "MfaChallenge", "MfaTotp", "OneTimeCode", "OutboxMessage", "Passkey",
    "PresenceConnection", "RateLimitWindow", "RecoveryCode", "RefreshToken", "SecurityEvent", "Session", "SignInFailure", "Subscription",
    "User", "UserSettings", "WebauthnChallenge", "WsTicket",
]
