"""Usage: calls, errors and tokens of the workspace's apps per UTC day, as a chart drawn on the
server (inline SVG: no chart library, no script) and as a table."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from openbailian.console.web import ConsoleRoute, SignedIn, page, runtime_of
from openbailian.services import apps as app_service
from openbailian.services.usage import MAX_REPORT_DAYS, UsageReport, UsageRow, usage_report

__all__ = ["router", "Bar", "chart_bars"]

router = APIRouter(prefix="/console/usage", route_class=ConsoleRoute, include_in_schema=False)

CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BOTTOM, CHART_LEFT = 720, 200, 12, 28, 36
RANGES = (7, 14, 30, 90)


@dataclass(frozen=True, slots=True)
class Bar:
    """One day's column: answered calls below, errors stacked on top (SVG units)."""

    row: UsageRow
    x: float
    width: float
    ok_y: float
    ok_height: float
    error_y: float
    error_height: float
    label: str  # the day, shown under every few columns ("" for the others)


def chart_bars(days: list[UsageRow]) -> tuple[list[Bar], int]:
    """The columns of the chart and the value of its top line."""
    top = max([d.calls for d in days] + [1])
    plot = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    slot = (CHART_WIDTH - CHART_LEFT) / max(1, len(days))
    every = max(1, len(days) // 7)
    bars = []
    for n, day in enumerate(days):
        ok_height = plot * (day.calls - day.errors) / top
        error_height = plot * day.errors / top
        base = CHART_HEIGHT - CHART_BOTTOM
        bars.append(
            Bar(
                row=day,
                x=CHART_LEFT + n * slot + slot * 0.15,
                width=slot * 0.7,
                ok_y=base - ok_height,
                ok_height=ok_height,
                error_y=base - ok_height - error_height,
                error_height=error_height,
                label=day.day.strftime("%m-%d") if (len(days) - 1 - n) % every == 0 else "",
            )
        )
    return bars, top


@router.get("")
async def show_usage(
    request: Request, user: SignedIn, days: int = Query(14, ge=1, le=MAX_REPORT_DAYS)
) -> Response:
    async with runtime_of(request).db.session() as session:
        report: UsageReport = await usage_report(session, user.workspace_id, days=days)
        names = {a.id: a.name for a in await app_service.list_apps(session, user.workspace_id)}
    totals = report.day_totals()
    bars, top = chart_bars(totals)
    return await page(
        request, "usage.html", report=report, bars=bars, top=top, names=names, days=days,
        ranges=RANGES, total=report.total(),
        chart={"width": CHART_WIDTH, "height": CHART_HEIGHT, "left": CHART_LEFT,
               "top": CHART_TOP, "base": CHART_HEIGHT - CHART_BOTTOM},
    )

