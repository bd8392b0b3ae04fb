"""Conditions: the small, safe language of ``condition``, ``exit_when``, ``required_if``,
loop ``while``/``repeat_until`` and ``wait.until``.

Grammar, lowest precedence first (a tokenizer feeds a recursive-descent parser; nothing
is ever handed to Python's ``eval``)::

    condition   := disjunction
    disjunction := conjunction (('or' | '||') conjunction)*
    conjunction := negation (('and' | '&&') negation)*
    negation    := ('not' | '!') negation | comparison
    comparison  := primary [ ('==' | '!=' | '<' | '<=' | '>' | '>=') primary
                           | ['not'] 'in' primary ]
    primary     := number | string | 'true' | 'false' | 'null' | 'nil'
                 | reference | '(' disjunction ')' | '[' [disjunction (',' disjunction)* [',']] ']'

``not``/``!`` apply to the whole comparison after them (``!x == 1`` is ``!(x == 1)``).
Comparisons do not chain (``a < b < c`` is refused). Literals are lowercase only
(``True``/``None`` are refused with a hint). Whitespace and newlines may appear between
any two tokens, so multi-line YAML blocks joined with ``&&`` work. A blank condition is
true.

Semantics (the spec's, exactly): ``1 == 1.0``; ``"1" != 1``; ``true != 1`` (booleans are
not numbers); equality is structural for lists and objects; ordering holds only between
two numbers or two strings, any other pair is false, never an error; only ``false`` and
``null`` are falsy (``0``, ``""`` and ``[]`` are true); a reference that does not resolve
is ``null``; ``and``/``or`` answer booleans; ``in`` with anything but a list on its right
is false.

Limits keep parsing and evaluation bounded (recursion depth included):
``MAX_EXPRESSION_LENGTH`` characters, ``MAX_TOKENS`` tokens, ``MAX_DEPTH`` levels of
parentheses, lists and ``not``.

This module holds the syntax tree, the parser and ``Condition``. It is also the language's
front door: it re-exports the tokenizer's limit (``tokens``), the value semantics
(``semantics``), references and templates.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opensop.definition.references import (
    KNOWN_ROOTS,
    MAX_EXPRESSION_LENGTH,
    MAX_REFERENCE_SEGMENTS,
    MISSING,
    ExpressionError,
    Index,
    Key,
    Missing,
    Reference,
    Segment,
    Star,
    UnresolvedReference,
    location,
    parse_reference,
    require,
    resolve,
)
from opensop.definition.semantics import is_in, is_truthy, ordered, values_equal
from opensop.definition.templates import Template, as_text, parse_template
from opensop.definition.tokens import MAX_TOKENS, Token, TokenKind, tokenize

__all__ = [
    "KNOWN_ROOTS",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_REFERENCE_SEGMENTS",
    "MAX_TOKENS",
    "MISSING",
    "Condition",
    "ExpressionError",
    "Index",
    "Key",
    "Missing",
    "Reference",
    "Segment",
    "Star",
    "Template",
    "UnresolvedReference",
    "as_text",
    "is_truthy",
    "parse_condition",
    "parse_reference",
    "parse_template",
    "require",
    "resolve",
    "values_equal",
]

MAX_DEPTH: Final = 32
"""Deepest nesting of parentheses, list literals and ``not`` in one condition."""


# --- Syntax tree ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    context: Mapping[str, Any]
    bare_root: tuple[str, ...] | None


class _Node(ABC):
    """One piece of a parsed condition; depth is bounded by ``MAX_DEPTH``."""

    @abstractmethod
    def value(self, scope: _Scope) -> Any: ...

    def children(self) -> tuple[_Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class _Literal(_Node):
    constant: Any

    def value(self, scope: _Scope) -> Any:
        return self.constant


@dataclass(frozen=True, slots=True)
class _Lookup(_Node):
    reference: Reference

    def value(self, scope: _Scope) -> Any:
        found = resolve(self.reference, scope.context, bare_root=scope.bare_root)
        return None if found is MISSING else found


@dataclass(frozen=True, slots=True)
class _List(_Node):
    items: tuple[_Node, ...]

    def value(self, scope: _Scope) -> Any:
        return [item.value(scope) for item in self.items]

    def children(self) -> tuple[_Node, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class _Not(_Node):
    operand: _Node

    def value(self, scope: _Scope) -> Any:
        return not is_truthy(self.operand.value(scope))

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class _All(_Node):
    operands: tuple[_Node, ...]

    def value(self, scope: _Scope) -> Any:
        return all(is_truthy(operand.value(scope)) for operand in self.operands)

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class _Any(_Node):
    operands: tuple[_Node, ...]

    def value(self, scope: _Scope) -> Any:
        return any(is_truthy(operand.value(scope)) for operand in self.operands)

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class _Compare(_Node):
    test: Callable[[Any, Any], bool]
    left: _Node
    right: _Node

    def value(self, scope: _Scope) -> Any:
        return self.test(self.left.value(scope), self.right.value(scope))

    def children(self) -> tuple[_Node, ...]:
        return (self.left, self.right)


_COMPARISONS: Final[dict[TokenKind, Callable[[Any, Any], bool]]] = {
    TokenKind.EQ: values_equal,
    TokenKind.NE: lambda left, right: not values_equal(left, right),
    TokenKind.LT: ordered(operator.lt),
    TokenKind.LE: ordered(operator.le),
    TokenKind.GT: ordered(operator.gt),
    TokenKind.GE: ordered(operator.ge),
}
_VALUE_STARTS: Final = frozenset(
    {
        TokenKind.NUMBER,
        TokenKind.STRING,
        TokenKind.TRUE,
        TokenKind.FALSE,
        TokenKind.NULL,
        TokenKind.REFERENCE,
        TokenKind.LPAREN,
        TokenKind.LBRACKET,
        TokenKind.NOT,
    }
)


# --- Parser ---------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = tokenize(text)
        self._index = 0
        self._depth = 0

    def parse(self) -> _Node:
        tree = self._disjunction()
        token = self._peek()
        if token.kind is not TokenKind.END:
            raise self._unexpected(token)
        return tree

    def _disjunction(self) -> _Node:
        operands = [self._conjunction()]
        while self._peek().kind is TokenKind.OR:
            self._advance()
            operands.append(self._conjunction())
        return operands[0] if len(operands) == 1 else _Any(tuple(operands))

    def _conjunction(self) -> _Node:
        operands = [self._negation()]
        while self._peek().kind is TokenKind.AND:
            self._advance()
            operands.append(self._negation())
        return operands[0] if len(operands) == 1 else _All(tuple(operands))

    def _negation(self) -> _Node:
        token = self._peek()
        if token.kind is not TokenKind.NOT:
            return self._comparison()
        self._advance()
        self._enter(token)
        operand = self._negation()
        self._depth -= 1
        return _Not(operand)

    def _comparison(self) -> _Node:
        left = self._primary()
        token = self._peek()
        node: _Node
        if token.kind in _COMPARISONS:
            self._advance()
            node = _Compare(_COMPARISONS[token.kind], left, self._primary())
        elif self._at_membership():
            negated = self._advance().kind is TokenKind.NOT
            if negated:
                self._advance()
            node = _Compare(is_in, left, self._primary())
            node = _Not(node) if negated else node
        else:
            return left
        after = self._peek()
        if after.kind in _COMPARISONS or self._at_membership():
            raise ExpressionError(
                f"comparisons cannot be chained {self._at(after)}; join them with 'and'",
                after.position,
            )
        return node

    def _at_membership(self) -> bool:
        token = self._peek()
        return token.kind is TokenKind.IN or (
            token.kind is TokenKind.NOT and self._peek(1).kind is TokenKind.IN
        )

    def _primary(self) -> _Node:
        token = self._peek()
        if token.kind in (
            TokenKind.NUMBER,
            TokenKind.STRING,
            TokenKind.TRUE,
            TokenKind.FALSE,
            TokenKind.NULL,
        ):
            self._advance()
            return _Literal(token.value)
        if token.kind is TokenKind.REFERENCE:
            self._advance()
            return _Lookup(token.value)
        if token.kind is TokenKind.LPAREN:
            self._advance()
            self._enter(token)
            inner = self._disjunction()
            self._close(TokenKind.RPAREN, token, "')' to close the '('")
            self._depth -= 1
            return inner
        if token.kind is TokenKind.LBRACKET:
            return self._list()
        raise self._expected_value(token)

    def _list(self) -> _Node:
        opening = self._advance()
        self._enter(opening)
        items: list[_Node] = []
        while self._peek().kind is not TokenKind.RBRACKET:
            items.append(self._disjunction())
            if self._peek().kind is not TokenKind.COMMA:
                break
            self._advance()
        self._close(TokenKind.RBRACKET, opening, "',' or ']' in the list opened")
        self._depth -= 1
        return _List(tuple(items))

    def _close(self, kind: TokenKind, opening: Token, wanted: str) -> None:
        token = self._peek()
        if token.kind is kind:
            self._advance()
            return
        if token.kind in _VALUE_STARTS:
            raise self._unexpected(token)
        raise ExpressionError(
            f"expected {wanted} {location(self._text, opening.position)}, "
            f"found {self._describe(token)} {self._at(token)}",
            token.position,
        )

    def _enter(self, token: Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExpressionError(
                f"the condition nests more than {MAX_DEPTH} levels deep {self._at(token)}",
                token.position,
            )

    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _advance(self) -> Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _previous(self) -> Token | None:
        return self._tokens[self._index - 1] if self._index else None

    def _at(self, token: Token) -> str:
        return location(self._text, token.position)

    @staticmethod
    def _describe(token: Token) -> str:
        if token.kind is TokenKind.END:
            return "the end of the condition"
        shown = token.text if len(token.text) <= 40 else token.text[:37] + "..."
        return f"'{shown}'"

    def _expected_value(self, token: Token) -> ExpressionError:
        previous = self._previous()
        after = f" after '{previous.text}'" if previous else ""
        return ExpressionError(
            f"expected a value{after} {self._at(token)}, found {self._describe(token)}",
            token.position,
        )

    def _unexpected(self, token: Token) -> ExpressionError:
        if token.kind in (TokenKind.RPAREN, TokenKind.RBRACKET):
            opener = "(" if token.kind is TokenKind.RPAREN else "["
            message = (
                f"unexpected '{token.text}' {self._at(token)}; there is no '{opener}' to close"
            )
        elif token.kind in _VALUE_STARTS:
            previous = self._previous()
            shown = f" after {self._describe(previous)}" if previous else ""
            message = (
                f"expected 'and', 'or' or a comparison{shown} {self._at(token)}, "
                f"found {self._describe(token)}"
            )
        else:
            message = f"unexpected {self._describe(token)} {self._at(token)}"
        return ExpressionError(message, token.position)


# --- Public API -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition. Evaluating it never raises, whatever the context holds."""

    text: str
    tree: _Node = field(repr=False, compare=False)

    def value(self, context: Mapping[str, Any], *, bare_root: tuple[str, ...] | None = None) -> Any:
        """The condition's value (``x`` alone answers x's value; unresolved is None).

        ``bare_root`` says where bare references live: ``("outputs",)`` in ``exit_when``.
        """
        return self.tree.value(_Scope(context, bare_root))

    def evaluate(
        self, context: Mapping[str, Any], *, bare_root: tuple[str, ...] | None = None
    ) -> bool:
        """Whether the condition holds: its value is neither ``false`` nor ``null``."""
        return is_truthy(self.value(context, bare_root=bare_root))

    def references(self) -> tuple[Reference, ...]:
        """Every reference in the condition, in reading order, each once."""
        found: dict[Reference, None] = {}
        for node in self._nodes():
            if isinstance(node, _Lookup):
                found.setdefault(node.reference, None)
        return tuple(found)

    def _nodes(self) -> Iterator[_Node]:
        stack = [self.tree]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))


def parse_condition(text: str) -> Condition:
    """Parse a condition; raises ``ExpressionError`` naming the line and column.

    >>> parse_condition("steps.review.outputs.decision == 'approve'").evaluate(
    ...     {"steps": {"review": {"outputs": {"decision": "approve"}}}})
    True
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"the condition is {len(text):,} characters long; "
            f"the limit is {MAX_EXPRESSION_LENGTH:,}",
            MAX_EXPRESSION_LENGTH,
        )
    if not text.strip():
        return Condition(text, _Literal(True))
    return Condition(text, _Parser(text).parse())
