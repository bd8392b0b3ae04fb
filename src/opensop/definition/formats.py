"""String formats: what a well-formed email, URI, date, date-time or currency code is.

Each check takes any string and answers a bool, never raising. The rules are pragmatic
rather than the full RFCs: what a person filling in a form means, strict where a loose
rule would pass nonsense (``2024-02-30``, ``localhost:8080`` as a URI, ``usd``).
``values`` uses them for ``format:`` on string fields and for ``date``/``datetime``
fields; ``describe_format`` words a format for a violation message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Final
from urllib.parse import urlsplit

from opensop.definition.fields import StringFormat

__all__ = [
    "describe_format",
    "is_currency_code",
    "is_date",
    "is_datetime",
    "is_email",
    "is_uri",
    "matches_format",
]

# ASCII digits only: `\d` would also accept other scripts' digits.
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"([Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


def is_date(text: str) -> bool:
    """A real calendar date written YYYY-MM-DD."""
    match = _DATE.fullmatch(text)
    if match is None:
        return False
    try:
        date(*(int(part) for part in match.groups()))
    except ValueError:  # 2024-02-30, month 13 ...
        return False
    return True


def is_datetime(text: str) -> bool:
    """An ISO 8601 date-time; naive, ``Z`` and ``+HH:MM`` offsets all pass."""
    match = _DATETIME.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, _fraction, offset = match.groups()
    try:
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:  # 2024-02-30, hour 24, second 60 ...
        return False
    if offset is None or offset in ("Z", "z"):
        return True
    digits = offset[1:].replace(":", "")
    return int(digits[:2]) <= 23 and int(digits[2:] or 0) <= 59


def is_email(text: str) -> bool:
    """One ``@``, no whitespace, a local part and a dotted domain."""
    # Pragmatic, not RFC 5322: what a person means by an email address.
    if text.count("@") != 1 or any(ch.isspace() for ch in text):
        return False
    local, domain = text.split("@")
    labels = domain.split(".")
    return bool(local) and len(labels) >= 2 and all(labels)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Schemes whose URIs have no `//host` part; an open rule would also pass `localhost:8080`
# or `C:\temp` as URIs.
_OPAQUE_SCHEMES = frozenset({"mailto", "urn", "tel", "sms", "data", "news", "geo", "magnet"})


def is_uri(text: str) -> bool:
    """A URI with a scheme and a host, an absolute ``file:`` path, or a known opaque scheme."""
    if any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    scheme = parts.scheme.lower()
    if not scheme or _SCHEME.fullmatch(scheme) is None:
        return False
    if parts.netloc:
        return True
    if scheme == "file":
        return parts.path.startswith("/")
    return scheme in _OPAQUE_SCHEMES and bool(parts.path)


_CHECKS: Final[dict[StringFormat, Callable[[str], bool]]] = {
    StringFormat.EMAIL: is_email,
    StringFormat.URI: is_uri,
    StringFormat.DATE: is_date,
    StringFormat.DATE_TIME: is_datetime,
    StringFormat.DATETIME: is_datetime,
}


def matches_format(string_format: StringFormat, text: str) -> bool:
    """Whether ``text`` is well formed for the declared ``string_format``."""
    return _CHECKS[string_format](text)


_DESCRIPTIONS = {
    "email": "an email address",
    "uri": "a URI with a scheme, like https://example.com or mailto:ana@example.com",
    "date": "a real calendar date in the form YYYY-MM-DD",
    "date-time": "an ISO 8601 date-time like 2024-01-15T10:30:00Z",
    "datetime": "an ISO 8601 date-time like 2024-01-15T10:30:00Z",
}


def describe_format(name: str) -> str:
    """How a format (a ``StringFormat`` or a date field type) is worded in messages."""
    return _DESCRIPTIONS[name]


_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


def is_currency_code(text: str) -> bool:
    """A three-letter uppercase ISO 4217 code like USD (the shape; not the registry)."""
    return _CURRENCY_CODE.fullmatch(text) is not None
