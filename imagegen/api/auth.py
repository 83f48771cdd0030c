"""Bearer-token auth for the intake routes and who the caller is (``IMAGEGEN_API_TOKENS``, ``IMAGEGEN_ADMIN_TOKENS``).

A tenant token acts on its own tenant's jobs only; an admin token on every tenant's. With no token
configured at all the API is open, as it always was: every caller is an admin of tenant ``default``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, params, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imagegen.request import DEFAULT_TENANT

#: auto_error=False: we answer 401 (not FastAPI's 403) with the WWW-Authenticate header ourselves.
#: (The description is unchanged since before admin tokens: clients may pin it. Admin tokens are bearer
#: tokens of the same scheme, README "HTTP API".)
bearer_scheme = HTTPBearer(auto_error=False, description="One of the tokens in IMAGEGEN_API_TOKENS.")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the tenant its new jobs get, and whether it may see every tenant."""

    tenant: str
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """The tenant every query of this caller is limited to (None: an admin sees all)."""
        return None if self.admin else self.tenant

    def owns(self, tenant: str) -> bool:
        """Whether this caller may see and act on a job (or batch) of ``tenant``."""
        return self.admin or tenant == self.tenant


#: The caller of an API with no tokens configured.
OPEN = Caller(DEFAULT_TENANT, admin=True)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def token_matches(given: str, tokens: frozenset[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, comparing every token in constant time (no early exit)."""
    given_bytes = _encode(given)
    results = [hmac.compare_digest(given_bytes, _encode(t)) for t in tokens]
    return any(results)


def identify(given: str, tenants: Mapping[str, str], admins: frozenset[str]) -> Caller | None:
    """The caller that ``given`` names, or None; every configured token is compared, in constant time."""
    given_bytes = _encode(given)
    tenant_hits = [tenant for token, tenant in tenants.items() if hmac.compare_digest(given_bytes, _encode(token))]
    if token_matches(given, admins):
        return Caller(DEFAULT_TENANT, admin=True)
    return Caller(tenant_hits[0]) if tenant_hits else None


def require_token(tenants: Mapping[str, str], admins: frozenset[str] = frozenset()) -> params.Depends:
    """A dependency that admits only ``Authorization: Bearer <a configured token>`` and records the caller."""
    tenants = dict(tenants)

    def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
    ) -> None:
        caller = identify(credentials.credentials, tenants, admins) if credentials is not None else None
        if caller is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.caller = caller

    dependency: params.Depends = Depends(check)
    return dependency


def current_caller(request: Request) -> Caller:
    """The caller ``require_token`` recorded, or ``OPEN`` when the API has no tokens.

    Fails closed: a route reached without ``require_token`` on an API that has tokens is a 401, not open.
    """
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        return caller
    if request.app.state.api.settings.auth_enabled:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or invalid bearer token")
    return OPEN


def require_admin(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    """The caller, if it holds an admin token: a valid tenant token gets 403 (a missing one got 401)."""
    if not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this route needs an admin token")
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
AdminDep = Annotated[Caller, Depends(require_admin)]
