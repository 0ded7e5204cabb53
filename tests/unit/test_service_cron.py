"""Cron schedules: the five fields, the next time they name, their errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from dockyard.service.cron import CronError, parse_cron


@pytest.mark.parametrize(
    "spec, after, expected",
    [
        ("*/15 * * * *", "2026-12-07 10:07:30", "2026-12-07 10:15"),
        ("0 3 * * 1-5", "2026-12-11 04:00", "2026-12-14 03:00"),  # Friday -> Monday
        ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("30 12 13 * 5", "2026-12-07 00:00", "2026-12-11 12:30"),  # a Friday or the 13th
        ("5/20 8,20 * * 0", "2026-12-06 08:45", "2026-12-06 20:05"),  # Sunday
        ("0 0 * * 7", "2026-12-07 00:00", "2026-12-13 00:00"),  # 7 is Sunday too
        ("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"),
    ],
)
def test_next_time(spec, after, expected):
    moment = parse_cron(spec).next_after(datetime.fromisoformat(after))
    assert moment == datetime.fromisoformat(expected)


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("* * *", "expected 5 fields"),
        ("61 * * * *", "minute: '61' is outside 0-59"),
        ("* 24 * * *", "hour"),
        ("a * * * *", "minute: 'a' is not a number"),
        ("*/0 * * * *", "outside"),
        ("0 0 31 2 *", "never matches"),
    ],
)
def test_bad_schedules_say_what_is_wrong(spec, problem):
    with pytest.raises(CronError, match=problem):
        parse_cron(spec).next_after(datetime(2026, 1, 1))
