"""edXML dates: ``yyyy/MM/dd`` (standard) and ``dd/MM/yyyy`` (seen in real traffic).

Both are accepted; the value keeps what was received so nothing is rewritten.
Timestamps are ``yyyy/MM/dd HH:mm:ss`` local time (UTC+7) with no zone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

VN_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")

_ISO_SLASH = re.compile(r"^(\d{4})/(\d{2})/(\d{2})$")
_DMY = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_TS = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
_TS_DMY = re.compile(r"^(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2}):(\d{2})$")

DateForm = Literal["yyyy/MM/dd", "dd/MM/yyyy"]


@dataclass(frozen=True, slots=True)
class EdDate:
    """A date as received: the raw text, its form, and the calendar value."""

    raw: str
    form: DateForm
    value: dt.date

    @classmethod
    def of(cls, value: dt.date) -> EdDate:
        return cls(value.strftime("%Y/%m/%d"), "yyyy/MM/dd", value)


@dataclass(frozen=True, slots=True)
class EdTimestamp:
    raw: str
    form: DateForm
    value: dt.datetime  # aware, UTC+7

    @classmethod
    def of(cls, value: dt.datetime) -> EdTimestamp:
        local = value.astimezone(VN_TZ) if value.tzinfo else value.replace(tzinfo=VN_TZ)
        local = local.replace(microsecond=0)
        return cls(local.strftime("%Y/%m/%d %H:%M:%S"), "yyyy/MM/dd", local)


def parse_date(text: str) -> EdDate:
    """Parse either accepted date form; ``ValueError`` names what was wrong."""
    s = text.strip()
    if m := _ISO_SLASH.match(s):
        y, mo, d = m.groups()
        return EdDate(s, "yyyy/MM/dd", dt.date(int(y), int(mo), int(d)))
    if m := _DMY.match(s):
        d, mo, y = m.groups()
        return EdDate(s, "dd/MM/yyyy", dt.date(int(y), int(mo), int(d)))
    raise ValueError(f"date {text!r} is neither yyyy/MM/dd nor dd/MM/yyyy")


def parse_timestamp(text: str) -> EdTimestamp:
    s = text.strip()
    if m := _TS.match(s):
        y, mo, d, hh, mm, ss = (int(g) for g in m.groups())
        form: DateForm = "yyyy/MM/dd"
    elif m := _TS_DMY.match(s):
        d, mo, y, hh, mm, ss = (int(g) for g in m.groups())
        form = "dd/MM/yyyy"
    else:
        raise ValueError(f"timestamp {text!r} is not yyyy/MM/dd HH:mm:ss")
    return EdTimestamp(s, form, dt.datetime(y, mo, d, hh, mm, ss, tzinfo=VN_TZ))
