"""argon2id hashing with a cap on concurrent computations, and the password policy of CONTRACT §1."""
from __future__ import annotations

import threading
import time
import unicodedata
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from gatehouse import metrics
from gatehouse.errors import PasswordTooWeak, ServiceUnavailable
from gatehouse.i18n import N_
from gatehouse.security.argon2_native import NativeArgon2

MAX_LENGTH = 1024  # far above the 128 the contract asks for; bounds the hashing work of one request


def normalize(password: str) -> str:
    """NFKC, so the same password typed on different keyboards hashes the same (NIST SP 800-63B)."""
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    # The 30,000 most common passwords of the zxcvbn project's leaked-password corpus.
    return frozenset(FREQUENCY_LISTS["passwords"])


def check_policy(password: str, *, min_length: int, email: str | None = None,
                 username: str | None = None, field: str = "password") -> None:
    """Raise PasswordTooWeak with the reason, against `field` (the body's name of the new password);
    no composition rules, never truncated."""
    text = normalize(password)
    if len(text) < min_length:
        raise PasswordTooWeak(f"The password must be at least {min_length} characters long.",
                              errors=[{"field": field, "message": f"must be at least {min_length} characters"}])
    if len(text) > MAX_LENGTH:
        raise PasswordTooWeak(f"The password must be at most {MAX_LENGTH} characters long.",
                              errors=[{"field": field, "message": f"must be at most {MAX_LENGTH} characters"}])
    folded = text.casefold()
    if folded in common_passwords():
        raise PasswordTooWeak(N_("This password is too common."),
                              errors=[{"field": field, "message": N_("is too common")}])
    personal = []
    if email:
        personal.append(email.split("@", 1)[0].casefold())
    if username:
        personal.append(username.casefold())
    for word in personal:
        # Very short local parts ("jo@...") would refuse half of all passwords; equality still counts.
        if folded == word or (len(word) >= 3 and word in folded):
            raise PasswordTooWeak(N_("The password must not contain your email address or username."),
                                  errors=[{"field": field,
                                           "message": N_("must not contain your email or username")}])


class Hasher:
    """argon2id with configured parameters; at most `concurrency` computations hold memory at once.

    With `native` (a vector build, see argon2_native) argon2id strings are made and checked there;
    argon2-cffi reads every other string and decides when a stored hash needs rehashing.
    """

    def __init__(self, memory_kib: int, time_cost: int, parallelism: int, concurrency: int,
                 queue_timeout: float, native: NativeArgon2 | None = None):
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                                  type=Type.ID)
        self._native = native
        self._slots = threading.BoundedSemaphore(concurrency)
        self._queue_timeout = queue_timeout
        self._dummy_hash: str | None = None

    def _slot(self):
        """Take a computation slot (counted in flight until release()), or 503 after the queue time-out."""
        if not self._slots.acquire(blocking=False):
            metrics.argon2_waiting.inc()
            started = time.perf_counter()
            try:
                got = self._slots.acquire(timeout=self._queue_timeout)
            finally:
                metrics.argon2_waiting.dec()
                metrics.argon2_wait.observe(time.perf_counter() - started)
            if not got:
                metrics.argon2_refused.inc()
                raise ServiceUnavailable("Too many sign-ins at once; try again in a moment.", retry_after=1)
        metrics.argon2_in_flight.inc()
        return self

    def release(self) -> None:
        metrics.argon2_in_flight.dec()
        self._slots.release()

    def hash(self, password: str) -> str:
        slots = self._slot()
        try:
            if self._native is not None:
                return self._native.hash(normalize(password).encode(), time_cost=self._ph.time_cost,
                                         memory_kib=self._ph.memory_cost, parallelism=self._ph.parallelism,
                                         salt_len=self._ph.salt_len, hash_len=self._ph.hash_len)
            return self._ph.hash(normalize(password))
        finally:
            slots.release()

    def verify(self, stored_hash: str | None, password: str) -> tuple[bool, bool]:
        """(matches, needs_rehash). Without a stored hash, a dummy is verified so timing reveals nothing."""
        if stored_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hash("dummy password that never matches")
            stored_hash = self._dummy_hash
            known = False
        else:
            known = True
        slots = self._slot()
        try:
            if self._native is not None and stored_hash.startswith("$argon2id$"):
                if not self._native.verify(stored_hash, normalize(password).encode()):
                    return False, False
            else:
                self._ph.verify(stored_hash, normalize(password))
            matches = known
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        finally:
            slots.release()
        return matches, matches and self._ph.check_needs_rehash(stored_hash)
