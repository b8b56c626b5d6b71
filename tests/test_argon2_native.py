"""The native argon2id builds (AVX2, AVX-512): standard PHC strings both ways with argon2-cffi, the
widest build the CPU runs chosen, and a safe fallback."""
from __future__ import annotations

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
vector_cpu = pytest.mark.skipif(not argon2_native.runnable(),
                                reason="this CPU has neither AVX2 nor AVX-512: the fallback runs")


def portable() -> PasswordHasher:
    return PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1, type=Type.ID)


@pytest.fixture(params=[level.name for level in argon2_native.LEVELS])
def native(request) -> argon2_native.NativeArgon2:
    """Each build this CPU can run, in turn."""
    level = next(level for level in argon2_native.LEVELS if level.name == request.param)
    if level not in argon2_native.runnable():
        pytest.skip(f"this CPU has no {level.label}")
    assert argon2_native.library(level).is_file(), "built by make: python -m gatehouse.security.argon2_native build"
    return argon2_native.NativeArgon2(level)


@vector_cpu
def test_the_application_hashes_with_the_widest_build_the_cpu_runs(app):
    assert app.extensions["gatehouse.hasher"]._native is argon2_native.load() is not None
    assert argon2_native.load().level == argon2_native.runnable()[0]


@vector_cpu
def test_hashes_of_one_build_verify_with_every_other(native):
    others = [argon2_native.NativeArgon2(level) for level in argon2_native.runnable()]
    stored = native.hash(PASSWORD.encode(), **PRODUCTION)
    for other in others:
        assert other.verify(stored, PASSWORD.encode())
        assert not other.verify(stored, (PASSWORD + "x").encode())


@vector_cpu
def test_a_native_hash_is_a_standard_string_that_argon2_cffi_verifies(native):
    stored = native.hash(PASSWORD.encode(), **PRODUCTION)
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (params.memory_cost, params.time_cost, params.parallelism, params.salt_len, params.hash_len) == \
        (19456, 2, 1, 16, 32)
    assert portable().verify(stored, PASSWORD)
    with pytest.raises(VerifyMismatchError):
        portable().verify(stored, PASSWORD + "x")


@vector_cpu
def test_an_argon2_cffi_hash_verifies_natively_and_a_wrong_password_does_not(native):
    stored = portable().hash(PASSWORD)
    assert native.verify(stored, PASSWORD.encode())
    assert not native.verify(stored, (PASSWORD + "x").encode())
    assert not native.verify(stored.replace("$argon2id$", "$argon2i$"), PASSWORD.encode())


@vector_cpu
@pytest.mark.parametrize("stored", ["", "$argon2id$", "$argon2id$v=19$m=19456,t=2,p=1$bm9wZQ$", "plain text",
                                    "$argon2id$v=19$m=19456,t=2,p=1$" + "A" * 300])
def test_malformed_strings_never_match(native, stored):
    assert native.verify(stored, PASSWORD.encode()) is False


@vector_cpu
def test_the_hasher_reads_every_kind_of_stored_hash(native):
    hasher = Hasher(**PRODUCTION, concurrency=1, queue_timeout=5, native=native)
    argon2i = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1, type=Type.I).hash(PASSWORD)
    for stored in (hasher.hash(PASSWORD), portable().hash(PASSWORD)):
        assert hasher.verify(stored, PASSWORD) == (True, False)
        assert hasher.verify(stored, "wrong " + PASSWORD) == (False, False)
    assert hasher.verify(argon2i, PASSWORD) == (True, True)  # older type: verified, then rehashed
    assert hasher.verify(None, PASSWORD) == (False, False)


@vector_cpu
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


def test_the_widest_build_present_is_taken_and_without_one_argon2_cffi_is_used(monkeypatch, tmp_path):
    avx512 = frozenset({"sse2", "avx2", "avx512f"})
    for level in argon2_native.LEVELS:
        (tmp_path / argon2_native.library(level).name).write_bytes(b"")
    loaded = []
    monkeypatch.setattr(argon2_native, "LIBRARIES", tmp_path)
    monkeypatch.setattr(argon2_native.NativeArgon2, "__init__", lambda self, level: loaded.append(level.name))
    argon2_native.load.cache_clear()
    try:
        for flags, expected in ((avx512, ["avx512"]), (frozenset({"sse2", "avx2"}), ["avx2"]),
                                (frozenset({"sse2", "avx512f"}), []), (frozenset(), [])):
            loaded.clear()
            monkeypatch.setattr(argon2_native, "cpu_flags", lambda: flags)
            argon2_native.load.cache_clear()
            assert (argon2_native.load() is not None) == bool(expected) and loaded == expected
        loaded.clear()
        (tmp_path / "libargon2-avx512.so").unlink()  # not built (say, an older compiler): the next level
        monkeypatch.setattr(argon2_native, "cpu_flags", lambda: avx512)
        argon2_native.load.cache_clear()
        assert argon2_native.load() is not None and loaded == ["avx2"]
        (tmp_path / "libargon2-avx2.so").unlink()
        argon2_native.load.cache_clear()
        assert argon2_native.load() is None
    finally:
        argon2_native.load.cache_clear()
    hasher = Hasher(memory_kib=1024, time_cost=1, parallelism=1, concurrency=1, queue_timeout=5, native=None)
    stored = hasher.hash(PASSWORD)
    assert hasher.verify(stored, PASSWORD) == (True, False)
    assert hasher.verify(stored, PASSWORD + "x") == (False, False)
