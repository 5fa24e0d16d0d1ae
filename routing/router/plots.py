"""Budget curves of simulation runs (matplotlib, drawn off-screen)."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def simulation_plot(runs: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    base = runs[0]["results"]
    budgets = [r["budget"] * 100 for r in base]
    ax.plot(budgets, [r["oracle"] for r in base], "k--", label="oracle (ceiling)")
    ax.plot(budgets, [r["random"] for r in base], ":", color="grey", marker="o", label="random")
    ax.axhline(base[0]["all_judge"], color="grey", lw=1, label="all judge")
    for run in runs:
        ax.plot(budgets, [r["agreement"] for r in run["results"]], marker="o", label=run["policy"])
    ax.set_xlabel("human budget (% of scored items)")
    ax.set_ylabel("agreement with the reference")
    judges = ", ".join(runs[0]["judges"])
    ax.set_title(f"{title}  (judges: {judges}; {runs[0]['n_scored']} items scored)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
