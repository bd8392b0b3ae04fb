"""The result of reading a process file: its plain data and where each part was written.

Readers build a tree of ``NodeLocation`` alongside the data; ``SourceDocument.locate``
walks it so later layers can point error messages at a line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["NodeLocation", "Path", "SourceDocument"]

Path = tuple[str | int, ...]


class NodeLocation:
    """Where a node starts, and where its children start (None for scalars)."""

    __slots__ = ("children", "column", "line")

    def __init__(
        self, line: int, column: int, children: dict[str | int, NodeLocation] | None
    ) -> None:
        self.line = line
        self.column = column
        self.children = children


@dataclass(frozen=True)
class SourceDocument:
    """The plain data of one file, and where each part of it was written."""

    value: dict[str, Any]
    filename: str = "<string>"
    format: str = "yaml"  # "yaml" | "json"
    _root: NodeLocation | None = field(default=None, repr=False, compare=False)

    def locate(self, path: Path) -> tuple[int, int] | None:
        """(line, column) of the node at ``path``; the nearest known ancestor otherwise.

        A mapping entry points at its key, a list item at the item itself.
        """
        loc = self._root
        if loc is None:
            return None
        for part in path:
            child = loc.children.get(part) if loc.children else None
            if child is None:
                break
            loc = child
        return (loc.line, loc.column)
