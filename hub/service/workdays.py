"""When a receiver's notice of receipt is due: the end of the working day.

Decree 30/2020/NĐ-CP makes the receiver notify the sender of receipt the same day, and
the hub makes overdue acknowledgements visible (a metric, the console, an audit filter).
"The same day" is a working day in Vietnam time: a document that arrives before the day
ends on a working day is due when that day ends; one that arrives after hours, on a
weekend or on a holiday is due at the end of the next working day. So nothing turns
overdue over a weekend, and a Friday evening document is not late on Saturday.

The calendar is configuration (``[workday]``): the working weekdays, when the day ends,
holidays (dated, or ``MM-DD`` every year) and the extra working days the government
swaps in for them. Due times only move forward with the receipt time, so the deliveries
overdue at a moment are exactly those received before one instant
(``overdue_before``): a single indexed range in the store's query.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hub.edxml.dates import VN_TZ
from hub.errors import ConfigError
from hub.records import OPEN_STATES

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The fixed-date public holidays of the Labour Code 2019, art. 112 (New Year, Reunification
# Day, Labour Day, National Day). Tết, the Hùng Kings' day, National Day's second day and
# the compensating days off move every year: the operator lists them from the
# government's announcement (docs/service.md).
VN_FIXED_HOLIDAYS = "01-01,04-30,05-01,09-02"
_SEARCH_DAYS = 400  # a working day is never further away than this in a sane calendar


def _items(raw: str) -> list[str]:
    return [x.strip() for x in raw.split(",") if x.strip()]


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    weekdays: frozenset[int]  # 0 = Monday
    ends: dt.time  # when the working day ends, Vietnam time
    holidays: frozenset[dt.date]
    yearly_holidays: frozenset[tuple[int, int]]  # (month, day)
    extra_days: frozenset[dt.date]  # worked although a weekend or a holiday

    @classmethod
    def parse(
        cls,
        days: str = "mon,tue,wed,thu,fri",
        ends: str = "17:00",
        holidays: str = VN_FIXED_HOLIDAYS,
        extra_days: str = "",
    ) -> WorkCalendar:
        """The calendar from its configuration strings; ``ConfigError`` naming the value."""
        weekdays = set()
        for name in _items(days):
            if name.lower() not in WEEKDAYS:
                raise ConfigError(f"[workday] days: {name!r} is not one of {', '.join(WEEKDAYS)}")
            weekdays.add(WEEKDAYS.index(name.lower()))
        if not weekdays:
            raise ConfigError("[workday] days must name at least one working weekday")
        try:
            end = dt.time.fromisoformat(ends.strip())
        except ValueError as exc:
            raise ConfigError(f"[workday] ends: {ends!r} is not a time of day (HH:MM)") from exc
        dated: set[dt.date] = set()
        yearly: set[tuple[int, int]] = set()
        for item in _items(holidays):
            if len(item) == 5:  # MM-DD
                try:
                    day = dt.date.fromisoformat(f"2000-{item}")  # a leap year: 02-29 is valid
                except ValueError as exc:
                    raise ConfigError(f"[workday] holidays: {item!r} is not MM-DD") from exc
                yearly.add((day.month, day.day))
            else:
                dated.add(_date("holidays", item))
        extra = {_date("extra_days", item) for item in _items(extra_days)}
        return cls(frozenset(weekdays), end, frozenset(dated), frozenset(yearly), frozenset(extra))

    def is_workday(self, day: dt.date) -> bool:
        if day in self.extra_days:
            return True
        return (
            day.weekday() in self.weekdays
            and day not in self.holidays
            and (day.month, day.day) not in self.yearly_holidays
        )

    def _end(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.ends, VN_TZ)

    def due_us(self, received_us: int) -> int | None:
        """When the notice of receipt for a document received then is due: the end of the
        first working day that ends after it (``None`` if none within a year)."""
        at = dt.datetime.fromtimestamp(received_us / 1e6, VN_TZ)
        for i in range(_SEARCH_DAYS):
            day = at.date() + dt.timedelta(days=i)
            if self.is_workday(day) and self._end(day) > at:
                return _us(self._end(day))
        return None

    def overdue_before(self, now_us: int) -> int:
        """The instant before which a receipt is overdue at ``now_us`` when unanswered:
        the end of the last working day that has ended (0: none within a year)."""
        now = dt.datetime.fromtimestamp(now_us / 1e6, VN_TZ)
        for i in range(_SEARCH_DAYS):
            day = now.date() - dt.timedelta(days=i)
            if self.is_workday(day) and self._end(day) <= now:
                return _us(self._end(day))
        return 0


def unanswered(kind: str, business_status: str | None, state: str) -> bool:
    """A delivery whose notice of receipt is still awaited: a document's, no business
    status recorded, and still open — the recipient's system has not acknowledged it
    (``done``, or ``failed_by_recipient`` with a reason) and it is not ``dead`` (the hub's
    failure, counted apart). The store's overdue queries (``adapters/sql``) say the same
    in SQL."""
    return kind == "edoc" and business_status is None and state in OPEN_STATES


def _date(key: str, raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"[workday] {key}: {raw!r} is not a date (YYYY-MM-DD)") from exc


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)
