"""/.well-known/jwks.json: the public half of the access-token signing key (CONTRACT §5)."""
from __future__ import annotations

from flask import current_app

from api import bp
from api.routing import endpoint, reply
from api.schemas import JwksResult


@endpoint(bp, "/.well-known/jwks.json", "GET", responses={200: JwksResult},
          summary="The public keys that verify access tokens; empty while tokens are HS256 (a shared secret)")
def jwks():
    signing = current_app.config["JWT_SIGNING_KEY"]
    keys = [signing.public_jwk()] if signing is not None else []
    return reply(JwksResult.model_construct(keys=keys), headers={"Cache-Control": "public, max-age=300"})
