"""JSON that every store can keep, whoever wrote it (an API caller or a script).

PostgreSQL refuses NUL characters and unpaired UTF-16 surrogates in text and JSONB, and
no JSON value holds an infinite number (``1e999`` parses to one in Python). Refusing
them where JSON comes in keeps the stores alike and every stored instance readable.
"""

from __future__ import annotations

import json
import math
from typing import Any


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity and out-of-range numbers (ValueError)."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def has_unstorable_text(value: Any) -> bool:
    """Whether any string in ``value`` (keys included) holds a NUL or a lone surrogate."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            if "\x00" in current or _has_surrogate(current):
                return True
        elif isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return False


def storable_text(text: str) -> str:
    """Free text (a script's stderr) made storable: NULs and lone surrogates become U+FFFD."""
    text = text.replace("\x00", "\ufffd")
    if _has_surrogate(text):
        text = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON syntax, but no JSON value holds it
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
