"""Optional bearer-token auth for the intake routes (``IMAGEGEN_API_TOKENS``)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, params, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

#: auto_error=False: we answer 401 (not FastAPI's 403) with the WWW-Authenticate header ourselves.
bearer_scheme = HTTPBearer(auto_error=False, description="One of the tokens in IMAGEGEN_API_TOKENS.")


def token_matches(given: str, tokens: frozenset[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, comparing every token in constant time (no early exit)."""
    given_bytes = given.encode("utf-8", "surrogatepass")
    results = [hmac.compare_digest(given_bytes, t.encode("utf-8", "surrogatepass")) for t in tokens]
    return any(results)


def require_token(tokens: frozenset[str]) -> params.Depends:
    """A dependency that admits only ``Authorization: Bearer <one of tokens>``."""

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> None:
        if credentials is None or not token_matches(credentials.credentials, tokens):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    dependency: params.Depends = Depends(check)
    return dependency
