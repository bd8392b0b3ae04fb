"""Daily schedules across daylight-saving changes: a wall-clock time that does not exist
fires once, shifted past the gap; a time that happens twice fires once, the first time.
And the schedule's ticks: one job per fire time, each with its own dedup key.

2026: Europe/Madrid springs forward on March 29 (02:00 CET -> 03:00 CEST) and falls back
on October 25 (03:00 CEST -> 02:00 CET); America/New_York springs forward on March 8
(02:00 EST -> 03:00 EDT) and falls back on November 1 (02:00 EDT -> 01:00 EST).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from opensop.definition import models
from opensop.definition.cron import next_fire_time, parse_cron
from opensop.definition.loader import Profile, load_definition
from opensop.engine.jobs import JobKind
from opensop.work import schedule_tick


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def fires(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end], each found from the one before."""
    spec = parse_cron(cron)
    found: list[datetime] = []
    moment = next_fire_time(spec, start, zone)
    while moment <= end:
        found.append(moment)
        moment = next_fire_time(spec, moment, zone)
    return found


# (zone, cron, the change day, that day's one fire in UTC, the fires around it in UTC)
DAILY = [
    pytest.param(
        "Europe/Madrid",
        "30 2 * * *",
        utc(2026, 3, 29, 1, 30),  # 02:30 does not exist: 03:30 CEST
        [utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)],
        id="madrid-spring-forward",
    ),
    pytest.param(
        "Europe/Madrid",
        "30 2 * * *",
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST), not the second (01:30 UTC)
        [utc(2026, 10, 24, 0, 30), utc(2026, 10, 26, 1, 30)],
        id="madrid-fall-back",
    ),
    pytest.param(
        "America/New_York",
        "30 2 * * *",
        utc(2026, 3, 8, 7, 30),  # 02:30 does not exist: 03:30 EDT
        [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)],
        id="new-york-spring-forward",
    ),
    pytest.param(
        "America/New_York",
        "30 2 * * *",
        utc(2026, 11, 1, 7, 30),  # 02:30 EST, after the repeated hour: once, as any day
        [utc(2026, 10, 31, 6, 30), utc(2026, 11, 2, 7, 30)],
        id="new-york-fall-back",
    ),
    pytest.param(
        "America/New_York",
        "30 1 * * *",
        utc(2026, 11, 1, 5, 30),  # the first 01:30 (EDT), not the second (06:30 UTC)
        [utc(2026, 10, 31, 5, 30), utc(2026, 11, 2, 6, 30)],
        id="new-york-fall-back-repeated-hour",
    ),
]


@pytest.mark.parametrize(("zone", "cron", "on_the_day", "around"), DAILY)
def test_a_daily_schedule_fires_once_on_a_change_day(
    zone: str, cron: str, on_the_day: datetime, around: list[datetime]
) -> None:
    before, after = around

    found = fires(cron, zone, before - timedelta(seconds=1), after)

    assert found == [before, on_the_day, after]
    days = Counter(moment.astimezone(ZoneInfo(zone)).date() for moment in found)
    assert set(days.values()) == {1}


# After a spring-forward gap and before the shifted fire (03:00-03:30 local that day).
SHIFTED_WINDOWS = {
    "Europe/Madrid": (utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)),
    "America/New_York": (utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)),
}


@pytest.mark.parametrize(("zone", "cron", "on_the_day", "around"), DAILY)
def test_asking_from_anywhere_in_the_change_day_never_fires_twice(
    zone: str, cron: str, on_the_day: datetime, around: list[datetime]
) -> None:
    spec = parse_cron(cron)
    before, after = around
    window = SHIFTED_WINDOWS.get(zone, (after, after))
    # Every minute from the fire before to the fire after, including inside a repeated hour.
    moment = before
    while moment < after:
        if not window[0] <= moment < window[1]:  # that window: the xfail test below
            expected = on_the_day if moment < on_the_day else after
            assert next_fire_time(spec, moment, zone) == expected, moment
        moment += timedelta(minutes=1)


@pytest.mark.parametrize("zone", sorted(SHIFTED_WINDOWS))
def test_a_schedule_asked_after_the_gap_still_fires_the_shifted_time_that_day(
    zone: str,
) -> None:
    gap_end, shifted = SHIFTED_WINDOWS[zone]

    assert next_fire_time(parse_cron("30 2 * * *"), gap_end + timedelta(minutes=10), zone) == (
        shifted
    )


def test_an_hourly_schedule_spring_forward_loses_no_real_hour() -> None:
    found = fires("0 * * * *", "Europe/Madrid", utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 3))

    assert found == [utc(2026, 3, 29, hour) for hour in range(4)]


def definition(cron: str, zone: str, name: str = "nightly") -> models.ProcessDefinition:
    document = {
        "opensop": "0.1",
        "process": {
            "name": name,
            "version": "1.0",
            "trigger": {"type": "schedule", "cron": cron, "timezone": zone},
            "steps": [{"id": "review", "type": "form", "outputs": []}],
        },
    }
    return load_definition(json.dumps(document).encode(), filename="p.json", profile=Profile.SERVER)


@pytest.mark.parametrize(("zone", "cron", "on_the_day", "around"), DAILY)
def test_schedule_ticks_follow_the_fire_times_with_distinct_dedup_keys(
    zone: str, cron: str, on_the_day: datetime, around: list[datetime]
) -> None:
    nightly = definition(cron, zone)
    before, after = around

    first = schedule_tick("default", 7, nightly, before - timedelta(seconds=1))
    second = schedule_tick("default", 7, nightly, first.due_at)
    third = schedule_tick("default", 7, nightly, second.due_at)

    assert [tick.due_at for tick in (first, second, third)] == [before, on_the_day, after]
    keys = [tick.dedup_key for tick in (first, second, third)]
    assert len(set(keys)) == 3
    for tick in (first, second, third):
        assert tick.kind is JobKind.SCHEDULE_TICK
        assert tick.step_id is None
        assert tick.payload == {"process": "nightly", "process_id": 7}


def test_two_runners_computing_the_same_tick_get_the_same_dedup_key() -> None:
    nightly = definition("30 2 * * *", "Europe/Madrid")
    after = utc(2026, 10, 24, 12)

    one = schedule_tick("default", 7, nightly, after)
    other = schedule_tick("default", 7, nightly, after + timedelta(minutes=5))

    assert one == other
    assert one.dedup_key is not None
    assert schedule_tick("default", 8, nightly, after).dedup_key != one.dedup_key
    assert schedule_tick("other", 7, nightly, after).dedup_key != one.dedup_key
