"""Read-only mappings inside definitions.

A loaded definition is shared by every instance that runs on it (and cached), so a
mapping in it must not be changeable in place: validated mappings are wrapped in a
read-only view.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, SerializerFunctionWrapHandler, WrapSerializer

V = TypeVar("V")


def _freeze(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _thaw(value: Mapping[str, Any], handler: SerializerFunctionWrapHandler) -> Any:
    return handler(dict(value))


FrozenMap = Annotated[Mapping[str, V], AfterValidator(_freeze), WrapSerializer(_thaw)]
