"""Workspace-scoped tokens: generated once, stored as a SHA-256 hash, checked by scope."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

TOKEN_PREFIX = "sk_"
DISPLAY_PREFIX_LENGTH = 10
_MAX_TOKEN_LENGTH = 200


class Scope(StrEnum):
    ADMIN = "admin"  # everything, tokens included
    REGISTER = "register"  # publish process versions
    START = "start"  # start instances
    VIEW = "view"  # read processes, instances, steps, metrics
    ADVANCE = "advance"  # submit steps, worker calls
    CANCEL = "cancel"  # cancel instances


class BootstrapTokenRefused(ValueError):
    """The operator's configured token cannot be used."""


class BootstrapTokenRevoked(BootstrapTokenRefused):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: a live token of one workspace."""

    token_id: str
    workspace_id: str
    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hashes_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def plausible_token(text: str) -> bool:
    """Cheap shape check before touching the store: malformed tokens are 401 at once."""
    return text.startswith(TOKEN_PREFIX) and 10 < len(text) <= _MAX_TOKEN_LENGTH and text.isascii()


def parse_scopes(values: list[str] | None) -> list[str]:
    """Validated, de-duplicated scope names; no scopes means admin."""
    if not values:
        return [Scope.ADMIN.value]
    known = {scope.value for scope in Scope}
    unknown = [value for value in values if value not in known]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(sorted(known))}")
    return sorted(set(values))
