"""Password policy (CONTRACT §1), argon2id parameters, rehashing and the hashing cap."""
import unicodedata

import pytest
from argon2 import extract_parameters
from sqlalchemy import select

from gatehouse.errors import PasswordTooWeak, ServiceUnavailable
from gatehouse.extensions import db
from gatehouse.models import User
from gatehouse.security.passwords import Hasher, check_policy, common_passwords
from tests.actions import PASSWORD, problem


def test_production_parameters_are_the_owasp_profile():
    hasher = Hasher(memory_kib=19456, time_cost=2, parallelism=1, concurrency=1, queue_timeout=5)
    stored = hasher.hash(PASSWORD)
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19456, 2, 1)
    assert hasher.verify(stored, PASSWORD) == (True, False)
    assert hasher.verify(stored, PASSWORD + "x") == (False, False)


def test_the_common_list_is_large_and_from_the_package():
    assert len(common_passwords()) >= 10_000
    assert "qwerty123456" in common_passwords()


@pytest.mark.parametrize("length, ok", [(11, False), (12, True), (13, True)])
def test_minimum_length_boundary(length, ok):
    password = "Zq7#" + "v" * (length - 4)
    if ok:
        check_policy(password, min_length=12)
    else:
        with pytest.raises(PasswordTooWeak):
            check_policy(password, min_length=12)


def test_length_counts_code_points_after_nfkc():
    # "ﬀ" (one code point) is "ff" (two) after NFKC: 11 given code points count as 12.
    check_policy("\ufb00" + "xkq7vbn3mz", min_length=12)
    decomposed = unicodedata.normalize("NFD", "é") * 6  # 12 code points as sent, 6 after NFKC
    with pytest.raises(PasswordTooWeak):
        check_policy(decomposed, min_length=12)


@pytest.mark.parametrize("password", ["qwerty123456", "QWERTY123456", "1qaz2wsx3edc"])
def test_common_passwords_are_refused(password):
    with pytest.raises(PasswordTooWeak):
        check_policy(password, min_length=12)


@pytest.mark.parametrize("password", ["my-name-is-margaret!", "MARGARET-the-great-1", "x-margaret-x-y-z"])
def test_passwords_containing_the_email_local_part_or_username_are_refused(password):
    with pytest.raises(PasswordTooWeak):
        check_policy(password, min_length=12, email="margaret@example.com")
    with pytest.raises(PasswordTooWeak):
        check_policy(password, min_length=12, username="Margaret")


def test_no_composition_rules_and_long_passwords_are_whole(api):
    long_password = "a passphrase with only lowercase words " * 4  # 156 characters
    assert len(long_password) >= 128
    api.register(email="long@example.com", password=long_password)
    api.login(email="long@example.com", password=long_password)
    api.login(email="long@example.com", password=long_password[:128], expect=401)


def test_register_refuses_a_weak_password_with_password_too_weak(api):
    response = api.client.post("/auth/register", json={"email": "w@example.com", "password": "qwerty123456"})
    body = problem(response, 422, "password_too_weak")
    assert body["errors"][0]["field"] == "password"


def test_the_same_password_in_another_unicode_form_signs_in(api):
    composed = unicodedata.normalize("NFC", "café au lait, s'il vous plaît")
    api.register(email="nfc@example.com", password=composed)
    api.login(email="nfc@example.com", password=unicodedata.normalize("NFD", composed))


def test_a_login_rehashes_when_the_configured_parameters_changed(make_app, api):
    api.register(email="rehash@example.com")
    stronger = make_app(ARGON2_TIME_COST="3", ARGON2_MEMORY_KIB="2048")
    response = stronger.test_client().post("/auth/login", json={"email": "rehash@example.com",
                                                                "password": PASSWORD})
    assert response.status_code == 200
    with stronger.app_context():
        stored = db.session.execute(select(User.password_hash)).scalar_one()
    params = extract_parameters(stored)
    assert (params.time_cost, params.memory_cost) == (3, 2048)
    api.login(email="rehash@example.com")  # the old app verifies the new hash too


def test_the_hashing_cap_answers_503_with_retry_after_instead_of_queueing_forever(make_app):
    app = make_app(HASH_CONCURRENCY="1", HASH_QUEUE_TIMEOUT_MS="50")
    hasher = app.extensions["gatehouse.hasher"]
    hasher._slots.acquire()  # one computation already running
    try:
        response = app.test_client().post("/auth/login", json={"email": "x@example.com", "password": PASSWORD})
    finally:
        hasher._slots.release()
    problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"


def test_the_cap_bounds_concurrent_computations():
    hasher = Hasher(memory_kib=1024, time_cost=1, parallelism=1, concurrency=2, queue_timeout=0.01)
    hasher._slots.acquire()
    hasher._slots.acquire()
    with pytest.raises(ServiceUnavailable):
        hasher.hash("anything at all here")
    hasher._slots.release()
    assert hasher.hash("anything at all here").startswith("$argon2id$")
    hasher._slots.release()
