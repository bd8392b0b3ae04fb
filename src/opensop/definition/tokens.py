"""Tokens of the condition language: what the parser in ``expressions`` reads.

``tokenize`` turns a condition's text into ``Token`` values (kind, spelling, position and,
for literals and references, the value), ending with one ``END`` token. It bounds the
count at ``MAX_TOKENS`` and refuses, with a hint, what people commonly mistype: ``=``,
``&``, ``|``, ``True``/``None``, ``-x`` (there is no arithmetic), ``f(x)`` (no functions)
and malformed numbers. String literals and references are read by ``references``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Final

from opensop.definition.references import (
    ExpressionError,
    describe_char,
    location,
    read_string_literal,
    scan_reference,
)

__all__ = ["MAX_TOKENS", "Token", "TokenKind", "tokenize"]

MAX_TOKENS: Final = 512
"""Most tokens in one condition (a reference, a literal or an operator is one token)."""


class TokenKind(Enum):
    """What a token is; literals and references also carry a value."""

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
class Token:
    """One token; ``position`` is its offset in the condition's text."""

    kind: TokenKind
    text: str
    position: int
    value: Any = None


# Longest spelling first, so '<=' is never read as '<' followed by '='.
_SYMBOLS: Final = (
    ("==", TokenKind.EQ),
    ("!=", TokenKind.NE),
    ("<=", TokenKind.LE),
    (">=", TokenKind.GE),
    ("&&", TokenKind.AND),
    ("||", TokenKind.OR),
    ("<", TokenKind.LT),
    (">", TokenKind.GT),
    ("!", TokenKind.NOT),
    ("(", TokenKind.LPAREN),
    (")", TokenKind.RPAREN),
    ("[", TokenKind.LBRACKET),
    ("]", TokenKind.RBRACKET),
    (",", TokenKind.COMMA),
)
_WORDS: Final = {
    "and": TokenKind.AND,
    "or": TokenKind.OR,
    "not": TokenKind.NOT,
    "in": TokenKind.IN,
    "true": TokenKind.TRUE,
    "false": TokenKind.FALSE,
    "null": TokenKind.NULL,
    "nil": TokenKind.NULL,
}
_LITERAL_VALUES: Final = {TokenKind.TRUE: True, TokenKind.FALSE: False, TokenKind.NULL: None}
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


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with ``END``; raises ``ExpressionError``."""
    tokens: list[Token] = []
    position = 0
    while True:
        while position < len(text) and text[position] in _WHITESPACE:
            position += 1
        if position >= len(text):
            tokens.append(Token(TokenKind.END, "", position))
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


def _read_token(text: str, position: int) -> Token:
    char = text[position]
    if char in ("'", '"'):
        value, end = read_string_literal(text, position)
        return Token(TokenKind.STRING, text[position:end], position, value)
    if char in _NUMBER_STARTS:
        return _read_number(text, position)
    if _WORD.match(text, position):
        return _read_word(text, position)
    for spelling, kind in _SYMBOLS:
        if text.startswith(spelling, position):
            return Token(kind, spelling, position)
    if char in _MISTYPED_SYMBOLS:
        raise ExpressionError(
            f"'{char}' {location(text, position)} is not an operator; {_MISTYPED_SYMBOLS[char]}",
            position,
        )
    raise ExpressionError(f"unexpected character {char!r} {location(text, position)}", position)


def _read_number(text: str, position: int) -> Token:
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
    return Token(TokenKind.NUMBER, spelling, position, number)


def _read_word(text: str, position: int) -> Token:
    word = _WORD.match(text, position)
    assert word is not None  # the caller checked
    kind = _WORDS.get(word.group())
    if kind is not None:
        return Token(kind, word.group(), position, _LITERAL_VALUES.get(kind))
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
    return Token(TokenKind.REFERENCE, reference.text, position, reference)
