"""The working calendar behind overdue acknowledgements (Decree 30/2020: same working day)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from hub import config
from hub.edxml.dates import VN_TZ
from hub.errors import ConfigError
from hub.service.workdays import WorkCalendar


def _us(*args: int) -> int:
    """Vietnam time to microseconds since the epoch."""
    return int(dt.datetime(*args, tzinfo=VN_TZ).timestamp()) * 1_000_000


def _at(us: int | None) -> str:
    assert us is not None
    return dt.datetime.fromtimestamp(us / 1e6, VN_TZ).strftime("%a %Y-%m-%d %H:%M")


CAL = WorkCalendar.parse()  # Monday to Friday, 17:00, the fixed-date public holidays


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ((2026, 11, 24, 9, 30), "Tue 2026-11-24 17:00"),  # during the day: that day
        ((2026, 11, 24, 0, 5), "Tue 2026-11-24 17:00"),  # before it starts: that day too
        ((2026, 11, 24, 17, 0), "Wed 2026-11-25 17:00"),  # at the end: the next one
        ((2026, 11, 27, 18, 45), "Mon 2026-11-30 17:00"),  # Friday evening: Monday
        ((2026, 11, 28, 10, 0), "Mon 2026-11-30 17:00"),  # Saturday: Monday
        ((2026, 4, 29, 20, 0), "Mon 2026-05-04 17:00"),  # before 30/4 and 1/5 and a weekend
        ((2026, 12, 31, 16, 59), "Thu 2026-12-31 17:00"),
        ((2026, 12, 31, 17, 1), "Mon 2027-01-04 17:00"),  # New Year's Day, then a weekend
    ],
)
def test_a_notice_of_receipt_is_due_at_the_end_of_the_working_day(
    received: tuple[int, ...], due: str
) -> None:
    assert _at(CAL.due_us(_us(*received))) == due


def test_overdue_before_is_the_end_of_the_last_working_day_that_has_ended() -> None:
    assert _at(CAL.overdue_before(_us(2026, 11, 24, 16, 59))) == "Mon 2026-11-23 17:00"
    assert _at(CAL.overdue_before(_us(2026, 11, 24, 17, 0))) == "Tue 2026-11-24 17:00"
    # All weekend long, Friday's end: a Friday-evening document is not yet late.
    assert _at(CAL.overdue_before(_us(2026, 11, 29, 23, 0))) == "Fri 2026-11-27 17:00"


def test_holidays_dated_or_yearly_and_swapped_working_days() -> None:
    cal = WorkCalendar.parse(
        days="mon,tue,wed,thu,fri",
        ends="16:30",
        holidays="01-01, 2027-02-05,2027-02-08",  # a yearly one and two dated ones
        extra_days="2027-02-13",  # a Saturday worked in exchange
    )
    assert not cal.is_workday(dt.date(2031, 1, 1))
    assert not cal.is_workday(dt.date(2027, 2, 5))
    assert cal.is_workday(dt.date(2027, 2, 13)) and not cal.is_workday(dt.date(2027, 2, 14))
    # Thursday evening before the break: due the Tuesday (Fri and Mon off).
    assert _at(cal.due_us(_us(2027, 2, 4, 18, 0))) == "Tue 2027-02-09 16:30"
    # Friday 12 February after hours: due on the swapped-in Saturday.
    assert _at(cal.due_us(_us(2027, 2, 12, 17, 0))) == "Sat 2027-02-13 16:30"


def test_overdue_exactly_when_the_due_time_has_passed() -> None:
    """``received < overdue_before(now)`` is the store's query; it must mean ``due <= now``."""
    cal = WorkCalendar.parse(holidays="01-01,04-30,05-01,09-02,2026-02-16,2026-02-17")
    rng = random.Random(30_2020)
    start = _us(2026, 1, 1, 0, 0)
    year = 366 * 86_400 * 1_000_000
    for _ in range(5_000):
        received = start + rng.randrange(year)
        now = received + rng.randrange(10 * 86_400 * 1_000_000)
        due = cal.due_us(received)
        assert due is not None and due > received
        assert (received < cal.overdue_before(now)) == (due <= now), (_at(received), _at(now))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"days": "mon,fri,caturday"}, "caturday"),
        ({"days": " , "}, "at least one"),
        ({"ends": "5pm"}, "HH:MM"),
        ({"holidays": "2027-02-30"}, "YYYY-MM-DD"),
        ({"holidays": "13-01"}, "MM-DD"),
        ({"extra_days": "tomorrow"}, "extra_days"),
    ],
)
def test_a_wrong_calendar_is_a_configuration_error(kw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkCalendar.parse(**kw)


def test_the_calendar_is_configured_in_toml_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        '[workday]\nends = "16:30"\nholidays = ["01-01", "2027-02-05"]\n', encoding="utf-8"
    )
    cfg = config.load(path, env={"LIENTHONG_WORKDAY_EXTRA_DAYS": "2027-02-13"})
    cal = cfg.workday.calendar()
    assert cal.ends == dt.time(16, 30)
    assert not cal.is_workday(dt.date(2027, 2, 5)) and cal.is_workday(dt.date(2027, 2, 13))
    path.write_text('[workday]\ndays = "sun"\nholidays = [1]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="expected strings"):
        config.load(path, env={})
    with pytest.raises(ConfigError, match=r"\[workday\] ends"):
        config.load(None, env={"LIENTHONG_WORKDAY_ENDS": "25:00"})
