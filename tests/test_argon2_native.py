"""The AVX2 argon2id build: standard PHC strings both ways with argon2-cffi, and a safe fallback."""
from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import select, update

from gatehouse.extensions import db
from gatehouse.models import User
from gatehouse.security import argon2_native
from gatehouse.security.passwords import Hasher
from tests.actions import PASSWORD

PRODUCTION = dict(memory_kib=19456, time_cost=2, parallelism=1)
avx2 = pytest.mark.skipif(not argon2_native.cpu_has_avx2(), reason="this CPU has no AVX2: the fallback runs")


def portable() -> PasswordHasher:
    return PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1, type=Type.ID)


@pytest.fixture
def native() -> argon2_native.NativeArgon2:
    loaded = argon2_native.load()
    assert loaded is not None, "built by make: python -m gatehouse.security.argon2_native build"
    return loaded


@avx2
def test_the_application_hashes_with_the_avx2_build_on_a_cpu_that_has_it(app):
    assert app.extensions["gatehouse.hasher"]._native is argon2_native.load() is not None


@avx2
def test_a_native_hash_is_a_standard_string_that_argon2_cffi_verifies(native):
    stored = native.hash(PASSWORD.encode(), **PRODUCTION)
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (params.memory_cost, params.time_cost, params.parallelism, params.salt_len, params.hash_len) == \
        (19456, 2, 1, 16, 32)
    assert portable().verify(stored, PASSWORD)
    with pytest.raises(VerifyMismatchError):
        portable().verify(stored, PASSWORD + "x")


@avx2
def test_an_argon2_cffi_hash_verifies_natively_and_a_wrong_password_does_not(native):
    stored = portable().hash(PASSWORD)
    assert native.verify(stored, PASSWORD.encode())
    assert not native.verify(stored, (PASSWORD + "x").encode())
    assert not native.verify(stored.replace("$argon2id$", "$argon2i$"), PASSWORD.encode())


@avx2
@pytest.mark.parametrize("stored", ["", "$argon2id$", "$argon2id$v=19$m=19456,t=2,p=1$bm9wZQ$", "plain text",
                                    "$argon2id$v=19$m=19456,t=2,p=1$" + "A" * 300])
def test_malformed_strings_never_match(native, stored):
    assert native.verify(stored, PASSWORD.encode()) is False


@avx2
def test_the_hasher_reads_every_kind_of_stored_hash(native):
    hasher = Hasher(**PRODUCTION, concurrency=1, queue_timeout=5, native=native)
    argon2i = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1, type=Type.I).hash(PASSWORD)
    for stored in (hasher.hash(PASSWORD), portable().hash(PASSWORD)):
        assert hasher.verify(stored, PASSWORD) == (True, False)
        assert hasher.verify(stored, "wrong " + PASSWORD) == (False, False)
    assert hasher.verify(argon2i, PASSWORD) == (True, True)  # older type: verified, then rehashed
    assert hasher.verify(None, PASSWORD) == (False, False)


@avx2
def test_old_portable_hashes_keep_working_and_are_rehashed_natively_at_login(app, api):
    api.register(email="old@example.com")
    older = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1, type=Type.ID).hash(PASSWORD)
    with app.app_context():
        db.session.execute(update(User).values(password_hash=older))
        db.session.commit()
    assert app.extensions["gatehouse.hasher"].verify(older, PASSWORD) == (True, False)  # same parameters
    stronger = Hasher(memory_kib=2048, time_cost=2, parallelism=1, concurrency=1, queue_timeout=5,
                      native=argon2_native.load())
    app.extensions["gatehouse.hasher"] = stronger
    api.login(email="old@example.com")
    with app.app_context():
        stored = db.session.execute(select(User.password_hash)).scalar_one()
    assert stored != older and extract_parameters(stored).memory_cost == 2048
    assert portable().verify(stored, PASSWORD)  # the rehash is a standard string too


def test_without_avx2_or_without_the_build_argon2_cffi_is_used(monkeypatch, tmp_path):
    argon2_native.load.cache_clear()
    try:
        monkeypatch.setattr(argon2_native, "cpu_has_avx2", lambda: False)
        assert argon2_native.load() is None
        argon2_native.load.cache_clear()
        monkeypatch.setattr(argon2_native, "cpu_has_avx2", lambda: True)
        monkeypatch.setattr(argon2_native, "LIBRARY", Path(tmp_path / "missing.so"))
        assert argon2_native.load() is None
    finally:
        argon2_native.load.cache_clear()
    hasher = Hasher(memory_kib=1024, time_cost=1, parallelism=1, concurrency=1, queue_timeout=5, native=None)
    stored = hasher.hash(PASSWORD)
    assert hasher.verify(stored, PASSWORD) == (True, False)
    assert hasher.verify(stored, PASSWORD + "x") == (False, False)
