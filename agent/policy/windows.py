"""Install windows in the device's local time (pure: no clock, no I/O).

A window is ``DAYS HH:MM-HH:MM``: DAYS a comma list of day names or ranges (``Mon-Fri``,
``Sat,Sun``, ``Fri-Mon`` wraps over the week's end), the times 00:00 to 24:00. A window whose
end is not after its start crosses midnight: ``Mon 22:00-02:00`` opens on Monday at 22:00 and
closes on Tuesday at 02:00. Times are wall-clock times; the caller hands in the local time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
WEEK = 7 * MINUTES_PER_DAY
TIMES = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]         # 0 = Monday: the days it opens on
    start: int                   # minutes after midnight
    end: int                     # minutes after midnight (up to 1440); not after start: the next day

    def spans(self) -> list[tuple[int, int]]:
        """Its open spans as minutes of the week [start, end), wrapped over the week's end."""
        length = self.end - self.start if self.end > self.start else self.end + MINUTES_PER_DAY - self.start
        return [(day * MINUTES_PER_DAY + self.start, day * MINUTES_PER_DAY + self.start + length)
                for day in sorted(self.days)]


def parse_windows(values: object, name: str = "[policy].install_windows") -> tuple[Window, ...]:
    """The windows of the configuration; a bad one is a one-line ConfigError naming it."""
    if not isinstance(values, list):
        raise ConfigError(f"{name} must be a list of strings such as \"Mon-Fri 02:00-04:00\"")
    return tuple(parse_window(value, f"{name}[{index}]") for index, value in enumerate(values))


def parse_window(value: object, name: str) -> Window:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string such as \"Mon-Fri 02:00-04:00\"")
    parts = value.split()
    if len(parts) != 2:
        raise ConfigError(f"{name}: {value!r}: expected DAYS HH:MM-HH:MM")
    days, times = parts
    match = TIMES.fullmatch(times)
    if not match:
        raise ConfigError(f"{name}: {value!r}: expected HH:MM-HH:MM")
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    for hour, minute in ((start_h, start_m), (end_h, end_m)):
        if minute > 59 or hour > 24 or (hour == 24 and minute):
            raise ConfigError(f"{name}: {value!r}: {hour:02}:{minute:02} is not a time of day (00:00 to 24:00)")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start == MINUTES_PER_DAY:
        raise ConfigError(f"{name}: {value!r}: a window cannot open at 24:00")
    return Window(_days(days, value, name), start, end)


def _days(text: str, value: str, name: str) -> frozenset[int]:
    chosen: set[int] = set()
    for item in text.split(","):
        ends = item.split("-")
        if len(ends) > 2 or any(e.lower() not in DAYS for e in ends):
            raise ConfigError(f"{name}: {value!r}: {item!r} is not a day or a range of days (Mon..Sun)")
        first, last = DAYS.index(ends[0].lower()), DAYS.index(ends[-1].lower())
        chosen.update(day % 7 for day in range(first, first + (last - first) % 7 + 1))
    return frozenset(chosen)


def _minute_of_week(moment: datetime) -> int:
    return moment.weekday() * MINUTES_PER_DAY + moment.hour * 60 + moment.minute


def is_open(windows: tuple[Window, ...], moment: datetime) -> bool:
    """Whether ``moment`` (local wall time) lies in a window; no windows: always open."""
    if not windows:
        return True
    now = _minute_of_week(moment)
    return any(start <= now < end or start <= now + WEEK < end for w in windows for start, end in w.spans())


def next_opening(windows: tuple[Window, ...], moment: datetime) -> datetime | None:
    """When a window next opens after ``moment`` (to the minute); None: no windows, or open now."""
    if not windows or is_open(windows, moment):
        return None
    now = _minute_of_week(moment)
    ahead = min((start - now) % WEEK for w in windows for start, _end in w.spans())
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=ahead)


def opening_text(opening: datetime, moment: datetime) -> str:
    """``02:00``, or with the day when it is not within the next 24 hours: ``Sat 00:00``."""
    clock = opening.strftime("%H:%M")
    return clock if opening - moment < timedelta(hours=24) else f"{DAYS[opening.weekday()].title()} {clock}"
