"""Test helpers that read like what a client of the API does."""
from __future__ import annotations

import itertools

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


class Api:
    def __init__(self, client):
        self.client = client

    def register(self, email: str | None = None, password: str = PASSWORD, expect: int = 201, **fields):
        email = email or f"user{next(_counter)}@example.com"
        response = self.client.post("/auth/register", json={"email": email, "password": password, **fields})
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def login(self, expect: int = 200, **body):
        body.setdefault("password", PASSWORD)
        response = self.client.post("/auth/login", json=body)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def get(self, path: str, token: str | None = None, **kwargs):
        return self.client.get(path, headers=bearer(token), **kwargs)

    def post(self, path: str, json=None, token: str | None = None, **kwargs):
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        return self.client.post(path, json=json, headers=headers, **kwargs)

    def patch(self, path: str, json=None, token: str | None = None, **kwargs):
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        return self.client.patch(path, json=json, headers=headers, **kwargs)

    def delete(self, path: str, json=None, token: str | None = None, **kwargs):
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        return self.client.delete(path, json=json, headers=headers, **kwargs)


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def problem(response, status: int, code: str) -> dict:
    """Assert a problem+json response with this status and code; returns its body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/problem+json", response.mimetype
    body = response.get_json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body
