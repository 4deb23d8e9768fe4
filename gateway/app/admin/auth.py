"""Named bearer tokens, compared in constant time: who is asking, or nobody.

Every configured token is compared (``hmac.compare_digest``) whatever the outcome of the others, so the
time an answer takes says nothing about which token, or which part of one, was close.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from gateway.core.settings import AdminToken

SCHEME = "bearer "


class Tokens:
    def __init__(self, tokens: Sequence[AdminToken]) -> None:
        self._tokens = [(token.name, token.token.encode()) for token in tokens]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def who(self, authorization: str | None) -> str | None:
        """The name of the token an ``Authorization: Bearer <token>`` header carries; None if none does."""
        if authorization is None or authorization[: len(SCHEME)].lower() != SCHEME:
            return None
        offered = authorization[len(SCHEME) :].strip().encode("utf-8", "surrogatepass")
        found = None
        for name, token in self._tokens:
            if hmac.compare_digest(offered, token) and found is None:
                found = name
        return found
