"""Template filters of the quality page: a figure with its sample, or "too few"."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def figure(value, extra: str = "") -> str:
    """A share or score: ``0.83`` over its interval and ``n``; "too few" below the minimum."""
    if value is None or value.value is None:
        return format_html(
            '<span class="muted" title="n={}">&ndash;</span>', getattr(value, "n", 0)
        )
    low, high = getattr(value, "low", None), getattr(value, "high", None)
    interval = f"{low:.2f}\u2013{high:.2f} · " if low is not None and high is not None else ""
    if value.too_few:
        return format_html(
            '<span class="too-few" title="{} ({}n={})">too few</span>'
            '<small class="ci">n={}{}</small>',
            f"{value.value:.2f}",
            interval,
            value.n,
            value.n,
            extra,
        )
    return format_html(
        '<span class="fig">{}</span><small class="ci">{}n={}{}</small>',
        f"{value.value:.2f}",
        interval,
        value.n,
        extra,
    )


@register.filter
def bias_figure(bias) -> str:
    """Position bias: the first-shown share, with ties and both-bad counted beside it."""
    if bias is None:
        return mark_safe('<span class="muted">&ndash;</span>')
    extra = "".join(
        f" · {n} {name}" for n, name in ((bias.ties, "tie"), (bias.both_bad, "both bad")) if n
    )
    return figure(bias.first_wins, extra)


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
