"""flask-jwt-extended's error callbacks, answered as problem details (never its default {"msg"})."""
from __future__ import annotations

from flask_jwt_extended import JWTManager

from api.problems import problem_response
from gatehouse.errors import TokenExpired, TokenInvalid, TokenRevoked


def install(manager: JWTManager) -> None:
    manager.expired_token_loader(lambda _header, _payload: problem_response(TokenExpired()))
    manager.invalid_token_loader(lambda _reason: problem_response(TokenInvalid()))
    manager.unauthorized_loader(lambda _reason: problem_response(TokenInvalid()))
    manager.needs_fresh_token_loader(lambda _header, _payload: problem_response(TokenInvalid()))
    manager.revoked_token_loader(lambda _header, _payload: problem_response(TokenRevoked()))
    manager.user_lookup_error_loader(lambda _header, _payload: problem_response(TokenRevoked()))
    manager.token_verification_failed_loader(lambda _header, _payload: problem_response(TokenInvalid()))
