"""Learned routing: predict per item the probability that the judge's label is wrong, send the
highest to people.

The model is scikit-learn's gradient boosting (``HistGradientBoostingClassifier`` with log loss, so
its output is a probability; it takes missing features as they come, e.g. no confidence or no
embedding) over the role-named features of ``router.features``: a model fitted on one dataset
(with its judges) applies to another. Out-of-fold AUC and Brier score are kept as its metrics.

Honesty: the model is *cross-fitted*. Labelled items are split into ``folds`` by a hash of their
key (``repeats`` times, with different splits); each fold's model is fitted on the other folds
only. A labelled item is always scored by the models of its own folds, so its own human label never
informs its own routing; an item without a label is scored by the mean of all the models.
"""

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd

from routing.router.features import OTHER_JUDGE_FEATURES
from routing.router.policies.base import Policy
from routing.router.tag_schema import TAG_DOMAINS
from tandem.errors import InvalidInput

# Generic features only: nothing named after a dataset, a judge or a metadata key.
LEARNED_FEATURES = (
    "prompt_tokens",
    "a_tokens",
    "b_tokens",
    "len_diff",
    "abs_len_diff",
    "len_log_ratio",
    "overlap",
    "identical",
    "empty_candidate",
    "prompt_overlap_a",
    "prompt_overlap_b",
    "has_code",
    "has_markdown",
    "has_list",
    "n_turns",
    "non_ascii",
    # lang_confidence is left out: on PandaLM (all English) it only proxies prompt length and
    # moved the cross-fitted figures by -0.005..+0.005 depending on the fold split (docs).
    "lang_en",
    "embed_cosine",
    *(f"tag_domain_{domain}" for domain in TAG_DOMAINS),
    "tag_complexity",
    "tag_safety",
    "tag_open_ended",
    "tag_format_constraints",
    "primary_missing",
    "primary_a",
    "primary_b",
    "primary_tie",
    "primary_unparsed",
    "primary_order_disagree",
    "primary_confidence",
    "primary_first_shown",
    "n_other_judges",
    *OTHER_JUDGE_FEATURES,
    "primary_picks_longer",
    "others_pick_longer",
)
DECISIVE = ("A", "B")


def judge_error_target(judge_choice: str | None, reference: str | None) -> float:
    """1 if the judge's label disagrees with the reference, 0 if it agrees, NaN if unknowable.

    A judge tie, "both bad" or unparseable verdict counts as wrong; a reference that is a tie
    (or missing) gives no target.
    """
    if reference not in DECISIVE:
        return math.nan
    return 0.0 if judge_choice == reference else 1.0


def fold_of(key: Any, folds: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def _matrix(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return table.reindex(columns=columns).astype(float).to_numpy()


class LearnedPolicy(Policy):
    name = "learned"
    version = "1"
    score_meaning = "predicted chance the judge is wrong"

    def __init__(self, *, folds: int = 5, repeats: int = 3, seed: int = 0, **extra: Any) -> None:
        super().__init__(**extra)
        for name, value, low, high in (("folds", folds, 2, 20), ("repeats", repeats, 1, 10)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidInput(f"learned: {name} must be a whole number from {low} to {high}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInput("learned: seed must be a whole number")
        self.folds, self.repeats, self.seed = folds, repeats, seed
        self.params = {"folds": folds, "repeats": repeats, "seed": seed}
        self.models: list[list[Any]] = []  # [repeat][fold]
        self.fold_by_key: dict[Any, list[int]] = {}  # labelled key -> its fold in each repeat
        self.metrics: dict[str, Any] = {}
        self.features_used: list[str] = []

    @property
    def fitted(self) -> bool:
        return bool(self.models)

    def _estimator(self) -> Any:
        # scikit-learn is imported where it is used: loading it costs every Django process
        # (web workers, every manage.py command) a second and ~100 MB otherwise.
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            l2_regularization=1.0,
            random_state=self.seed,
        )

    def fit(self, table: pd.DataFrame, target: pd.Series) -> "LearnedPolicy":
        """Cross-fit on the items whose ``target`` is known (0/1; NaN = unknown)."""
        from sklearn.metrics import brier_score_loss, roc_auc_score
        from threadpoolctl import threadpool_limits

        target = target.reindex(table.index).astype(float)
        known = target.notna().to_numpy()
        keys = table.index[known]
        y = target.to_numpy()[known].astype(int)
        if len(keys) < 2 * self.folds or len(set(y)) < 2:
            raise InvalidInput(
                f"learned: needs at least {2 * self.folds} labelled items with both outcomes "
                f"to fit; got {len(keys)}"
            )
        # A feature missing everywhere (no embeddings, no tags, no confidence) carries nothing.
        self.features_used = [
            c for c in LEARNED_FEATURES if c in table and table.loc[keys, c].notna().any()
        ]
        X = _matrix(table, self.features_used)[known]
        splits = np.array(
            [[fold_of(k, self.folds, self.seed + r) for k in keys] for r in range(self.repeats)]
        )
        self.models, oof = [], np.zeros(len(keys))
        with threadpool_limits(1):  # small data: threads only contend
            for folds in splits:
                row = []
                for f in range(self.folds):
                    train, test = folds != f, folds == f
                    if len(set(y[train])) < 2:
                        raise InvalidInput("learned: a fold has only one outcome; label more")
                    model = self._estimator().fit(X[train], y[train])
                    row.append(model)
                    if test.any():
                        oof[test] += model.predict_proba(X[test])[:, 1] / self.repeats
                self.models.append(row)
        self.fold_by_key = {k: splits[:, i].tolist() for i, k in enumerate(keys)}
        self.metrics = {
            "n_train": len(keys),
            "judge_error_rate": float(y.mean()),
            "oof_auc": float(roc_auc_score(y, oof)),
            "oof_brier": float(brier_score_loss(y, oof)),
            "folds": self.folds,
            "repeats": self.repeats,
            "features": list(self.features_used),
        }
        return self

    def scores(self, table: pd.DataFrame) -> pd.Series:
        if not self.fitted:
            raise InvalidInput("learned: the policy has no fitted model yet")
        from threadpoolctl import threadpool_limits

        X = _matrix(table, self.features_used)
        with threadpool_limits(1):
            per_model = np.stack(
                [[m.predict_proba(X)[:, 1] for m in row] for row in self.models]
            )  # repeat x fold x item
        out = per_model.mean(axis=(0, 1))
        for i, key in enumerate(table.index):
            folds = self.fold_by_key.get(key)
            if folds is not None:
                # Labelled in training: only the models that never saw this item score it.
                out[i] = np.mean([per_model[r, f, i] for r, f in enumerate(folds)])
        return pd.Series(out, index=table.index)
