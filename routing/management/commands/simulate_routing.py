"""``manage.py simulate_routing FILE --policy NAME --budgets 0.1,0.2,0.3,0.5 ...``"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing.router.simulation import rm_scores_read, rows_read, simulation_run
from tandem.errors import ApplicationError


def _budgets(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(
            f"--budgets: {text!r} is not a comma-separated list of numbers"
        ) from None
    if not values:
        raise CommandError("--budgets: give at least one budget")
    return values


def params_per_policy(values: list[str], policies: list[str]) -> dict[str, dict]:
    """``--params '{...}'`` (one policy only) or ``--params NAME='{...}'`` per policy."""
    out: dict[str, dict] = {}
    for value in values:
        name, text = None, value.strip()
        if not text.startswith("{") and "=" in text:
            name, text = (part.strip() for part in text.split("=", 1))
        if name is None:
            if len(policies) != 1:
                raise CommandError(
                    "--params: several policies are named; say which one, e.g. "
                    "--params learned='{\"folds\": 5}'"
                )
            name = policies[0]
        if name not in policies:
            raise CommandError(f"--params: {name!r} is not among the policies run")
        if name in out:
            raise CommandError(f"--params: {name!r} given twice")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params {name}: not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise CommandError(f"--params {name}: give a JSON object")
        out[name] = parsed
    return out


class Command(BaseCommand):
    help = "Simulate routing policies on a file of items with human and judge labels."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--policy",
            default="judge_uncertainty",
            help="policy name, or several separated by commas (one run each)",
        )
        parser.add_argument("--budgets", default="0.1,0.2,0.3,0.5")
        parser.add_argument(
            "--judge",
            action="append",
            default=[],
            help="judge name; the first gives the label, every one is a signal (repeatable)",
        )
        parser.add_argument("--train", type=Path, help="fit the learned policy on this file only")
        parser.add_argument(
            "--train-judge",
            action="append",
            default=[],
            help="judges of the --train file in their roles (default: --judge)",
        )
        parser.add_argument(
            "--params",
            action="append",
            default=[],
            help="policy params as JSON; with several policies, per policy: NAME='{...}' "
            "(repeatable)",
        )
        parser.add_argument(
            "--dedupe",
            action="store_true",
            help="keep items with identical content once (the smallest external_id)",
        )
        parser.add_argument(
            "--calibration",
            type=float,
            default=0.1,
            help="with --train: the share of FILE's items in its calibration slice",
        )
        parser.add_argument(
            "--rm-scores",
            type=Path,
            help="a reward model's margins, JSON lines {external_id, rm_margin: score(A) - "
            "score(B)}: adds the rm_margin and rm_vs_primary features (learned, rules)",
        )
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-embeddings", action="store_true")
        parser.add_argument("--json", type=Path, dest="json_out")
        parser.add_argument("--plot", type=Path)

    def handle(self, *args, **opts):
        budgets = _budgets(opts["budgets"])
        policies = [p.strip() for p in opts["policy"].split(",") if p.strip()]
        params = params_per_policy(opts["params"], policies)
        try:
            rows = rows_read(opts["file"])
            train = rows_read(opts["train"]) if opts["train"] else None
            rm_margins = rm_scores_read(opts["rm_scores"], rows) if opts["rm_scores"] else None
            runs = [
                simulation_run(
                    rows,
                    policy=name,
                    budgets=budgets,
                    judges=opts["judge"] or None,
                    params=params.get(name),
                    train_rows=train if name == "learned" else None,
                    train_judges=opts["train_judge"] or None,
                    seed=opts["seed"],
                    folds=opts["folds"],
                    embeddings=not opts["no_embeddings"],
                    dedupe=opts["dedupe"],
                    calibration=opts["calibration"],
                    rm_margins=rm_margins,
                )
                for name in policies
            ]
        except (ApplicationError, OSError) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from None
        for run in runs:
            self._print(run)
        if opts["json_out"]:
            payload = runs[0] if len(runs) == 1 else runs
            opts["json_out"].parent.mkdir(parents=True, exist_ok=True)
            opts["json_out"].write_text(json.dumps(payload, indent=2) + "\n")
        if opts["plot"]:
            from routing.router.plots import simulation_plot

            simulation_plot(runs, opts["plot"], title=opts["file"].name)

    def _print(self, run):
        self.stdout.write(
            f"policy {run['policy']}  judges {', '.join(run['judges'])}  items {run['n_items']}  "
            f"scored {run['n_scored']} ({run['n_left_out']} left out: tie or no majority)"
        )
        if "model" in run:
            m = run["model"]
            chosen = m["model"]
            calibration = m.get("calibration")
            if calibration and not calibration.get("kept", True):
                chosen += (
                    " (not better than judge uncertainty on FILE's calibration slice: ranks by it)"
                )
            checks = (calibration or {}).get("signals") or m.get("signal_check") or []
            turned = [c["signal"] for c in checks if c["reversed"]]
            ranks_by_uncertainty = m["model"] == "judge_uncertainty" or not (calibration or {}).get(
                "kept", True
            )
            if turned and ranks_by_uncertainty:
                chosen += f"; signals shown to point the wrong way, reversed: {', '.join(turned)}"
            self.stdout.write(
                f"  model: {m['trained_on']}, {m['n_train']} items, out-of-fold AUC "
                f"{m['oof_auc']:.3f}, chosen {chosen}"
            )
        self.stdout.write(
            f"  {'budget':>6} {'humans':>6} {run['policy'][:10]:>10} {'random':>7} "
            f"{'all-judge':>9} {'oracle':>7}"
        )
        for r in run["results"]:
            self.stdout.write(
                f"  {r['budget']:>6.0%} {r['human_items']:>6} {r['agreement']:>10.3f} "
                f"{r['random']:>7.3f} {r['all_judge']:>9.3f} {r['oracle']:>7.3f}"
            )
