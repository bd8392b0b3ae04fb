"""What condition values mean: truthiness, equality, ordering and membership.

The spec's rules, exactly: ``1 == 1.0``; ``"1" != 1``; ``true != 1`` (booleans are not
numbers); equality is structural for lists and objects; ordering holds only between two
numbers or two strings, any other pair is false, never an error; only ``false``,
``null`` and ``MISSING`` are falsy; ``in`` with anything but a list on its right is false.
None of these functions recurses or raises, and no user-defined ``__eq__`` ever runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opensop.definition.references import MISSING

__all__ = ["is_in", "is_truthy", "ordered", "values_equal"]


def is_truthy(value: Any) -> bool:
    """Only ``false``, ``null`` and ``MISSING`` are falsy; ``0``, ``""`` and ``[]`` are not."""
    return value is not False and value is not None and value is not MISSING


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalars_equal(left: Any, right: Any) -> bool:
    left = None if left is MISSING else left
    right = None if right is MISSING else right
    if left is None or right is None:
        return left is right
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, str) and isinstance(right, str):
        return str.__eq__(left, right)
    # Anything that is not JSON compares by identity: no user-defined __eq__ runs.
    return left is right


def values_equal(left: Any, right: Any) -> bool:
    """Structural equality with the language's rules; never recurses, never raises.

    Walks lists and objects with an explicit stack; a pair of containers already being
    compared is assumed equal, so even a cyclic context terminates.
    """
    pending: list[tuple[Any, Any]] = [(left, right)]
    seen: set[tuple[int, int]] = set()
    while pending:
        a, b = pending.pop()
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            if len(a) != len(b):
                return False
            if (id(a), id(b)) not in seen:
                seen.add((id(a), id(b)))
                pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict):
            if len(a) != len(b):
                return False
            if (id(a), id(b)) not in seen:
                seen.add((id(a), id(b)))
                for key, value in a.items():
                    other = dict.get(b, key, MISSING)
                    if other is MISSING:
                        return False
                    pending.append((value, other))
        elif not _scalars_equal(a, b):
            return False
    return True


def ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Ordering between two numbers or two strings; every other pair is false."""

    def check(left: Any, right: Any) -> bool:
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return bool(compare(left, right))
        return False

    return check


def is_in(item: Any, container: Any) -> bool:
    """Whether ``container`` is a list holding an item equal to ``item``."""
    if not isinstance(container, list | tuple):
        return False
    return any(values_equal(item, candidate) for candidate in container)
