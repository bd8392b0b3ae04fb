"""Durations as the format writes them: `30s`, `15m`, `48h`, `7d`, `1h30m`, `500ms`."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
# A longer timer than this is almost certainly a typo (and overflows some datetimes).
MAX_DURATION_SECONDS = 366 * 86400.0


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises InvalidDuration."""
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise InvalidDuration("a duration may not be empty")
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", cleaned):
        total = float(cleaned)
    else:
        position = 0
        total = 0.0
        for match in _PART.finditer(cleaned):
            if match.start() != position:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(cleaned) or position == 0:
            raise InvalidDuration(
                f"'{text[:40]}' is not a duration; write e.g. 30s, 15m, 48h, 7d or 1h30m"
            )
    if total > MAX_DURATION_SECONDS:
        raise InvalidDuration(f"'{text[:40]}' is longer than the maximum of 366 days")
    return total
