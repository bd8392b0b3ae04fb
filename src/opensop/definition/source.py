"""Turn untrusted process-file bytes into plain data, with line/column for every path.

``load_source`` is the only door between a file someone uploaded and the rest of the
definition layer. It returns dicts, lists, str, int, float, bool and None (numbers written
unquoted come back as ``SourceInt``/``SourceFloat`` so their text survives), plus a
locator for error messages, and it refuses hostile input within fixed bounds
(``SourceLimits``) instead of hanging or exhausting memory.

    doc = load_source(raw, filename="onboarding.sop.yaml")
    doc.value["process"]["version"]             # SourceFloat(1.1, "1.10") for `version: 1.10`
    doc.locate(("process", "steps", 2, "type"))  # (41, 7): line and column of the key

YAML decisions, for the record:
- Scalars resolve by the YAML 1.2 core schema: only true/false spellings are booleans,
  ``yes``/``on``/``2024-01-01`` stay strings, ``0777`` is decimal 777 (text kept).
- Only the standard str/int/float/bool/null/map/seq tags are accepted; no object is ever
  constructed from a tag.
- Merge keys (``<<``) are refused (``unsupported_merge_key``): they are YAML 1.1, not
  core schema, and reading ``<<`` as an ordinary key would silently build a different
  process. Anchors and aliases work.
- An alias shares the anchored subtree (no copy) - the definition layer treats the data
  as immutable - but it counts the subtree's full size against the node limit, so alias
  bombs are refused before they cost anything.

The tree is built from parser events with an explicit stack, so depth, node count and
alias expansion are checked while reading and no input can cause a RecursionError.
JSON goes through the json module after one linear token scan that bounds depth and size
first and records positions, so JSON files get the same limits and a full locator.

This module is the door: bytes to text (size, encoding and character checks) and the
choice of reader. The rest lives in modules named after their idea, and their public
names are re-exported here:

- ``source_problems``: ``SourceLimits``, ``ProblemCode``, ``SourceProblem``, ``SourceError``
- ``source_document``: ``SourceDocument`` and the location tree behind ``locate``
- ``source_yaml``: the event-level YAML tree builder, scalar resolution, syntax messages
- ``source_json``: the JSON pre-scan and parse
"""

from __future__ import annotations

import codecs
import re

import yaml

from opensop.definition.source_document import SourceDocument
from opensop.definition.source_json import load_json
from opensop.definition.source_problems import (
    DEFAULT_LIMITS,
    SURROGATE,
    Abort,
    ProblemCode,
    Problems,
    SourceError,
    SourceLimits,
    SourceProblem,
)
from opensop.definition.source_yaml import YamlLoader, load_yaml

__all__ = [
    "DEFAULT_LIMITS",
    "YAML_LOADER",
    "ProblemCode",
    "SourceDocument",
    "SourceError",
    "SourceLimits",
    "SourceProblem",
    "load_source",
]

# libyaml is several times faster; the pure-Python parser gives the same events without it.
# It lives here, not in source_yaml, because this is the switch tests and callers flip
# (`source.YAML_LOADER = yaml.SafeLoader`); load_source reads it on every call.
YAML_LOADER: YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- bytes to text -----------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Outside YAML's printable set; both parsers would refuse these with a vaguer message.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _too_large(size: int, limits: SourceLimits, problems: Problems) -> None:
    if size > limits.max_bytes:
        problems.fatal(
            ProblemCode.FILE_TOO_LARGE,
            f"the file is larger than the limit of {limits.max_bytes:,} bytes",
        )


def _decode(data: bytes | str, limits: SourceLimits, problems: Problems) -> str:
    if isinstance(data, str):
        # A character is at least one UTF-8 byte, so this refuses 50 MB without encoding it.
        _too_large(len(data), limits, problems)
        _too_large(len(data.encode("utf-8", "surrogatepass")), limits, problems)
        text = data
    else:
        _too_large(len(data), limits, problems)
        encoding = "utf-8"
        for bom, name in _BOMS:
            if data.startswith(bom):
                data, encoding = data[len(bom) :], name
                break
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            line = column = None
            if encoding == "utf-8":
                line_start = data.rfind(b"\n", 0, exc.start) + 1
                line = data.count(b"\n", 0, exc.start) + 1
                column = len(data[line_start : exc.start].decode("utf-8")) + 1
            problems.fatal(
                ProblemCode.INVALID_ENCODING,
                f"the file is not valid {encoding.upper()} text ({exc.reason})",
                line,
                column,
            )
    return text.removeprefix("\ufeff")


def _check_characters(text: str, forbidden: re.Pattern[str], problems: Problems) -> None:
    bad = forbidden.search(text)
    if bad is None:
        return
    char = bad.group()
    line, column = _line_col(text, bad.start())
    if SURROGATE.match(char):  # only a str argument can hold one
        message = "the text contains a lone surrogate"
        problems.fatal(ProblemCode.INVALID_ENCODING, message, line, column)
    hint = " (is the file UTF-16 without a byte order mark?)" if char == "\x00" else ""
    message = f"control character U+{ord(char):04X} is not allowed{hint}"
    problems.fatal(ProblemCode.SYNTAX_ERROR, message, line, column)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


# --- the door --------------------------------------------------------------------------------


def _is_json(filename: str, text: str) -> bool:
    if filename.lower().endswith(".json"):
        return True
    if filename != "<string>":
        return False
    # `{"` or `{}` is JSON in practice; `{name: x}` is a YAML flow mapping.
    start = text.lstrip()
    return start.startswith("{") and start[1:].lstrip()[:1] in ('"', "}")


def load_source(
    data: bytes | str, *, filename: str = "<string>", limits: SourceLimits = DEFAULT_LIMITS
) -> SourceDocument:
    """Parse a process file into plain data; raise ``SourceError`` listing every problem.

    ``.json`` files (and ``<string>`` input that opens with ``{"``) are read as JSON,
    everything else as YAML.
    """
    problems = Problems(limits)
    try:
        text = _decode(data, limits, problems)
        is_json = _is_json(filename, text)
        # JSON strings may hold any character but controls, which json.loads refuses itself.
        _check_characters(text, SURROGATE if is_json else _NOT_PRINTABLE, problems)
        if is_json:
            value, root = load_json(text, limits, problems)
        else:
            value, root = load_yaml(text, limits, problems, YAML_LOADER)
    except Abort:
        raise SourceError(problems.items, filename=filename) from None
    if problems.items:
        raise SourceError(problems.items, filename=filename)
    return SourceDocument(value, filename, "json" if is_json else "yaml", root)
