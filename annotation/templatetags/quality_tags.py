"""Template filters of the quality page: a figure with its sample, or "too few"."""

from django import template
from django.utils.html import format_html

register = template.Library()


@register.filter
def figure(value) -> str:
    """A share or score: ``0.83`` with its interval and ``n``; "too few" below the minimum."""
    if value is None or value.value is None:
        return format_html(
            '<span class="muted" title="n={}">&ndash;</span>', getattr(value, "n", 0)
        )
    low, high = getattr(value, "low", None), getattr(value, "high", None)
    interval = f"{low:.2f}\u2013{high:.2f}" if low is not None and high is not None else ""
    if value.too_few:
        return format_html(
            '<span class="too-few" title="{} ({}) on {} only">too few <small>n={}</small></span>',
            f"{value.value:.2f}",
            interval,
            value.n,
            value.n,
        )
    return format_html(
        '{}{} <small class="muted">n={}</small>',
        f"{value.value:.2f}",
        format_html(' <small class="muted">[{}]</small>', interval) if interval else "",
        value.n,
    )


FLAG_NAMES = {
    "gold_accuracy": "gold accuracy",
    "peer_agreement": "peer agreement",
    "human_agreement": "human agreement",
    "position_bias": "position bias",
}


@register.filter
def flag_name(flag: str) -> str:
    return FLAG_NAMES.get(flag, flag)


@register.filter
def flagged(row, name: str) -> bool:
    return name in row.flags
