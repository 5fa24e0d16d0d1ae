"""Server-rendered SVG charts for the quality page: no script, no chart library, no CDN.

One kind of chart serves every figure there: a forest plot, one row per labeller, a dot at the
share with its confidence interval as a whisker, on a 0..1 axis with reference lines (chance, a
threshold, the human majority's share). Every text goes through ``format_html``.
"""

from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .quality import Share

WIDTH = 520
LABEL_WIDTH = 140
RIGHT = 70
ROW = 22
TOP = 30
BOTTOM = 34


@dataclass(frozen=True)
class Row:
    label: str
    share: Share
    flagged: bool = False


@dataclass(frozen=True)
class Reference:
    value: float
    label: str
    kind: str = "chance"  # css class: chance | threshold | reference


def _x(value: float) -> float:
    return round(LABEL_WIDTH + value * (WIDTH - LABEL_WIDTH - RIGHT), 1)


def forest(
    rows: list[Row], *, title: str, references: list[Reference] = (), max_rows: int = 40
) -> SafeString:
    """A forest plot of shares (0..1) with their intervals; ``too few`` rows are drawn faint."""
    rows = [r for r in rows if r.share.value is not None][:max_rows]
    height = TOP + max(len(rows), 1) * ROW + BOTTOM
    parts = [
        format_html(
            '<text class="chart-title" x="0" y="16">{}</text>',
            title,
        )
    ]
    axis_y = TOP + max(len(rows), 1) * ROW + 4
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            format_html(
                '<line class="grid" x1="{x}" x2="{x}" y1="{top}" y2="{bottom}"/>'
                '<text class="tick" x="{x}" y="{label}" text-anchor="middle">{t}</text>',
                x=_x(tick),
                top=TOP - 4,
                bottom=axis_y,
                label=axis_y + 14,
                t=f"{tick:g}",
            )
        )
    for i, ref in enumerate(references):
        parts.append(
            format_html(
                '<line class="ref {kind}" x1="{x}" x2="{x}" y1="{top}" y2="{bottom}"/>'
                '<text class="ref-label {kind}" x="{x}" y="{y}" text-anchor="middle">'
                "{label}</text>",
                kind=ref.kind,
                x=_x(ref.value),
                top=TOP - 4,
                bottom=axis_y,
                y=axis_y + 28 if i % 2 == 0 else TOP - 8,
                label=f"{ref.label} {ref.value:.2f}",
            )
        )
    if not rows:
        parts.append(
            format_html(
                '<text class="tick" x="{}" y="{}">no data yet</text>', LABEL_WIDTH, TOP + 14
            )
        )
    for i, row in enumerate(rows):
        y = TOP + i * ROW + ROW / 2
        share = row.share
        classes = " ".join(
            c
            for c in ("point", "flagged" if row.flagged else "", "few" if share.too_few else "")
            if c
        )
        low = share.low if share.low is not None else share.value
        high = share.high if share.high is not None else share.value
        parts.append(
            format_html(
                '<g class="{classes}"><title>{label}: {value} ({low}-{high}), n={n}{few}</title>'
                '<text class="row-label" x="{lx}" y="{ty}" text-anchor="end">{label}</text>'
                '<line class="whisker" x1="{x1}" x2="{x2}" y1="{y}" y2="{y}"/>'
                '<circle cx="{cx}" cy="{y}" r="4.5"/>'
                '<text class="value" x="{vx}" y="{ty}">{short}</text></g>',
                classes=classes,
                label=row.label,
                value=f"{share.value:.3f}",
                short=f"{share.value:.2f}",
                low=f"{low:.3f}",
                high=f"{high:.3f}",
                n=share.n,
                few=" (too few)" if share.too_few else "",
                lx=LABEL_WIDTH - 8,
                ty=round(y + 4, 1),
                x1=_x(low),
                x2=_x(high),
                y=round(y, 1),
                cx=_x(share.value),
                vx=WIDTH - RIGHT + 10,
            )
        )
    body = format_html_join("", "{}", ((p,) for p in parts))
    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{title}">{body}</svg>',
        w=WIDTH,
        h=height + 12,
        title=title,
        body=body,
    )
