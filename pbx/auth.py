"""Staff logins: users from the config, argon2 password hashes, database sessions behind an
HttpOnly cookie, a CSRF token per session, and limits on password guessing (pbx.ratelimit)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pbx.http import client_ip, served_over_https
from pbx.keys import LOGIN_GUARD, SETTINGS, STAFF_SESSIONS

SESSION_COOKIE = "calltrack_session"
LOGIN_CSRF_COOKIE = "calltrack_login_csrf"
# verified when the user name is unknown, so a wrong name takes as long as a wrong password
UNKNOWN_USER_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$IfNHwthKPhluChi52nbspg"
    "$spy7NfyN/1I49cgFaMQo0Myzo3iQrH4gu/ty8x/BPpQ"
)


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class StaffUser:
    name: str
    role: Literal["admin", "staff"]
    csrf: str  # this session's token: every form posts it back

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


_USER = web.RequestKey("staff_user", StaffUser)


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    """HttpOnly, SameSite=Lax (no cross-site POST carries it), Secure when served over https."""
    response.set_cookie(
        name, value, httponly=True, samesite="Lax", secure=served_over_https(request), path="/"
    )


async def current_user(request: web.Request) -> StaffUser | None:
    """The logged-in user, if the session cookie opens a live session of a configured user."""
    if _USER in request:
        return request[_USER]
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    session = await request.app[STAFF_SESSIONS].find(token)
    if session is None:
        return None
    configured = next((u for u in request.app[SETTINGS].users if u.name == session.user), None)
    if configured is None:  # removed from the config: the login ends with it
        return None
    if not session.opened_with(configured.password_argon2):  # a new password ends old logins
        await request.app[STAFF_SESSIONS].end(token)
        return None
    user = StaffUser(configured.name, configured.role, session.csrf)
    request[_USER] = user
    return user


def login_url(request: web.Request) -> str:
    return "/login?next=" + quote(request.path_qs, safe="")


async def require_user(request: web.Request, admin: bool = False) -> StaffUser:
    """The logged-in user; others are sent to the login page, staff away from admin pages."""
    user = await current_user(request)
    if user is None:
        raise web.HTTPSeeOther(login_url(request))
    if admin and not user.is_admin:
        raise web.HTTPForbidden(reason="this page is for admins")
    return user


def check_csrf(expected: str | None, sent: object) -> None:
    """Forms carry a token only our own pages know; anything else is refused."""
    # compare_digest takes ASCII text only (ours is); a forged cookie or field may be anything
    if (
        not expected
        or not isinstance(sent, str)
        or not (expected.isascii() and sent.isascii())
        or not hmac.compare_digest(expected, sent)
    ):
        raise web.HTTPForbidden(
            reason="the form's CSRF token is missing or invalid; reload the page"
        )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


async def log_in(request: web.Request, name: str, password: str) -> str | None:
    """A new session token when name and password match; None otherwise; raises LoginRefused
    when the login guard does not let the password be checked now.

    Argon2 takes ~0.2 s of CPU on purpose, so the guard runs it in a thread, a few at a time.
    """
    await log_out(request)  # a login always starts a new session: a planted one ends here
    configured = next((u for u in request.app[SETTINGS].users if u.name == name), None)
    hashed = configured.password_argon2 if configured else UNKNOWN_USER_HASH

    def verify() -> bool:
        return verify_password(hashed, password) and configured is not None

    if not await request.app[LOGIN_GUARD].check(name, client_ip(request), verify):
        return None
    assert configured is not None  # verify() said so
    return await request.app[STAFF_SESSIONS].create(configured.name, configured.password_argon2)


async def log_out(request: web.Request) -> None:
    if token := request.cookies.get(SESSION_COOKIE):
        await request.app[STAFF_SESSIONS].end(token)
