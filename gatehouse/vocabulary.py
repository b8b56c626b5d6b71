"""The words of the contract's closed sets (CONTRACT §3), named once: the models' CHECK constraints,
the params that validate input, the API's response schemas and the portal's choices all read them here."""
from __future__ import annotations

from typing import Literal, get_args

Role = Literal["user", "admin"]
ShowStatus = Literal["visible", "hidden"]
Tier = Literal["free", "plus", "pro"]
SubscriptionStatus = Literal["active", "trialing", "past_due", "canceled"]
Digest = Literal["off", "daily", "weekly"]

ROLES: tuple[str, ...] = get_args(Role)
SHOW_STATUSES: tuple[str, ...] = get_args(ShowStatus)
TIERS: tuple[str, ...] = get_args(Tier)
SUBSCRIPTION_STATUSES: tuple[str, ...] = get_args(SubscriptionStatus)
DIGESTS: tuple[str, ...] = get_args(Digest)
