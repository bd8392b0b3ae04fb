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

This module is also the language's front door: it re-exports references and templates.
"""

from __future__ import annotations

import math
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
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
    describe_char,
    location,
    parse_reference,
    read_string_literal,
    require,
    resolve,
    scan_reference,
)
from opensop.definition.templates import Template, as_text, parse_template

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

MAX_TOKENS: Final = 512
"""Most tokens in one condition (a reference, a literal or an operator is one token)."""

MAX_DEPTH: Final = 32
"""Deepest nesting of parentheses, list literals and ``not`` in one condition."""


# --- Values ---------------------------------------------------------------------------


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


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Ordering between two numbers or two strings; every other pair is false."""

    def check(left: Any, right: Any) -> bool:
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return bool(compare(left, right))
        return False

    return check


def _is_in(item: Any, container: Any) -> bool:
    if not isinstance(container, list | tuple):
        return False
    return any(values_equal(item, candidate) for candidate in container)


# --- Tokens ---------------------------------------------------------------------------


class _Kind(Enum):
    NUMBER = auto()
    STRING = auto()
    TRUE = auto()
    FALSE = auto()
    NULL = auto()
    REFERENCE = auto()
    AND = auto()
    OR = auto()
    NOT = auto()
    IN = auto()
    EQ = auto()
    NE = auto()
    LT = auto()
    LE = auto()
    GT = auto()
    GE = auto()
    LPAREN = auto()
    RPAREN = auto()
    LBRACKET = auto()
    RBRACKET = auto()
    COMMA = auto()
    END = auto()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    position: int
    value: Any = None


# Longest spelling first, so '<=' is never read as '<' followed by '='.
_SYMBOLS: Final = (
    ("==", _Kind.EQ),
    ("!=", _Kind.NE),
    ("<=", _Kind.LE),
    (">=", _Kind.GE),
    ("&&", _Kind.AND),
    ("||", _Kind.OR),
    ("<", _Kind.LT),
    (">", _Kind.GT),
    ("!", _Kind.NOT),
    ("(", _Kind.LPAREN),
    (")", _Kind.RPAREN),
    ("[", _Kind.LBRACKET),
    ("]", _Kind.RBRACKET),
    (",", _Kind.COMMA),
)
_WORDS: Final = {
    "and": _Kind.AND,
    "or": _Kind.OR,
    "not": _Kind.NOT,
    "in": _Kind.IN,
    "true": _Kind.TRUE,
    "false": _Kind.FALSE,
    "null": _Kind.NULL,
    "nil": _Kind.NULL,
}
_LITERAL_VALUES: Final = {_Kind.TRUE: True, _Kind.FALSE: False, _Kind.NULL: None}
_MISSPELLED_WORDS: Final = {"none": "null"}  # besides the keywords in other letter cases
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER_STARTS = frozenset("-0123456789")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]")
_WHITESPACE = frozenset(" \t\r\n")
_MISTYPED_SYMBOLS: Final = {
    "=": "use '==' to compare",
    "&": "use '&&' or 'and'",
    "|": "use '||' or 'or'",
}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(text) and text[position] in _WHITESPACE:
            position += 1
        if position >= len(text):
            tokens.append(_Token(_Kind.END, "", position))
            return tokens
        if len(tokens) >= MAX_TOKENS:
            raise ExpressionError(
                f"the condition has more than {MAX_TOKENS} tokens {location(text, position)}; "
                "split it or simplify it",
                position,
            )
        token = _read_token(text, position)
        tokens.append(token)
        position = token.position + len(token.text)


def _read_token(text: str, position: int) -> _Token:
    char = text[position]
    if char in ("'", '"'):
        value, end = read_string_literal(text, position)
        return _Token(_Kind.STRING, text[position:end], position, value)
    if char in _NUMBER_STARTS:
        return _read_number(text, position)
    if _WORD.match(text, position):
        return _read_word(text, position)
    for spelling, kind in _SYMBOLS:
        if text.startswith(spelling, position):
            return _Token(kind, spelling, position)
    if char in _MISTYPED_SYMBOLS:
        raise ExpressionError(
            f"'{char}' {location(text, position)} is not an operator; {_MISTYPED_SYMBOLS[char]}",
            position,
        )
    raise ExpressionError(f"unexpected character {char!r} {location(text, position)}", position)


def _read_number(text: str, position: int) -> _Token:
    match = _NUMBER.match(text, position)
    if match is None:
        raise ExpressionError(
            f"'-' must be followed by a number {location(text, position)} "
            "(the language has no arithmetic)",
            position,
        )
    spelling = match.group()
    if _NUMBER_TAIL.match(text, match.end()):
        raise ExpressionError(
            f"malformed number {location(text, position)}: '{spelling}' cannot be followed by "
            f"{describe_char(text, match.end())}",
            position,
        )
    if "." in spelling or "e" in spelling or "E" in spelling:
        number: float | int = float(spelling)
        if math.isinf(number):
            raise ExpressionError(f"the number {location(text, position)} is too large", position)
    else:
        number = int(spelling)
    return _Token(_Kind.NUMBER, spelling, position, number)


def _read_word(text: str, position: int) -> _Token:
    word = _WORD.match(text, position)
    assert word is not None  # the caller checked
    kind = _WORDS.get(word.group())
    if kind is not None:
        return _Token(kind, word.group(), position, _LITERAL_VALUES.get(kind))
    reference, end = scan_reference(text, position)
    lowered = word.group().lower()
    if len(reference.segments) == 1 and (lowered in _WORDS or lowered in _MISSPELLED_WORDS):
        spelled = _MISSPELLED_WORDS.get(lowered, lowered)
        raise ExpressionError(
            f"write '{spelled}' instead of '{word.group()}' {location(text, position)} "
            "(keywords and literals are lowercase)",
            position,
        )
    if text.startswith("(", end):
        raise ExpressionError(
            f"'{reference.text}(' {location(text, position)} looks like a function call; "
            "conditions have no functions",
            end,
        )
    return _Token(_Kind.REFERENCE, reference.text, position, reference)


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


_COMPARISONS: Final[dict[_Kind, Callable[[Any, Any], bool]]] = {
    _Kind.EQ: values_equal,
    _Kind.NE: lambda left, right: not values_equal(left, right),
    _Kind.LT: _ordered(operator.lt),
    _Kind.LE: _ordered(operator.le),
    _Kind.GT: _ordered(operator.gt),
    _Kind.GE: _ordered(operator.ge),
}
_VALUE_STARTS: Final = frozenset(
    {
        _Kind.NUMBER,
        _Kind.STRING,
        _Kind.TRUE,
        _Kind.FALSE,
        _Kind.NULL,
        _Kind.REFERENCE,
        _Kind.LPAREN,
        _Kind.LBRACKET,
        _Kind.NOT,
    }
)


# --- Parser ---------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokenize(text)
        self._index = 0
        self._depth = 0

    def parse(self) -> _Node:
        tree = self._disjunction()
        token = self._peek()
        if token.kind is not _Kind.END:
            raise self._unexpected(token)
        return tree

    def _disjunction(self) -> _Node:
        operands = [self._conjunction()]
        while self._peek().kind is _Kind.OR:
            self._advance()
            operands.append(self._conjunction())
        return operands[0] if len(operands) == 1 else _Any(tuple(operands))

    def _conjunction(self) -> _Node:
        operands = [self._negation()]
        while self._peek().kind is _Kind.AND:
            self._advance()
            operands.append(self._negation())
        return operands[0] if len(operands) == 1 else _All(tuple(operands))

    def _negation(self) -> _Node:
        token = self._peek()
        if token.kind is not _Kind.NOT:
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
            negated = self._advance().kind is _Kind.NOT
            if negated:
                self._advance()
            node = _Compare(_is_in, left, self._primary())
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
        return token.kind is _Kind.IN or (
            token.kind is _Kind.NOT and self._peek(1).kind is _Kind.IN
        )

    def _primary(self) -> _Node:
        token = self._peek()
        if token.kind in (_Kind.NUMBER, _Kind.STRING, _Kind.TRUE, _Kind.FALSE, _Kind.NULL):
            self._advance()
            return _Literal(token.value)
        if token.kind is _Kind.REFERENCE:
            self._advance()
            return _Lookup(token.value)
        if token.kind is _Kind.LPAREN:
            self._advance()
            self._enter(token)
            inner = self._disjunction()
            self._close(_Kind.RPAREN, token, "')' to close the '('")
            self._depth -= 1
            return inner
        if token.kind is _Kind.LBRACKET:
            return self._list()
        raise self._expected_value(token)

    def _list(self) -> _Node:
        opening = self._advance()
        self._enter(opening)
        items: list[_Node] = []
        while self._peek().kind is not _Kind.RBRACKET:
            items.append(self._disjunction())
            if self._peek().kind is not _Kind.COMMA:
                break
            self._advance()
        self._close(_Kind.RBRACKET, opening, "',' or ']' in the list opened")
        self._depth -= 1
        return _List(tuple(items))

    def _close(self, kind: _Kind, opening: _Token, wanted: str) -> None:
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

    def _enter(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExpressionError(
                f"the condition nests more than {MAX_DEPTH} levels deep {self._at(token)}",
                token.position,
            )

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _previous(self) -> _Token | None:
        return self._tokens[self._index - 1] if self._index else None

    def _at(self, token: _Token) -> str:
        return location(self._text, token.position)

    @staticmethod
    def _describe(token: _Token) -> str:
        if token.kind is _Kind.END:
            return "the end of the condition"
        shown = token.text if len(token.text) <= 40 else token.text[:37] + "..."
        return f"'{shown}'"

    def _expected_value(self, token: _Token) -> ExpressionError:
        previous = self._previous()
        after = f" after '{previous.text}'" if previous else ""
        return ExpressionError(
            f"expected a value{after} {self._at(token)}, found {self._describe(token)}",
            token.position,
        )

    def _unexpected(self, token: _Token) -> ExpressionError:
        if token.kind in (_Kind.RPAREN, _Kind.RBRACKET):
            opener = "(" if token.kind is _Kind.RPAREN else "["
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
