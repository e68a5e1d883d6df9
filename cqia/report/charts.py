"""Static SVG charts of the report's plots, which the Data Docs index shows offline.

One chart per plot with every category in it. `dvc plots show` draws its charts with Vega loaded
from a CDN, so its page is blank offline; an SVG is drawn already. vl-convert renders the
Vega-Lite spec in process (its own JavaScript engine, no browser, no network: data comes inline
and no base URL is allowed). Its text layout does not read the system's fonts (measured: the same
bytes with no fonts, with DejaVu, with DejaVu and Liberation), so the SVG is the same bytes on
every machine with the same vl-convert. Here and not in cqia/publish/ so that a change to a chart
reruns only the report stage.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cqia.publish.stats import ALL, CHART_LABELS, OTHER, PLOTS, ranked

VEGA_LITE = "5.21"        # the Vega-Lite version vl-convert renders with (DVC's templates are Vega-Lite 5)
# The charts' text is drawn by whoever shows the SVG: CJK fonts of common systems first.
CHART_FONT = 'system-ui, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif'


def chart_spec(name: str, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The Vega-Lite spec of plot `name`'s static chart, from its rows by category (`plot_rows`,
    with `ALL` last). Bar plots stack the categories (ALL is their sum, so it is left out), most
    records first, ties by label; beyond CHART_LABELS labels the rest are summed as "(other)".
    Line plots draw one line per category and one for ALL."""
    plot = PLOTS[name]
    categories = [c for c in rows if c != ALL]
    encoding: dict[str, Any] = {}
    if plot.template == "linear":
        series = [*categories, ALL]
        values = [{"category": c, **row} for c in series for row in rows.get(c, [])]
        mark: dict[str, Any] = {"type": "line", "point": True}
        encoding["x"] = {"field": plot.x, "type": "quantitative", "title": plot.x}
        encoding["y"] = {"field": plot.y, "type": "quantitative", "title": plot.y}
    else:
        series = categories
        totals: Counter[str] = Counter()
        for c in categories:
            for row in rows[c]:
                totals[row[plot.y]] += row[plot.x]
        order = [label for label, _ in ranked(totals)]
        shown = set(order[:CHART_LABELS])
        per: Counter[tuple[str, str]] = Counter()
        for c in categories:
            for row in rows[c]:
                per[c, row[plot.y] if row[plot.y] in shown else OTHER] += row[plot.x]
        labels = order[:CHART_LABELS] + ([OTHER] if len(order) > CHART_LABELS else [])
        values = [{"category": c, plot.y: label, plot.x: per[c, label]}
                  for c in categories for label in labels if per[c, label]]
        mark = {"type": "bar"}
        encoding["y"] = {"field": plot.y, "type": "nominal", "sort": labels, "title": plot.y}
        encoding["x"] = {"field": plot.x, "type": "quantitative", "title": plot.x, "stack": "zero"}
    encoding["color"] = {"field": "category", "type": "nominal", "title": "category",
                         "scale": {"domain": series}, "sort": series}
    return {"title": plot.title, "width": 480, "data": {"values": values}, "mark": mark, "encoding": encoding,
            "config": {"font": CHART_FONT}}


def chart_svg(spec: dict[str, Any]) -> str:
    """The chart as SVG text, rendered offline by vl-convert (no base URL is allowed for data)."""
    import vl_convert

    return vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE, allowed_base_urls=[])
