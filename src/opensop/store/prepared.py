"""The busiest statements, run straight on the SQLite driver with SQLAlchemy's conversions.

Executing a Core statement through ``Connection.execute`` costs about a hundred
microseconds of Python (execution context, events, result set-up) around a few
microseconds of SQLite, and every start and submit runs several. A ``Prepared``
statement is compiled by SQLAlchemy once per set of parameter names, together with the
bind and result processors of its column types, and then executed on the DBAPI
connection underneath the same ``Connection``, in the same transaction. Values are
converted exactly as SQLAlchemy converts them, so rows written here read back through
Core and the other way round, and driver errors are wrapped in SQLAlchemy's exception
classes (``sa.exc.IntegrityError`` ...), as callers expect.

On PostgreSQL a ``Prepared`` statement simply runs through SQLAlchemy: there the network
round trip dominates, and psycopg's own type adaptation stays in charge.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from opensop.store import sqlite

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Conversion:
    """A processor for the value at ``index``; ``keeps_null``: it maps ``None`` to
    ``None``, so a ``None`` value skips the call (most optional columns are empty)."""

    index: int
    convert: Callable[[Any], Any]
    keeps_null: bool


def _conversions(processors: Sequence[Processor]) -> tuple[_Conversion, ...]:
    return tuple(
        _Conversion(index, convert, convert(None) is None)
        for index, convert in enumerate(processors)
        if convert is not None
    )


def _convert(values: list[Any], conversions: tuple[_Conversion, ...]) -> list[Any]:
    for conversion in conversions:
        value = values[conversion.index]
        if value is not None or not conversion.keeps_null:
            values[conversion.index] = conversion.convert(value)
    return values


@dataclass(frozen=True)
class _Form:
    """One compiled shape of the statement: SQL text, parameter order, conversions."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[_Conversion, ...]
    literals: Mapping[str, Any]  # values written into the statement (state == "active")

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        source = {**self.literals, **values} if self.literals else values
        return _convert([source[name] for name in self.names], self.binds)


class Prepared:
    """A Core statement for the hot path (INSERT, UPDATE or SELECT of plain columns)."""

    def __init__(self, statement: sa.Insert | sa.Update | sa.Select[Any]) -> None:
        self.statement = statement
        self._forms: dict[tuple[str, ...], _Form] = {}
        self._columns: tuple[str, ...] = ()
        self._results: tuple[_Conversion, ...] | None = None
        if isinstance(statement, sa.Select):
            self._columns = tuple(str(column.key) for column in statement.selected_columns)

    def execute(self, conn: sa.Connection, values: Mapping[str, Any]) -> int:
        """Run once; the number of rows it changed."""
        driver = _sqlite_driver(conn)
        if driver is None:
            return int(conn.execute(self.statement, dict(values)).rowcount)
        form = self._form(conn.dialect, tuple(values))
        cursor = self._run(lambda: driver.execute(form.sql, form.parameters(values)), form)
        return int(cursor.rowcount)

    def execute_many(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row; every row has the same keys."""
        if not rows:
            return
        driver = _sqlite_driver(conn)
        if driver is None:
            conn.execute(self.statement, [dict(row) for row in rows])
            return
        form = self._form(conn.dialect, tuple(rows[0]))
        self._run(lambda: driver.executemany(form.sql, [form.parameters(r) for r in rows]), form)

    def rows(self, conn: sa.Connection, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A SELECT's rows as dicts keyed by column key, values converted as in Core."""
        driver = _sqlite_driver(conn)
        if driver is None:
            return [dict(row._mapping) for row in conn.execute(self.statement, dict(values))]
        form = self._form(conn.dialect, tuple(values))
        fetched = self._run(lambda: driver.execute(form.sql, form.parameters(values)), form)
        columns, conversions = self._columns, self._results or ()
        return [
            dict(zip(columns, _convert(list(row), conversions), strict=True))
            for row in fetched.fetchall()
        ]

    def first(self, conn: sa.Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        found = self.rows(conn, values)
        return found[0] if found else None

    def _form(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        form = self._forms.get(keys)
        if form is None:
            form = self._compile(dialect, keys)
            self._forms[keys] = form
        return form

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        literals = {
            name: compiled.binds[name].value
            for name in set(names) - set(keys)
            if compiled.binds[name].value is not None and compiled.binds[name].callable is None
        }
        missing = sorted(set(names) - set(keys) - set(literals))
        if missing:  # a column default would need SQLAlchemy's execution context
            raise ValueError(f"a prepared statement needs values for {missing}")
        binds = _conversions(
            [
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            ]
        )
        if isinstance(self.statement, sa.Select) and self._results is None:
            self._results = _conversions(
                [
                    column.type.dialect_impl(dialect).result_processor(dialect, None)
                    for column in self.statement.selected_columns
                ]
            )
        return _Form(compiled.string, names, binds, literals)

    def _run(self, call: Callable[[], sqlite3.Cursor], form: _Form) -> sqlite3.Cursor:
        try:
            return call()
        except sqlite3.Error as error:
            raise sa.exc.DBAPIError.instance(
                form.sql, None, error, cast(type[Exception], sqlite3.Error)
            ) from error


def _sqlite_driver(conn: sa.Connection) -> sqlite3.Connection | None:
    if conn.dialect.name != "sqlite":
        return None
    return sqlite.driver_of(conn)
