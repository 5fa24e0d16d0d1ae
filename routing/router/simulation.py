"""Routing simulation: how well does a policy do at a given human budget? A pure service over
in-memory rows in DESIGN.md's row format; ``manage.py simulate_routing`` is its thin CLI.

Semantics (docs/routing.md):

- reference: the row's ``gold``, else the majority of its human labels. Items whose reference is a
  tie, or that have no majority, are left out (and counted); routing and the budget are over the
  scored items, ``round(budget * n_scored)`` of them go to people;
- an item sent to people takes one human label: the first in the row when the reference is a human
  majority, otherwise the gold label;
- the others take the label of the primary judge (the first named): its parseable presentation
  orders must agree, else it is a tie; an order whose twin is unparseable gives its verdict
  alone (``features.judge_verdict``; the features flag it ``primary_unparsed``, which judge
  uncertainty counts as inconclusive); a tie or a verdict with no parseable order scores as
  wrong;
- baselines: random routing (its exact expectation over all draws), all-judge, and the oracle
  (the items where the judge is wrong first, then the rest by a stable hash of the item: the
  ceiling);
- nothing depends on the order of the rows: ties in every ranking are broken by secondary signals
  and then by a stable hash of the item's ``external_id`` with the seed;
- ``dedupe``: of items with identical content (prompt or conversation and the candidates' texts),
  only the one with the smallest ``external_id`` is kept;
- ``learned`` is cross-fitted in folds grouped by normalised prompt (``features.prompt_groups``),
  so that no copy of an item and no pair on the same prompt helps to score it; with ``train_rows``
  it is fitted on those only (a training file that shares prompts with the evaluated one is
  refused), and ``calibration`` of the evaluated items (a stable hash of their prompt) form its
  calibration slice, as in the live router: their labels decide whether the transferred model
  beats judge uncertainty here; if not, the policy ranks by judge uncertainty, with the signals
  the slice shows to point the wrong way reversed (``LearnedPolicy.adapt``). As with the
  cross-fit, the labels are taken as known without spending the budget, and the slice's items
  are routed like the rest (their labels decide these few choices between rankings only: the
  model or not, and each of four signals' direction).
"""

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation.readers import RowDecodeError, detect_format, read_rows
from annotation.rows import ItemRow, RowError, RowOptions, parse_row
from annotation.schema import LabelSchema, TaskType
from routing.router.features import (
    ItemView,
    JudgeLabel,
    answers_of_views,
    features_table,
    judge_table,
    metadata_table,
    model_rates,
    normalised_prompt,
    prompt_groups,
    with_model_strengths,
    with_reward_margins,
)
from routing.router.policies import LearnedPolicy, Policy, policy_build
from routing.router.policies.base import stable_hash
from routing.router.policies.learned import judge_error_target
from tandem.errors import InvalidInput

DECISIVE = ("A", "B")


@dataclass
class SimItem:
    view: ItemView
    reference: str | None  # A/B/tie/both_bad, None: no majority
    reference_kind: str  # gold | majority | none
    human_label: str | None  # the label a person gives in the simulation
    judge_label: str | None  # the primary judge's combined verdict


def rows_read(path: Path | str) -> list[ItemRow]:
    """Parse a file of pairwise rows; raises InvalidInput naming the first bad line."""
    path = Path(path)
    options = RowOptions(task_type=TaskType.PAIRWISE, schema=LabelSchema.defaults("pairwise"))
    out = []
    for line, raw in read_rows(path, detect_format(path.name)):
        if isinstance(raw, RowDecodeError):
            raise InvalidInput(f"{path.name}, line {line}: {raw.message}")
        try:
            out.append(parse_row(raw, options))
        except RowError as exc:
            raise InvalidInput(f"{path.name}, line {line}: {exc}") from None
    return out


def rm_scores_read(path: Path | str, rows: Sequence[ItemRow]) -> pd.Series:
    """A reward model's margins for ``simulate_routing --rm-scores``: JSON lines
    ``{"external_id": ..., "rm_margin": score(A) - score(B)}`` (``bench/rm_scores_pandalm.py``
    writes them). Raises InvalidInput naming the line of a bad row, an id given twice, or an id
    that is not in the items' file. Items without a line have no margin (NaN), as unscored items
    have in the router."""
    path = Path(path)
    known = {row.external_id for row in rows}
    out: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InvalidInput(f"{where}: expected an object with external_id and rm_margin")
            item, margin = record.get("external_id"), record.get("rm_margin")
            if not isinstance(item, str) or not item:
                raise InvalidInput(f"{where}: external_id must be non-empty text")
            if isinstance(margin, bool) or not isinstance(margin, int | float):
                raise InvalidInput(f"{where}: rm_margin must be a number; got {margin!r}")
            if not math.isfinite(margin):
                raise InvalidInput(f"{where}: rm_margin must be finite; got {margin!r}")
            if item not in known:
                raise InvalidInput(f"{where}: external_id {item!r} is not in the items' file")
            if item in out:
                raise InvalidInput(f"{where}: external_id {item!r} given twice")
            out[item] = float(margin)
    if not out:
        raise InvalidInput(f"{path.name}: no scores")
    return pd.Series(out, dtype=float)


def reference_of(row: ItemRow) -> tuple[str | None, str]:
    if row.gold is not None:
        gold = row.gold.get("choice") if isinstance(row.gold, dict) else row.gold
        return gold, "gold"
    humans = [label.payload.get("choice") for label in row.labels if label.source == "human"]
    counts = Counter(c for c in humans if c is not None).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None, "none"
    return counts[0][0], "majority"


def sim_items(rows: Iterable[ItemRow], judges: Sequence[str], *, prefix: str = "") -> list[SimItem]:
    items = []
    for row in rows:
        judge_labels = [
            JudgeLabel(
                judge=label.judge,
                choice=label.payload.get("choice"),
                order=label.order,
                confidence=label.confidence,
            )
            for label in row.labels
            if label.source == "judge"
        ]
        view = ItemView(
            key=prefix + row.external_id,
            prompt=row.prompt,
            messages=row.messages,
            candidates=[c.text for c in row.candidates],
            metadata=row.metadata,
            judge_labels=judge_labels,
            models=[c.model or "" for c in row.candidates],
        )
        reference, kind = reference_of(row)
        if kind == "majority":
            human = next(x.payload.get("choice") for x in row.labels if x.source == "human")
        else:
            human = reference
        items.append(
            SimItem(
                view=view,
                reference=reference,
                reference_kind=kind,
                human_label=human,
                judge_label=None,
            )
        )
    # The primary judge's combined verdict (judge_verdict's rules), for all items at once.
    if items and judges:
        primary = judge_table([it.view for it in items], judges[:1])
        labels = np.select(
            [primary["primary_a"] > 0, primary["primary_b"] > 0, primary["primary_tie"] > 0],
            ["A", "B", "tie"],
            default="",
        )
        for item, label in zip(items, labels.tolist(), strict=True):
            item.judge_label = label or None
    return items


def judges_in(rows: Iterable[ItemRow]) -> list[str]:
    """Judge names in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for label in row.labels:
            if label.source == "judge":
                seen.setdefault(label.judge, None)
    return list(seen)


def _correct(label: str | None, reference: str | None) -> bool:
    return label in DECISIVE and label == reference


class Scorer:
    """Agreement of the routed dataset with the reference, over the scored items."""

    def __init__(self, items: Sequence[SimItem], *, seed: int = 0) -> None:
        self.keys = pd.Index([it.view.key for it in items])
        self.human_ok = np.array([_correct(it.human_label, it.reference) for it in items])
        self.judge_ok = np.array([_correct(it.judge_label, it.reference) for it in items])
        self.seed = seed

    def agreement(self, human_keys: Iterable[Any]) -> float:
        mask = np.zeros(len(self.keys), dtype=bool)
        mask[self.keys.get_indexer(list(human_keys))] = True
        return float(np.where(mask, self.human_ok, self.judge_ok).mean())

    def oracle_order(self) -> list[Any]:
        """The judge's errors first, then the rest; each part in the order of a stable hash."""
        order = np.lexsort((stable_hash(self.keys, self.seed), self.judge_ok))
        return list(self.keys[order])

    def random_expected(self, k: int) -> float:
        """The expected agreement when ``k`` items drawn uniformly at random go to people (the
        mean over every possible draw, exactly: no seed, no row order)."""
        n = len(self.keys)
        if n == 0:
            return 0.0
        gain = float(self.human_ok.sum() - self.judge_ok.sum()) / n
        return float(self.judge_ok.mean()) + gain * k / n


def items_deduplicated(rows: Sequence[ItemRow]) -> tuple[list[ItemRow], int]:
    """Of rows with identical content, the one with the smallest ``external_id`` (the result does
    not depend on row order); and how many were dropped."""
    kept: dict[str, ItemRow] = {}
    for row in rows:
        other = kept.get(row.content_hash)
        if other is None or row.external_id < other.external_id:
            kept[row.content_hash] = row
    keep = {id(row) for row in kept.values()}
    out = [row for row in rows if id(row) in keep]
    return out, len(rows) - len(out)


def train_overlap(rows: Sequence[ItemRow], train_rows: Sequence[ItemRow]) -> tuple[int, int]:
    """How many items of ``rows`` also appear in ``train_rows`` (identical content), and how many
    share a prompt (normalised) with one there."""
    train_content = {row.content_hash for row in train_rows}
    train_prompts = {_normalised(row) for row in train_rows}
    same = sum(1 for row in rows if row.content_hash in train_content)
    prompts = sum(1 for row in rows if _normalised(row) in train_prompts)
    return same, prompts


def _normalised(row: ItemRow) -> str:
    return normalised_prompt(
        ItemView(key="", prompt=row.prompt, candidates=[], messages=row.messages)
    )


def file_model_rates(items: Sequence[SimItem]) -> dict[str, dict[str, float]]:
    """The judges' rates of the candidates' models over every item of a file (as the router
    takes them over the whole project)."""
    return model_rates(answers_of_views(it.view for it in items))


def _with_model_strengths(
    table: pd.DataFrame,
    items: Sequence[SimItem],
    judges: Sequence[str],
    rates: dict[str, dict[str, float]],
) -> pd.DataFrame:
    """``table`` with the ``model_pick_*`` features of ``items`` from ``rates``."""
    return with_model_strengths(table, {it.view.key: it.view.models for it in items}, rates, judges)


def learned_fit(
    items: Sequence[SimItem],
    table: pd.DataFrame,
    *,
    params: dict[str, Any],
    rates: dict[str, dict[str, float]],
    full_model: bool = True,
) -> LearnedPolicy:
    """The learned policy fitted on ``items`` (cross-fitted, grouped by prompt), keeping the
    model rates its ``model_pick_*`` features came from, as the live router stores them with a
    fitted model (``fitting.router_model_train``)."""
    target = pd.Series(
        [judge_error_target(it.judge_label, it.reference) for it in items],
        index=[it.view.key for it in items],
    )
    groups = prompt_groups(it.view for it in items)
    policy = LearnedPolicy(**params).fit(table, target, groups, full_model=full_model)
    policy.model_rates = rates
    return policy


def simulation_run(
    rows: Sequence[ItemRow],
    *,
    policy: str,
    budgets: Sequence[float],
    judges: Sequence[str] | None = None,
    params: dict[str, Any] | None = None,
    train_rows: Sequence[ItemRow] | None = None,
    train_judges: Sequence[str] | None = None,
    seed: int = 0,
    folds: int = 5,
    embeddings: bool = True,
    dedupe: bool = False,
    calibration: float = 0.1,
    rm_margins: pd.Series | None = None,
) -> dict[str, Any]:
    """Route ``rows`` with ``policy`` at each budget and score the result (module docstring).

    ``rm_margins`` (by external id, ``rm_scores_read``): a reward model's signed margins, added
    as the router adds a registered model's (``features.with_reward_margins``); the ``--train``
    file has none, so a model fitted there does not use them."""
    for budget in budgets:
        if not 0.0 <= budget <= 1.0:
            raise InvalidInput(f"budget {budget} is not a fraction between 0 and 1")
    judges = list(judges or judges_in(rows))
    if not judges:
        raise InvalidInput("the file has no judge labels and no --judge was named")
    n_duplicates = 0
    if dedupe:
        rows, n_duplicates = items_deduplicated(rows)
    all_items = sim_items(rows, judges)
    if not any(j.judge == judges[0] for it in all_items for j in it.view.judge_labels):
        raise InvalidInput(f"no label from judge {judges[0]!r} in the file")
    items = [it for it in all_items if it.reference in DECISIVE]
    if not items:
        raise InvalidInput("no item has a usable reference (gold or a human majority)")
    # py3langid (per distinct prompt) only where a policy can read the language: rules.
    language = policy == "rules"
    table = features_table(
        [it.view for it in items], judges, embeddings=embeddings, language=language
    )
    rates = file_model_rates(all_items)
    table = _with_model_strengths(table, all_items, judges, rates)
    if rm_margins is not None:
        table = with_reward_margins(table, rm_margins)
    metadata = metadata_table([it.view for it in items])
    scorer = Scorer(items, seed=seed)
    params = dict(params or {})

    built: Policy
    if policy == "learned":
        params.setdefault("folds", folds)
        params.setdefault("seed", seed)
        if train_rows is not None:
            same, shared = train_overlap(rows, train_rows)
            if shared:
                raise InvalidInput(
                    f"--train shares {shared} of the {len(rows)} items' prompts with the "
                    f"evaluated file ({same} identical items): a model fitted on them would be "
                    "scored on what it has seen; remove them from the training file"
                )
            # The features are named by role (primary judge, other judges), so the training
            # file may have other judges in those roles.
            fit_judges = list(train_judges or judges)
            train_all = sim_items(train_rows, fit_judges, prefix="train:")
            train_items = [it for it in train_all if it.reference]
            train_table = features_table(
                [it.view for it in train_items], fit_judges, embeddings=embeddings, language=False
            )
            train_rates = file_model_rates(train_all)
            train_table = _with_model_strengths(train_table, train_all, fit_judges, train_rates)
            built = learned_fit(train_items, train_table, params=params, rates=train_rates)
            # The target's calibration slice (as the live router has): a stable hash of the
            # prompt group picks ``calibration`` of the items; they go to people first (within
            # the budget) and their labels decide whether the transferred model beats judge
            # uncertainty here (LearnedPolicy.adapt).
            groups = prompt_groups(it.view for it in items)
            draw = (stable_hash(groups.to_numpy(), seed + 15485863) >> np.uint64(11)).astype(
                float
            ) / 2.0**53
            in_slice = draw < calibration
            target = pd.Series(
                [judge_error_target(it.judge_label, it.reference) for it in items],
                index=table.index,
            )
            built.adapt(table[in_slice], target[in_slice])
        else:
            built = learned_fit(items, table, params=params, rates=rates, full_model=False)
    else:
        if train_rows is not None:
            raise InvalidInput("--train applies to the learned policy only")
        if policy == "random":
            params.setdefault("seed", seed)
        built = policy_build(name=policy, params=params)
        built.seed = int(params.get("seed", seed))

    n = len(items)
    oracle = scorer.oracle_order()
    results = []
    for budget in budgets:
        k = round(budget * n)
        plan = built.route(table, k, metadata=metadata)
        human = plan.human_keys
        results.append(
            {
                "budget": budget,
                "agreement": round(scorer.agreement(human), 4),
                "human_items": len(human),
                "random": round(scorer.random_expected(k), 4),
                "all_judge": round(scorer.agreement([]), 4),
                "oracle": round(scorer.agreement(oracle[:k]), 4),
            }
        )
    out = {
        "policy": policy,
        "judges": judges,
        "n_items": len(all_items),
        "n_scored": n,
        "n_left_out": len(all_items) - n,
        "results": results,
    }
    if dedupe:
        out["n_duplicates_removed"] = n_duplicates
    if isinstance(built, LearnedPolicy):
        out["model"] = {
            "trained_on": (
                "train file"
                if train_rows is not None
                else f"{built.folds}-fold cross-fit grouped by prompt"
            ),
            **built.metrics,
        }
        if train_rows is not None:
            out["model"]["train_judges"] = list(train_judges or judges)
            out["model"]["calibration"] = {"share": calibration, **built.adapted}
    return out
