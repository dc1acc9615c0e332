"""Who may talk to the review app: bind rules, Host checks, reviewer tokens and names.

Rules:

- The server binds beyond loopback only when reviewer tokens exist (:func:`check_bind`).
- A loopback server answers only loopback ``Host`` names (defeats DNS rebinding).
- Once any reviewer exists (or the server is not on loopback), every request needs a token:
  ``Authorization: Bearer``, ``X-Autolabel-Token``, ``?token=`` or the cookie the page sets.
- Otherwise the reviewer names themself in the ``X-Reviewer`` header (other sites cannot set
  it without a CORS preflight, which fails).
- State-changing requests (anything but GET/HEAD/OPTIONS) must come from the page itself: an
  ``Origin`` other than the server's own, or ``Sec-Fetch-Site`` other than ``same-origin``
  or ``none``, gets 403 (:func:`origin_problem`); requests without these headers (scripts,
  curl) pass, since browsers always send ``Origin`` on cross-origin POSTs.

This module imports FastAPI at import time (only the review app imports it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request

from autolabel.errors import AuthError, InputError
from autolabel.review.queue import ReviewQueue

TOKEN_COOKIE = "autolabel_token"
REVIEWER_HEADER = "x-reviewer"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def origin_problem(method: str, scheme: str, headers: dict[str, str]) -> str | None:
    """Why a request must be refused as cross-origin, or None when it may proceed.

    Args:
        method: the HTTP method; GET/HEAD/OPTIONS change nothing and always pass.
        scheme: ``http`` or ``https`` (the server's own).
        headers: lower-case request header names to values.
    """
    if method.upper() in SAFE_METHODS:
        return None
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"origin: expected a request from the review page itself, got {fetch_site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    own = f"{scheme}://{headers.get('host', '')}"
    if origin.lower() != own.lower():
        return f"origin: expected {own[:100]}, got {origin[:100]!r}"
    return None


def check_bind(host: str, has_reviewers: bool) -> None:
    """Refuse to serve beyond loopback without reviewer tokens.

    Raises:
        AuthError: ``host`` is not loopback and no reviewer exists.
    """
    if not is_loopback(host) and not has_reviewers:
        raise AuthError(
            f"host {host}: binding beyond 127.0.0.1 needs reviewer tokens; create one with "
            "`autolabel reviewers add WORKSPACE NAME` (got 0 reviewers)"
        )


class Identity:
    """Who sends a request: ``mode`` is ``token`` (reviewer from a token) or ``name``."""

    def __init__(self, reviewer: str | None, mode: str) -> None:
        self.reviewer = reviewer
        self.mode = mode

    def require(self) -> str:
        """The reviewer's name (HTTP 401 when the request names none)."""
        if self.reviewer is None:
            raise HTTPException(
                401,
                "reviewer: expected a name in the X-Reviewer header (the page asks for it), "
                "got none",
            )
        return self.reviewer


def request_token(request: Request) -> str:
    """The token a request carries (header, query or cookie); empty when none."""
    auth = request.headers.get("authorization", "")
    return (
        (auth[7:].strip() if auth.lower().startswith("bearer ") else "")
        or request.headers.get("x-autolabel-token")
        or request.query_params.get("token")
        or request.cookies.get(TOKEN_COOKIE)
        or ""
    )


def identity_dependency(
    queue: Callable[[], ReviewQueue], *, loopback: bool
) -> Callable[[Request], Awaitable[Identity]]:
    """A FastAPI dependency resolving each request's :class:`Identity`.

    Args:
        queue: this thread's review queue (reviewer and token look-ups go through it).
        loopback: whether the server is bound to a loopback address.
    """

    async def identity(request: Request) -> Identity:
        # async: a 50 us indexed lookup is cheaper on the loop than a threadpool hop
        q = queue()
        if loopback:
            name = host_name(request.headers.get("host", ""))
            if not is_loopback(name):
                raise HTTPException(
                    400, f"host: expected 127.0.0.1, localhost or [::1], got {name!r}"
                )
        if not loopback or q.has_reviewers():
            return _token_identity(q, request_token(request))
        reviewer = request.headers.get(REVIEWER_HEADER) or None
        if reviewer is not None:
            try:
                q.check_reviewer_name(reviewer)
            except InputError as exc:
                raise HTTPException(400, str(exc)) from None
        return Identity(reviewer, "name")

    return identity


def _token_identity(q: ReviewQueue, token: str) -> Identity:
    if not token:
        raise HTTPException(
            401,
            "this review server needs a reviewer token: open the link printed by "
            "`autolabel reviewers add` or send 'Authorization: Bearer TOKEN'",
        )
    reviewer = q.reviewer_for_token(token)
    if reviewer is None:
        raise HTTPException(401, "reviewer token: unknown or revoked token")
    return Identity(reviewer, "token")
