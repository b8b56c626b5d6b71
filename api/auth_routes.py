"""/auth/*: register, login, refresh, logout, me."""
from __future__ import annotations

from flask import request

from api import bp
from api.auth import caller
from api.routing import endpoint, reply
from api.schemas import AuthResult, MeResult, SessionOut, TokensOut, TokensResult, UserOut
from gatehouse.clock import now
from gatehouse.params import LoginParams, LogoutParams, RefreshParams, RegisterParams
from gatehouse.services import accounts, sessions
from gatehouse.services.accounts import SignIn


def client() -> dict:
    return {"ip_address": request.remote_addr, "user_agent": request.user_agent.string}


def signed_in(result: SignIn, status: int):
    return reply(AuthResult.model_construct(user=UserOut.of(result.user), tokens=TokensOut.of(result.tokens),
                                            session=SessionOut.of(result.session, result.session.id)), status)


@endpoint(bp, "/auth/register", "POST", body=RegisterParams, responses={201: AuthResult},
          summary="Create an account and sign in", errors=(409,))
def register(params: RegisterParams):
    return signed_in(accounts.register(params, now=now(), **client()), 201)


@endpoint(bp, "/auth/login", "POST", body=LoginParams, responses={200: AuthResult},
          summary="Sign in with email or username and password", errors=(401,))
def login(params: LoginParams):
    return signed_in(accounts.login(params, now=now(), **client()), 200)


@endpoint(bp, "/auth/refresh", "POST", body=RefreshParams, responses={200: TokensResult},
          summary="Exchange a refresh token for a new pair (rotation)", errors=(401,))
def refresh(params: RefreshParams):
    pair = accounts.refresh(params.refresh_token, now())
    return reply(TokensResult.model_construct(tokens=TokensOut.of(pair)))


@endpoint(bp, "/auth/logout", "POST", body=LogoutParams, auth=True, responses={204: None},
          summary="Revoke this session, or all of the user's")
def logout(params: LogoutParams):
    accounts.logout(caller(), all_sessions=params.all_sessions, now=now())
    return reply(None, 204)


@endpoint(bp, "/auth/me", "GET", auth=True, responses={200: MeResult}, summary="The caller and its session")
def me():
    who = caller()
    sessions.touch(who.snapshot.session, now())
    return reply(MeResult.model_construct(user=UserOut.of(who.snapshot.user),
                                          session=SessionOut.of(who.snapshot.session, who.session_id)))
