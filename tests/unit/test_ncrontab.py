from __future__ import annotations

from datetime import datetime

import pytest

from valet.local.ncrontab import Schedule


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 11, 22, 12, 35, 0), True),
        ("0 */5 * * * *", datetime(2026, 11, 22, 12, 36, 0), False),
        ("0 */5 * * * *", datetime(2026, 11, 22, 12, 35, 1), False),
        ("30 0 9-17/2 * * 1-5", datetime(2026, 11, 23, 11, 0, 30), True),  # a Monday
        ("30 0 9-17/2 * * 1-5", datetime(2026, 11, 22, 11, 0, 30), False),  # a Sunday
        ("0 0 0 1,15 * *", datetime(2026, 12, 15, 0, 0, 0), True),
    ],
)
def test_schedules_match(expression: str, moment: datetime, expected: bool) -> None:
    assert Schedule(expression).matches(moment) is expected


@pytest.mark.parametrize("expression", ["* * * * *", "0 */0 * * * *", "0 61 * * * *", "0 0 0 * JAN *", "00:05:00"])
def test_unsupported_schedules_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        Schedule(expression)
