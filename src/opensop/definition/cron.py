"""Five-field cron expressions (minute hour day-of-month month day-of-week).

Supports `*`, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n`, month and weekday
names (`jan`, `mon`), 7 as Sunday, and the macros @hourly @daily @weekly @monthly
@yearly. Day-of-month and day-of-week combine as in Vixie cron: when both are
restricted, a day matching either is a match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

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
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
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
    if not (text.isascii() and text.isdigit()):
        raise InvalidCron(f"{name}: '{text}' is not a number or a known name")
    number = int(text)
    if not low <= number <= high:
        raise InvalidCron(f"{name}: {number} is outside {low}-{high}")
    return number


def next_fire_time(spec: CronSpec, after: datetime, timezone: str) -> datetime:
    """The first time strictly after ``after`` (aware) when ``spec`` fires, in UTC.

    Wall-clock times are matched in ``timezone``. Across daylight-saving changes:
    a time that does not exist (spring forward, 02:30 on the change day) fires once,
    shifted forward by the gap (03:30); a time that happens twice (fall back) fires
    once, at its first occurrence.
    """
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone).replace(second=0, microsecond=0, tzinfo=None)
    # Start at the beginning of the local day: a time shifted past a spring-forward gap
    # (02:30 → 03:30) must still be found when asked at 03:10. Fires not after `after`
    # are skipped below, in UTC.
    candidate = local.replace(hour=0, minute=0)
    # Four years of days bounds the search (Feb 29 on a Monday is the rarest match).
    for _ in range(366 * 4 + 1):
        if candidate.month not in spec.months:
            candidate = _first_of_next_month(candidate)
            continue
        if not _day_matches(spec, candidate):
            candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
            continue
        for hour in sorted(h for h in spec.hours if h >= candidate.hour):
            start_minute = candidate.minute if hour == candidate.hour else 0
            for minute in sorted(m for m in spec.minutes if m >= start_minute):
                fire = _to_utc(candidate.replace(hour=hour, minute=minute), zone)
                if fire > after:
                    return fire
        candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
    raise InvalidCron(f"'{spec.text}' never fires")


def _day_matches(spec: CronSpec, day: datetime) -> bool:
    in_month = day.day in spec.days_of_month
    in_week = (day.isoweekday() % 7) in spec.days_of_week
    if spec.day_of_month_restricted and spec.day_of_week_restricted:
        return in_month or in_week
    return in_month and in_week


def _first_of_next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=1, hour=0, minute=0)


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone`` as UTC (first occurrence; gaps shift forward)."""
    # fold=0 reads a repeated time as its first occurrence, and a time inside a
    # spring-forward gap with the offset from before the change, which lands past the
    # gap by its length: exactly the documented behaviour.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
