"""Five-field cron expressions (minute hour day-of-month month day-of-week).

Supports `*`, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n`, month and weekday
names (`jan`, `mon`), 7 as Sunday, and the macros @hourly @daily @weekly @monthly
@yearly. Day-of-month and day-of-week combine as in Vixie cron: when both are
restricted, a day matching either is a match.
"""

from __future__ import annotations

from dataclasses import dataclass

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


class InvalidCron(ValueError):
    pass


@dataclass(frozen=True)
class CronSpec:
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    day_of_month_restricted: bool
    day_of_week_restricted: bool
    text: str


def parse_cron(text: str) -> CronSpec:
    expression = _MACROS.get(text.strip().lower(), text.strip())
    parts = expression.split()
    if len(parts) != 5:
        raise InvalidCron(
            f"'{text[:60]}' has {len(parts)} fields; cron needs 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    sets = [
        _parse_field(part, name, low, high, names)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    days_of_week = frozenset(0 if d == 7 else d for d in sets[4])
    return CronSpec(
        minutes=sets[0],
        hours=sets[1],
        days_of_month=sets[2],
        months=sets[3],
        days_of_week=days_of_week,
        day_of_month_restricted=parts[2] != "*",
        day_of_week_restricted=parts[4] != "*",
        text=text,
    )


def _parse_field(
    text: str, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidCron(f"{name}: step '{step_text}' must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, name, low, high, names), _value(last, name, low, high, names)
            if start > end:
                raise InvalidCron(f"{name}: range '{body}' runs backwards")
        else:
            start = _value(body, name, low, high, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text in names:
        return names[text]
    if not text.isdigit():
        raise InvalidCron(f"{name}: '{text}' is not a number or a known name")
    number = int(text)
    if not low <= number <= high:
        raise InvalidCron(f"{name}: {number} is outside {low}-{high}")
    return number
