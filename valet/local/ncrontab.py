"""Just enough NCRONTAB (the six-field cron of Azure Functions timer triggers) for the local runner:
``{second} {minute} {hour} {day} {month} {day-of-week}`` with ``*``, numbers, ranges ``a-b``, steps
``*/n`` and ``a-b/n``, and lists ``a,b``. Names (``MON``, ``JAN``) and TimeSpan schedules are not
supported locally and are refused with a clear error."""

from __future__ import annotations

from datetime import datetime

_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = end = int(body)
            if step_text:
                end = high
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"out of range: {part!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


class Schedule:
    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError("an NCRONTAB schedule has six fields: second minute hour day month day-of-week")
        try:
            self._sets = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _BOUNDS, strict=True)]
        except ValueError as exc:
            raise ValueError(f"unsupported schedule {expression!r}: {exc}") from None
        self.expression = expression

    def matches(self, moment: datetime) -> bool:
        dow = (moment.weekday() + 1) % 7  # cron: 0 = Sunday
        values = (moment.second, moment.minute, moment.hour, moment.day, moment.month, dow)
        return all(v in s for v, s in zip(values, self._sets, strict=True))
