"""The activity chart as server-side SVG geometry: stacked bars per minute, delivered over failed.

No chart library and no script: the template draws rectangles computed here, so the picture shows
without JavaScript and passes a CSP that allows no inline script or style.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from actionhooks.storage.activity import Activity

__all__ = ["Bar", "Chart", "chart"]

WIDTH, HEIGHT = 1000, 200
LEFT, BOTTOM, TOP = 48, 22, 10
TICKS = 4  # horizontal grid lines above zero


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    delivered_y: float
    delivered_h: float
    failed_y: float
    failed_h: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    plot_bottom: float
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    delivered_total: int
    failed_total: int
    summary: str


def _nice_step(peak: int) -> int:
    """The smallest 1/2/5 x 10^n step whose TICKS steps reach `peak`, so axis labels are round numbers."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude * TICKS >= peak:
                return factor * magnitude
        magnitude *= 10


def chart(data: Activity) -> Chart:
    minutes = len(data.delivered)
    plot_w = WIDTH - LEFT - 24  # room for the last time label
    plot_h = HEIGHT - BOTTOM - TOP
    bottom = TOP + plot_h
    step = _nice_step(max((d + f for d, f in zip(data.delivered, data.failed, strict=True)), default=0))
    top_value = step * TICKS
    slot = plot_w / max(minutes, 1)
    bars = []
    for i, (ok, bad) in enumerate(zip(data.delivered, data.failed, strict=True)):
        ok_h = plot_h * ok / top_value
        bad_h = plot_h * bad / top_value
        when = datetime.fromtimestamp(data.start + 60 * i, UTC).strftime("%H:%M")
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.15, 2),
                width=round(max(slot * 0.7, 1), 2),
                delivered_y=round(bottom - ok_h, 2),
                delivered_h=round(ok_h, 2),
                failed_y=round(bottom - ok_h - bad_h, 2),
                failed_h=round(bad_h, 2),
                title=f"{when} UTC: {ok} delivered, {bad} failed",
            )
        )
    y_ticks = [(round(bottom - plot_h * k / TICKS, 2), f"{step * k:,}") for k in range(TICKS + 1)]
    x_ticks = []
    for i in range(minutes + 1):  # labels on the quarter hours
        moment = datetime.fromtimestamp(data.start + 60 * i, UTC)
        if moment.minute % 15 == 0:
            x_ticks.append((round(LEFT + i * slot, 2), moment.strftime("%H:%M")))
    delivered_total, failed_total = sum(data.delivered), sum(data.failed)
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        plot_bottom=bottom,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        delivered_total=delivered_total,
        failed_total=failed_total,
        summary=f"Last hour: {delivered_total:,} events delivered, {failed_total:,} failed",
    )
