"""The activity chart's geometry: round axis steps, bars proportional to the counts, quarter-hour labels."""

from __future__ import annotations

import pytest

from actionhooks.console.chart import TICKS, chart
from actionhooks.storage.activity import WINDOW_MINUTES, Activity

START = 1_800_000_000.0 - 1_800_000_000.0 % 3600 + 7 * 60  # an hour window starting at hh:07


@pytest.mark.parametrize(("peak", "step"), [(0, 1), (3, 1), (5, 2), (9, 5), (41, 20), (1234, 500)])
def test_the_axis_climbs_in_round_steps_that_reach_the_peak(peak: int, step: int) -> None:
    delivered = [0] * WINDOW_MINUTES
    delivered[10] = peak
    picture = chart(Activity(start=START, delivered=delivered, failed=[0] * WINDOW_MINUTES))
    labels = [label for _, label in picture.y_ticks]
    assert labels == [f"{step * k:,}" for k in range(TICKS + 1)]


def test_bars_stack_failed_over_delivered_in_proportion() -> None:
    delivered, failed = [0] * WINDOW_MINUTES, [0] * WINDOW_MINUTES
    delivered[59], failed[59] = 30, 10  # step 10: the axis tops at 40
    delivered[0] = 20
    picture = chart(Activity(start=START, delivered=delivered, failed=failed))
    last, first = picture.bars[59], picture.bars[0]
    assert last.delivered_h == pytest.approx(2 * first.delivered_h * 3 / 4)
    assert last.failed_h == pytest.approx(last.delivered_h / 3)
    assert last.failed_y + last.failed_h == pytest.approx(last.delivered_y)  # stacked, no gap
    assert first.failed_h == 0
    assert last.x > first.x
    assert picture.summary == "Last hour: 50 events delivered, 10 failed"
    assert "30 delivered, 10 failed" in last.title


def test_time_labels_fall_on_the_quarter_hours() -> None:
    picture = chart(Activity(start=START, delivered=[0] * WINDOW_MINUTES, failed=[0] * WINDOW_MINUTES))
    assert [label[-2:] for _, label in picture.x_ticks] == ["15", "30", "45", "00"]
