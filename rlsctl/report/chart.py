"""A small horizontal bar chart as inline SVG (no script, no external asset): the HTML report's
picture of where the data is, when a glance at bar lengths reads faster than a column of numbers."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

ROW, LABEL, BAR, GAP = 18, 170, 360, 8  # px: row height, label column, longest bar, spacing
COLOURS = ("#0969da", "#8250df")  # the two parts of each bar (e.g. table and indexes)


def stacked_bars(title: str, rows: list[tuple[str, int, int]], legend: tuple[str, str], unit: str = "bytes") -> Markup:
    """One bar per row, split into two parts (`legend` names them); the total is printed after it."""
    largest = max((first + second for _, first, second in rows), default=0) or 1
    height = (len(rows) + 2) * ROW + GAP
    width = LABEL + BAR + 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, first, second) in enumerate(rows):
        y = index * ROW + GAP
        one = round(BAR * first / largest)
        two = round(BAR * second / largest)
        parts.append(f'<text x="{LABEL - 6}" y="{y + 12}" text-anchor="end" font-size="11">{escape(label)}</text>')
        parts.append(f'<rect x="{LABEL}" y="{y + 2}" width="{one}" height="{ROW - 6}" fill="{COLOURS[0]}"/>')
        parts.append(
            f'<rect x="{LABEL + one}" y="{y + 2}" width="{two}" height="{ROW - 6}" fill="{COLOURS[1]}" '
            'fill-opacity="0.55"/>'
        )
        parts.append(
            f'<text x="{LABEL + one + two + 6}" y="{y + 12}" font-size="11">'
            f"{escape(human(first + second, unit))}</text>"
        )
    y = len(rows) * ROW + GAP + 4
    for index, name in enumerate(legend):
        x = LABEL + index * 140
        opacity = "" if index == 0 else ' fill-opacity="0.55"'
        parts.append(f'<rect x="{x}" y="{y + 2}" width="12" height="12" fill="{COLOURS[index]}"{opacity}/>')
        parts.append(f'<text x="{x + 18}" y="{y + 12}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def human(value: int, unit: str = "bytes") -> str:
    """1536 bytes -> "1.5 KiB"; other units print as they are."""
    if unit != "bytes":
        return f"{value:,} {unit}"
    size = float(value)
    for name in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or name == "TiB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1024
    raise AssertionError("unreachable")
