"""The loss curve as numbers an SVG template draws (server-rendered: no script on the page)."""

from typing import Any

WIDTH, HEIGHT, PAD = 640, 220, 36


def _scale(values: list[float], low: float, high: float, size: float) -> list[float]:
    span = (high - low) or 1.0
    return [size - (v - low) / span * size for v in values]


def curve_svg(curve: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Polyline points for the loss (left axis) and, where logged, the reward accuracy (right
    axis, 0..1) against the step; None until there are two points."""
    points = [p for p in curve if isinstance(p.get("loss"), int | float)]
    if len(points) < 2:
        return None
    steps = [p["step"] for p in points]
    losses = [float(p["loss"]) for p in points]
    first, last = min(steps), max(steps)
    span = (last - first) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    xs = [PAD + (s - first) / span * inner_w for s in steps]
    low, high = min(losses), max(losses)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    ys = [PAD + y for y in _scale(losses, low, high, inner_h)]
    out: dict[str, Any] = {
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "right": WIDTH - PAD,
        "bottom": HEIGHT - PAD,
        "loss": " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True)),
        "loss_high": f"{high:.4g}",
        "loss_low": f"{low:.4g}",
        "step_first": first,
        "step_last": last,
        "accuracy": "",
    }
    acc = [(x, p.get("accuracy")) for x, p in zip(xs, points, strict=True)]
    acc = [(x, float(a)) for x, a in acc if isinstance(a, int | float)]
    if len(acc) >= 2:
        ays = [PAD + y for y in _scale([a for _, a in acc], 0.0, 1.0, inner_h)]
        out["accuracy"] = " ".join(f"{x:.1f},{y:.1f}" for (x, _), y in zip(acc, ays, strict=True))
    return out
