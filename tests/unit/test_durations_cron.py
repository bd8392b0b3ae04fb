"""parse_duration and parse_cron: the two small languages of timers and schedules."""

from __future__ import annotations

import pytest

from opensop.definition.cron import InvalidCron, parse_cron
from opensop.definition.durations import MAX_DURATION_SECONDS, InvalidDuration, parse_duration

# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("48h", 172_800.0),
        ("7d", 604_800.0),
        ("2w", 1_209_600.0),
        ("500ms", 0.5),
        ("1h30m", 5_400.0),
        ("1d2h3m4s", 93_784.0),
        ("1.5h", 5_400.0),
        ("90", 90.0),  # a bare number is seconds
        ("0", 0.0),
        (" 2m ", 120.0),
        ("1h 30m", 5_400.0),
        ("366d", MAX_DURATION_SECONDS),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5 minutes", "is not a duration"),
        ("30 sec", "is not a duration"),
        ("1m30", "is not a duration"),
        ("10y", "is not a duration"),
        ("-5s", "is not a duration"),
        ("1e3s", "is not a duration"),
        (".5s", "is not a duration"),
        ("PT5M", "is not a duration"),
        ("s", "is not a duration"),
        ("", "may not be empty"),
        ("   ", "may not be empty"),
        ("367d", "longer than the maximum of 366 days"),
        ("9" * 40, "longer than the maximum of 366 days"),
    ],
)
def test_invalid_duration(text: str, message: str) -> None:
    with pytest.raises(InvalidDuration, match=message):
        parse_duration(text)


def test_invalid_duration_is_a_value_error_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. 30s, 15m, 48h, 7d or 1h30m"):
        parse_duration("soon")


# FULLWIDTH DIGIT ONE, ARABIC-INDIC DIGIT THREE
@pytest.mark.parametrize("text", ["\uff11h", "\u0663s", "\uff11"])
def test_duration_digits_are_ascii(text: str) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration(text)


# --- cron ---------------------------------------------------------------------------------

EVERY_DAY = set(range(7))


@pytest.mark.parametrize(
    ("text", "minutes", "hours", "days_of_week"),
    [
        ("* * * * *", set(range(60)), set(range(24)), EVERY_DAY),
        ("50 7 * * 1-5", {50}, {7}, {1, 2, 3, 4, 5}),
        ("*/15 9-17/4 * * *", {0, 15, 30, 45}, {9, 13, 17}, EVERY_DAY),
        ("0,30 12 * * sun", {0, 30}, {12}, {0}),
        ("0 9 * * mon-fri", {0}, {9}, {1, 2, 3, 4, 5}),
        ("0 9 * * MON,wed", {0}, {9}, {1, 3}),
        ("0 0 * * 7", {0}, {0}, {0}),  # 7 is Sunday too
        ("0 0 * * 5-7", {0}, {0}, {0, 5, 6}),
        ("10/20 * * * *", {10, 30, 50}, set(range(24)), EVERY_DAY),
    ],
)
def test_parse_cron(text: str, minutes: set[int], hours: set[int], days_of_week: set[int]) -> None:
    spec = parse_cron(text)
    assert (set(spec.minutes), set(spec.hours), set(spec.days_of_week)) == (
        minutes,
        hours,
        days_of_week,
    )
    assert spec.text == text


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_cron_macro_is_its_five_field_form(text: str, expanded: str) -> None:
    macro, fields = parse_cron(text), parse_cron(expanded)
    assert (macro.minutes, macro.hours, macro.days_of_month, macro.months) == (
        fields.minutes,
        fields.hours,
        fields.days_of_month,
        fields.months,
    )
    assert macro.days_of_week == fields.days_of_week


def test_cron_month_names_and_day_of_month() -> None:
    spec = parse_cron("0 0 1,15 jan-mar *")
    assert (set(spec.days_of_month), set(spec.months)) == ({1, 15}, {1, 2, 3})
    assert (spec.day_of_month_restricted, spec.day_of_week_restricted) == (True, False)


def test_cron_remembers_which_day_fields_are_restricted() -> None:
    spec = parse_cron("0 0 13 * fri")  # Vixie: the 13th OR any Friday
    assert (spec.day_of_month_restricted, spec.day_of_week_restricted) == (True, True)
    assert (set(spec.days_of_month), set(spec.days_of_week)) == ({13}, {5})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day of month: 0 is outside 1-31"),
        ("* * * 13 *", "month: 13 is outside 1-12"),
        ("* * * * 8", "day of week: 8 is outside 0-7"),
        ("*/0 * * * *", "minute: step '0' must be a positive number"),
        ("*/x * * * *", "minute: step 'x' must be a positive number"),
        ("5-1 * * * *", "minute: range '5-1' runs backwards"),
        ("a * * * *", "minute: 'a' is not a number or a known name"),
        ("* * * * funday", "day of week: 'funday' is not a number or a known name"),
        ("* * * jan-foo *", "month: 'foo' is not a number or a known name"),
        ("1,,2 * * * *", "minute: '' is not a number or a known name"),
        ("-1 * * * *", "minute: '' is not a number or a known name"),
        ("* * * *", "has 4 fields; cron needs 5"),
        ("* * * * * *", "has 6 fields; cron needs 5"),
        ("", "has 0 fields; cron needs 5"),
        ("@reboot", "has 1 fields; cron needs 5"),
    ],
)
def test_invalid_cron(text: str, message: str) -> None:
    with pytest.raises(InvalidCron, match=message):
        parse_cron(text)


# SUPERSCRIPT TWO, FULLWIDTH DIGIT ONE
@pytest.mark.parametrize("text", ["\u00b2 * * * *", "*/\u00b2 * * * *", "\uff11 * * * *"])
def test_cron_digits_are_ascii(text: str) -> None:
    with pytest.raises(InvalidCron):
        parse_cron(text)
