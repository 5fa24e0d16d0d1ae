"""How often each source's label is wrong (flipped), estimated on items labelled by both.

A trainer can set a robust loss from it (DPO's label smoothing, a noise-aware reward loss).
Only binary answers count: pairwise A/B (ties and "both bad" aside), thumbs up/down. The
estimate assumes each source errs independently of the others and symmetrically:

- **annotator**: ``p`` from the agreement ``a`` of pairs of human labels on the same item,
  ``a = (1 - p)^2 + p^2``, so ``p = (1 - sqrt(2a - 1)) / 2``;
- **human majority**: per item with a strict majority of its ``n`` decisive human labels, the
  chance that the majority is the wrong side given ``p``; averaged over items;
- **each judge** (its verdict when its presentation orders agree): its disagreement ``d`` with
  the human majority is ``e_h + e_j - 2 e_h e_j``, so ``e_j = (d - e_h) / (1 - 2 e_h)``.

Items counted: those with both a human majority and the judge's verdict. Without two human
labels on some item, ``p`` (and so the corrected rates) cannot be estimated: the judges'
disagreement ``d`` is then an upper bound of their flip rate plus the humans'.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from annotation.models import Annotation, Item, Project

from .preferences import Label, labels_load

# The two answers that can flip into each other, per task type.
DECISIVE = {"pairwise": ("A", "B"), "thumbs": ("up", "down")}
CHUNK = 20_000


def _majority_wrong(n: int, p: float) -> float:
    """P(the strict majority of n votes is wrong | there is one), each vote wrong w.p. p."""
    wrong = right = 0.0
    for k in range(n // 2 + 1, n + 1):
        ways = math.comb(n, k)
        wrong += ways * p**k * (1 - p) ** (n - k)
        right += ways * (1 - p) ** k * p ** (n - k)
    return wrong / (wrong + right) if wrong + right else 0.0


def _judge_verdict(labels: list[Label]) -> str | None:
    answers = {label.verdict for label in labels}
    return answers.pop() if len(answers) == 1 else None


def flip_rates_estimate(*, project: Project, items: QuerySet[Item]) -> dict[str, Any]:
    """Flip-rate estimates over ``items`` (an export's filtered items)."""
    decisive = DECISIVE.get(project.task_type)
    if decisive is None:
        return {"note": "estimated for pairwise and thumbs projects (binary answers) only"}
    current = Annotation.objects.filter(item=OuterRef("pk"), superseded_by__isnull=True)
    both = (
        items.filter(Exists(current.filter(source="human")), Exists(current.filter(source="judge")))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    ids = list(both.iterator(chunk_size=CHUNK))
    pair_agree = pair_total = 0
    majorities: list[tuple[int, str]] = []  # (n decisive human labels, majority)
    judged: dict[str, list[tuple[int, str]]] = defaultdict(list)  # judge -> (row, verdict)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for labels in labels_load(project=project, item_ids=chunk).values():
            votes = [lb.verdict for lb in labels if lb.source == "human" and lb.verdict in decisive]
            counts = Counter(votes)
            n = len(votes)
            pair_total += n * (n - 1) // 2
            pair_agree += sum(c * (c - 1) // 2 for c in counts.values())
            top = counts.most_common(1)
            if not top or top[0][1] * 2 <= n:
                continue
            majorities.append((n, top[0][0]))
            by_judge: dict[str, list[Label]] = defaultdict(list)
            for label in labels:
                if label.source == "judge":
                    by_judge[label.judge].append(label)
            for name, own in by_judge.items():
                verdict = _judge_verdict(own)
                if verdict in decisive:
                    judged[name].append((len(majorities) - 1, verdict))
    return _estimates(pair_agree, pair_total, majorities, judged)


def _estimates(
    pair_agree: int,
    pair_total: int,
    majorities: list[tuple[int, str]],
    judged: dict[str, list[tuple[int, str]]],
) -> dict[str, Any]:
    p = None
    if pair_total:
        agreement = pair_agree / pair_total
        p = (1 - math.sqrt(max(2 * agreement - 1, 0.0))) / 2
    human: dict[str, Any] = {
        "items": len(majorities),
        "annotator_pairs": pair_total,
        "annotator_agreement": round(pair_agree / pair_total, 4) if pair_total else None,
        "annotator_flip_rate": None if p is None else round(p, 4),
        "flip_rate": None,
    }
    if p is not None and majorities:
        wrong = sum(_majority_wrong(n, p) for n, _ in majorities)
        human["flip_rate"] = round(wrong / len(majorities), 4)
    e_h = human["flip_rate"]
    judges: dict[str, Any] = {}
    for name in sorted(judged):
        pairs = judged[name]
        d = sum(1 for row, verdict in pairs if majorities[row][1] != verdict) / len(pairs)
        rate = None
        if e_h is not None and e_h < 0.5:
            rate = round(min(max((d - e_h) / (1 - 2 * e_h), 0.0), 0.5), 4)
        judges[name] = {
            "items": len(pairs),
            "disagreement_with_human_majority": round(d, 4),
            "flip_rate": rate,
        }
    return {
        "method": "pairwise agreement, independent symmetric errors (see exports/flip_rates.py)",
        "human_majority": human,
        "judges": judges,
    }
