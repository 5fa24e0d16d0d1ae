"""Learned routing: predict per item the probability that the judge's label is wrong, send the
highest to people.

Three candidates, simplest first (``CANDIDATES``), over the role-named features of
``router.features`` plus the ``judge_uncertainty`` policy's own score (so a model fitted on one
dataset, with its judges, applies to another):

- ``judge_uncertainty``: no model, the judge-uncertainty score turned into a probability by an
  isotonic (monotone) fit: it ranks exactly as the ``judge_uncertainty`` policy does;
- ``logistic``: L2-regularised logistic regression (C=1) on standardised features, missing values
  imputed with the median plus a missing-indicator per feature;
- ``boosting``: ``HistGradientBoostingClassifier`` with fixed hyperparameters (100 iterations,
  learning rate 0.1, 15 leaves, 20 samples a leaf, L2 1.0, ``early_stopping=False`` so that the
  configuration does not change with the number of rows).

Model selection: grouped inner cross-validation (``INNER_FOLDS`` folds by prompt group, on at most
``SELECTION_MAX_ROWS`` rows) measures the share of judge errors each candidate would send to people
at the budgets ``SELECTION_BUDGETS`` (the quantity the routing buys); the simplest candidate within
``AS_GOOD`` of the best wins. When the data cannot show that a model beats judge uncertainty, the
policy ranks by judge uncertainty and its decision reasons say so; its signals' directions are
checked on the labelled items first (``judge_uncertainty.signal_directions``), and one shown to
point the wrong way (a weaker judge advising a stronger one) is reversed, never ranked by.

Honesty: the model is *cross-fitted*. Labelled items are split into ``folds`` by a hash of their
*group* (the normalised prompt: every copy of an item and every pair on the same prompt share
one), ``repeats`` times with different splits; for each fold, selection and fitting see only the
other folds. A labelled item is always scored by the models of its own folds, so neither its own
label nor a twin's ever informs its own routing; an item without a label is scored by the model
selected and fitted on all labelled items.
"""

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd

from routing.router.features import (
    MODEL_FEATURES,
    OTHER_JUDGE_FEATURES,
    REWARD_MODEL_FEATURES,
)
from routing.router.policies.base import Policy, ranked_order, stable_hash
from routing.router.policies.judge_uncertainty import (
    ALPHA,
    JudgeUncertaintyPolicy,
    judge_uncertainty_scores,
    reversed_in_words,
    signals_checked,
)
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
    # The language (lang_en, lang_confidence) is left out: PandaLM and LLMBar are English
    # throughout, so it carries nothing there, and py3langid is the one per-prompt Python step
    # of the features (docs/routing.md).
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
    # The judge_uncertainty policy's own score, so the model starts from what that policy knows.
    "judge_uncertainty",
    # How the judges rate the candidates' models (features.with_model_strengths).
    *MODEL_FEATURES,
    # A registered reward model's margins (features.with_reward_margins); absent, unused.
    *REWARD_MODEL_FEATURES,
)
DECISIVE = ("A", "B")
# Feature groups, for the ``drop`` param and the ablation in docs/routing.md.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "length": (
        "prompt_tokens",
        "a_tokens",
        "b_tokens",
        "len_diff",
        "abs_len_diff",
        "len_log_ratio",
        "empty_candidate",
    ),
    "overlap": ("overlap", "identical", "prompt_overlap_a", "prompt_overlap_b", "embed_cosine"),
    "format": ("has_code", "has_markdown", "has_list", "n_turns", "non_ascii"),
    "tags": tuple(c for c in LEARNED_FEATURES if c.startswith("tag_")),
    "primary_judge": tuple(c for c in LEARNED_FEATURES if c.startswith("primary_"))[:-1],
    "other_judges": ("n_other_judges", *OTHER_JUDGE_FEATURES),
    "length_bias": ("primary_picks_longer", "others_pick_longer"),
    "judge_uncertainty": ("judge_uncertainty",),
    "models": MODEL_FEATURES,
    "reward_model": REWARD_MODEL_FEATURES,
}


def judge_error_target(judge_choice: str | None, reference: str | None) -> float:
    """1 if the judge's label disagrees with the reference, 0 if it agrees, NaN if unknowable.

    A judge tie, "both bad" or unparseable verdict counts as wrong; a reference that is a tie
    (or missing) gives no target.
    """
    if reference not in DECISIVE:
        return math.nan
    return 0.0 if judge_choice == reference else 1.0


# Candidates, simplest first: the first within AS_GOOD of the best is chosen.
CANDIDATES = ("judge_uncertainty", "logistic", "boosting")
SELECTION_BUDGETS = (0.1, 0.2, 0.3, 0.5)
# In units of the share of all items whose judge error goes to people (mean over the budgets):
# the tolerance for "as good as judge uncertainty".
AS_GOOD = 0.005
INNER_FOLDS = 3
SELECTION_MAX_ROWS = 6000
# Up to this many labelled items the choice is made again inside every outer fold (nested); above
# it once, on all of them, and every fold fits that candidate: a three-way choice made on tens of
# thousands of items carries no single item's label measurably, and nesting costs 15 more fits.
NESTED_MAX_ROWS = 20000
# Repeats of the cross-fit reduce the variance of small data; on large data one split is enough:
# repeats are cut so that repeats x labelled items stays under this (at least one).
REPEAT_ROWS = 10000


def fold_of(key: Any, folds: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def group_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per row from a stable hash of its group with ``seed``: no group spans two folds and
    the split does not depend on row order."""
    return (stable_hash(groups, seed) % np.uint64(folds)).astype(np.int64)


def caught_share(
    y: np.ndarray,
    scores: np.ndarray,
    keys: Any,
    *,
    secondary: np.ndarray | None = None,
    seed: int = 0,
    budgets: tuple[float, ...] = SELECTION_BUDGETS,
) -> float:
    """Mean over ``budgets`` of the share of items whose judge error (y=1) is in the top
    ``round(budget * n)`` of ``scores`` (ties: ``secondary``, then the stable hash)."""
    n = len(y)
    if n == 0:
        return 0.0
    index = pd.Index(keys)
    order = ranked_order(
        pd.Series(scores, index=index),
        [] if secondary is None else [pd.Series(secondary, index=index)],
        seed=seed,
    )
    cumulative = np.concatenate([[0.0], np.cumsum(y[order])])
    return float(np.mean([cumulative[round(b * n)] / n for b in budgets]))


def simplest_as_good(measured: dict[str, float], tolerance: float = AS_GOOD) -> str:
    """The first of ``CANDIDATES`` measured within ``tolerance`` of the best."""
    best = max(measured.values())
    return next(c for c in CANDIDATES if c in measured and measured[c] >= best - tolerance)


class Candidate:
    """A fitted candidate: ``predict`` gives the probability that the judge is wrong."""

    def __init__(self, name: str, ju_index: int, seed: int, use_ju: bool = True) -> None:
        self.name, self.ju_index, self.seed, self.use_ju = name, ju_index, seed, use_ju
        self.estimator: Any = None

    def _columns(self, X: np.ndarray) -> np.ndarray:
        return X if self.use_ju else np.delete(X, self.ju_index, axis=1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Candidate":
        # scikit-learn is imported where it is used: loading it costs every Django process
        # (web workers, every manage.py command) a second and ~100 MB otherwise.
        if self.name == "judge_uncertainty":
            from sklearn.isotonic import IsotonicRegression

            self.estimator = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            self.estimator.fit(X[:, self.ju_index], y)
        elif self.name == "logistic":
            from sklearn.impute import SimpleImputer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            self.estimator = make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True),
                StandardScaler(),
                LogisticRegression(C=1.0, max_iter=2000),
            ).fit(self._columns(X), y)
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier

            self.estimator = HistGradientBoostingClassifier(
                max_iter=100,
                learning_rate=0.1,
                max_leaf_nodes=15,
                min_samples_leaf=20,
                l2_regularization=1.0,
                early_stopping=False,
                random_state=self.seed,
            ).fit(self._columns(X), y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        if self.name == "judge_uncertainty":
            return self.estimator.predict(X[:, self.ju_index])
        return self.estimator.predict_proba(self._columns(X))[:, 1]


def model_select(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    keys: Any,
    *,
    ju_index: int,
    seed: int,
    candidates: tuple[str, ...] = CANDIDATES,
    use_ju: bool = True,
) -> tuple[str, dict[str, float]]:
    """The candidate chosen by grouped inner cross-validation, with what each measured. With too
    little data to cross-validate (fewer than two groups per fold, one outcome in a fold) the
    answer is ``judge_uncertainty``: nothing can show that a model beats it."""
    keys = np.asarray(keys, dtype=object)
    if len(candidates) == 1:
        return candidates[0], {}
    if len(y) > SELECTION_MAX_ROWS:  # a stable sample of whole groups
        share = SELECTION_MAX_ROWS / len(y)
        draw = (stable_hash(groups, seed + 104729) >> np.uint64(11)).astype(float) / 2.0**53
        keep = draw < share
        X, y, groups, keys = X[keep], y[keep], groups[keep], keys[keep]
    inner = group_folds(groups, INNER_FOLDS, seed + 7919)
    usable = len(set(inner.tolist())) == INNER_FOLDS and len(set(y.tolist())) == 2
    if usable:
        usable = all(len(set(y[inner != f].tolist())) == 2 for f in range(INNER_FOLDS))
    if not usable:
        return candidates[0], {}
    ju = X[:, ju_index]
    measured: dict[str, float] = {}
    for name in candidates:
        if name == "judge_uncertainty":
            pred = ju  # its ranking needs no fitting
        else:
            pred = np.zeros(len(y))
            for f in range(INNER_FOLDS):
                test = inner == f
                model = Candidate(name, ju_index, seed, use_ju).fit(X[~test], y[~test])
                pred[test] = model.predict(X[test])
        measured[name] = caught_share(y, pred, keys, secondary=ju, seed=seed)
    return simplest_as_good(measured), measured


def _matrix(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return table.reindex(columns=columns).astype(float).to_numpy()


def with_judge_uncertainty(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the ``judge_uncertainty`` policy's score as a column."""
    if "judge_uncertainty" in table:
        return table
    return table.assign(judge_uncertainty=judge_uncertainty_scores(table).to_numpy())


class LearnedPolicy(Policy):
    name = "learned"
    # 2: grouped cross-fit and model selection; 3: the fallback's signal directions checked.
    version = "3"
    score_meaning = "predicted chance the judge is wrong"
    # The judge-uncertainty ranking the policy falls back to, its signals' directions checked on
    # the labelled items (judge_uncertainty.signal_directions). Class defaults: models stored
    # before the check keep the prior weights.
    weights: dict[str, float] | None = None
    signal_checks: list[dict[str, Any]] | None = None
    # Leak-free fallback scores of labelled items: key -> fold, and each fold's weights, checked
    # on the other folds only.
    weight_folds: pd.Series | None = None
    fold_weights: list[dict[str, float]] | None = None
    # The judges' rates of the candidates' models the model was fitted with (features.
    # model_rates; the router builds the model_pick_* features from them, so that routing sees
    # what fitting saw, and does not re-aggregate the whole project at every routing). Class
    # default: models stored before these features have none.
    model_rates: dict[str, dict[str, float]] | None = None

    def __init__(
        self,
        *,
        folds: int = 5,
        repeats: int = 3,
        seed: int = 0,
        models: list[str] | None = None,
        drop: list[str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(**extra)
        models = list(CANDIDATES) if models is None else models
        drop = [] if drop is None else drop
        if not isinstance(models, list) or not models or set(models) - set(CANDIDATES):
            raise InvalidInput(f"learned: models must be a list from {', '.join(CANDIDATES)}")
        if not isinstance(drop, list) or set(drop) - set(FEATURE_GROUPS):
            raise InvalidInput(f"learned: drop must be a list from {', '.join(FEATURE_GROUPS)}")
        if "judge_uncertainty" in drop and "judge_uncertainty" in models:
            raise InvalidInput("learned: dropping judge_uncertainty needs models without it")
        self.candidates = tuple(c for c in CANDIDATES if c in models)
        self.drop = drop
        for name, value, low, high in (("folds", folds, 2, 20), ("repeats", repeats, 1, 10)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidInput(f"learned: {name} must be a whole number from {low} to {high}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInput("learned: seed must be a whole number")
        self.folds, self.repeats, self.seed = folds, repeats, seed
        self.params = {"folds": folds, "repeats": repeats, "seed": seed}
        if models != list(CANDIDATES):
            self.params["models"] = list(self.candidates)
        if drop:
            self.params["drop"] = drop
        self.models: list[list[Candidate | None]] = []  # [repeat][fold]
        self.full: Candidate | None = None  # selected and fitted on every labelled item
        self.fold_by_key = pd.DataFrame()  # labelled key -> its fold in each repeat
        self.metrics: dict[str, Any] = {}
        self.features_used: list[str] = []
        self.choice = ""
        self.complete = True
        self.adapted: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model stored by version 1 (folds by row id, no selection) is not trusted: it ranks by
        # judge uncertainty until the project's model is fitted again.
        if "choice" not in state:
            state = {
                **state,
                "choice": "judge_uncertainty",
                "complete": True,
                "candidates": CANDIDATES,
                "drop": [],
                "full": None,
                "adapted": {"note": "stored by learned policy version 1; refit to use a model"},
            }
        self.__dict__.update(state)

    @property
    def fitted(self) -> bool:
        return bool(self.choice)

    def meaning(self) -> str:
        if self.falls_back:
            words = "judge uncertainty (the labelled data did not show that a model beats it)"
            turned = reversed_in_words(self.signal_checks or [])
            return f"{words}; {turned} on the labelled items" if turned else words
        return f"predicted chance the judge is wrong ({self.choice} model)"

    def _check_signals(self, table: pd.DataFrame, y: np.ndarray) -> None:
        """Check the judge-uncertainty signals' directions on labelled rows; the fallback ranks
        with the checked weights."""
        self.signal_checks, self.weights = signals_checked(table, y)

    def _design(self, table: pd.DataFrame) -> np.ndarray:
        return _matrix(with_judge_uncertainty(table), self.features_used)

    def fit(
        self,
        table: pd.DataFrame,
        target: pd.Series,
        groups: pd.Series | None = None,
        *,
        full_model: bool = True,
    ) -> "LearnedPolicy":
        """Cross-fit on the items whose ``target`` is known (0/1; NaN = unknown). ``groups`` (per
        key, e.g. ``features.prompt_groups``) keeps each group in one fold; without it each item
        is its own group. ``full_model=False`` skips the model fitted on every labelled item, which
        only scores items without a label (the simulation's items all have one)."""
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
        group = (
            groups.reindex(keys).to_numpy(dtype=object)
            if groups is not None
            else np.asarray(keys, dtype=object)
        )
        if pd.isna(group).any():
            raise InvalidInput("learned: every labelled item needs its group")
        full_table = with_judge_uncertainty(table)
        # A feature missing everywhere (no embeddings, no tags, no confidence) carries nothing.
        dropped = {c for group in self.drop for c in FEATURE_GROUPS[group]}
        self.features_used = [
            c
            for c in LEARNED_FEATURES
            if c in full_table and full_table.loc[keys, c].notna().any() and c not in dropped
        ]
        # The judge-uncertainty score stays in the matrix (the fallback ranks by it); dropped, it
        # is only out of the models' columns (see Candidate).
        if "judge_uncertainty" not in self.features_used:
            self.features_used.append("judge_uncertainty")
        ju_index = self.features_used.index("judge_uncertainty")
        use_ju = "judge_uncertainty" not in self.drop
        X = _matrix(full_table, self.features_used)[known]
        repeats = max(1, min(self.repeats, REPEAT_ROWS // len(keys)))
        splits = np.stack([group_folds(group, self.folds, self.seed + r) for r in range(repeats)])
        self.models, oof = [], np.zeros(len(keys))
        choices: list[str] = []
        ju = X[:, ju_index]
        with threadpool_limits(1):  # small data: threads only contend
            # First the choice on every labelled item: when no model beats judge uncertainty,
            # the policy ranks by it (no label involved) and no fold model is needed.
            self.choice, measured = model_select(
                X,
                y,
                group,
                keys,
                ju_index=ju_index,
                seed=self.seed,
                candidates=self.candidates,
                use_ju=use_ju,
            )
            if full_model or self.falls_back:
                self.full = Candidate(self.choice, ju_index, self.seed, use_ju).fit(X, y)
            self.complete = full_model
            labelled_table = full_table.loc[keys]
            self._check_signals(labelled_table, y)
            self.weight_folds, self.fold_weights = None, None
            if self.falls_back:
                # Judge uncertainty with its signals checked; a labelled item is scored with the
                # weights checked on the other folds (its own label never turns a signal).
                folds0 = splits[0]
                self.weight_folds = pd.Series(folds0, index=keys)
                self.fold_weights = []
                oof = np.zeros(len(keys))
                from sklearn.isotonic import IsotonicRegression

                for f in range(self.folds):
                    test = folds0 == f
                    train_rows = labelled_table[~test]
                    _, weights = signals_checked(train_rows, y[~test])
                    self.fold_weights.append(weights)
                    if test.any():  # its probability (for the metrics), out of fold too
                        calibrated = IsotonicRegression(
                            out_of_bounds="clip", y_min=0.0, y_max=1.0
                        ).fit(judge_uncertainty_scores(train_rows, weights=weights), y[~test])
                        oof[test] = calibrated.predict(
                            judge_uncertainty_scores(labelled_table[test], weights=weights)
                        )
                splits = splits[:0]
            for folds in splits:
                row: list[Candidate | None] = []
                for f in range(self.folds):
                    test = folds == f
                    if not test.any():
                        row.append(None)
                        continue
                    train = ~test
                    if len(set(y[train])) < 2:
                        raise InvalidInput("learned: a fold has only one outcome; label more")
                    # Selection and fitting see the other folds only.
                    choice = self.choice
                    if len(keys) <= NESTED_MAX_ROWS:
                        choice, _ = model_select(
                            X[train],
                            y[train],
                            group[train],
                            keys[train],
                            ju_index=ju_index,
                            seed=self.seed,
                            candidates=self.candidates,
                            use_ju=use_ju,
                        )
                    model = Candidate(choice, ju_index, self.seed, use_ju).fit(X[train], y[train])
                    row.append(model)
                    choices.append(choice)
                    oof[test] += model.predict(X[test]) / repeats
                self.models.append(row)
        self.fold_by_key = pd.DataFrame(splits.T, index=keys)
        self.metrics = {
            "n_train": len(keys),
            "n_groups": len(set(group.tolist())),
            "judge_error_rate": float(y.mean()),
            "oof_auc": float(roc_auc_score(y, oof)),
            "oof_brier": float(brier_score_loss(y, oof)),
            "oof_caught": caught_share(y, oof, keys, secondary=ju, seed=self.seed),
            "judge_uncertainty_caught": caught_share(y, ju, keys, secondary=ju, seed=self.seed),
            "folds": self.folds,
            "repeats": len(splits),
            "model": self.choice,
            "selection": {k: round(v, 4) for k, v in measured.items()},
            "fold_models": {c: choices.count(c) for c in CANDIDATES if c in choices},
            "features": list(self.features_used),
            "signal_check": self.signal_checks,
        }
        return self

    def adapt(self, table: pd.DataFrame, target: pd.Series) -> "LearnedPolicy":
        """Check a model fitted on another data set on this one's labelled calibration items
        (``target`` 0/1, NaN = unknown): unless it catches more judge errors there than judge
        uncertainty by more than ``AS_GOOD`` and its scores are not shown to point the wrong way
        (one-sided Mann-Whitney, ``ALPHA``), the policy ranks by judge uncertainty (and says so),
        with the signals the slice shows to point the wrong way reversed (``signal_directions``).
        The calibration items' labels decide these choices and nothing else."""
        if not self.fitted:
            raise InvalidInput("learned: the policy has no fitted model yet")
        target = target.reindex(table.index).astype(float)
        known = target.notna().to_numpy()
        keys = table.index[known]
        y = target.to_numpy()[known].astype(int)
        X = self._design(table.loc[keys])
        # The judge-uncertainty signals checked on this data set: one that points the wrong way
        # here (a weaker judge advising a stronger one) is reversed in the fallback ranking.
        self._check_signals(table.loc[keys], y)
        self.weight_folds, self.fold_weights = None, None
        ju = judge_uncertainty_scores(table.loc[keys], weights=self.weights).to_numpy()
        model = self.full.predict(X) if not self.falls_back and len(keys) else ju
        measured = {
            "judge_uncertainty": caught_share(y, ju, keys, secondary=ju, seed=self.seed),
            "transferred": caught_share(y, model, keys, secondary=ju, seed=self.seed),
        }
        # The model's own direction: are its scores *lower* on the judge's errors (one-sided
        # Mann-Whitney)? A model shown to point the wrong way is never kept.
        p_wrong = None
        if not self.falls_back and 0 < y.sum() < len(y):
            from scipy.stats import mannwhitneyu

            p_wrong = float(mannwhitneyu(model[y == 1], model[y == 0], alternative="less")[1])
        kept = (
            not self.falls_back
            and measured["transferred"] > measured["judge_uncertainty"] + AS_GOOD
            and (p_wrong is None or p_wrong >= ALPHA)
        )
        self.adapted = {
            "n_calibration": len(keys),
            "model_before": self.choice,
            **{f"{k}_caught": round(v, 4) for k, v in measured.items()},
            "model_p_wrong_way": None if p_wrong is None else round(p_wrong, 4),
            "signals": self.signal_checks,
            "kept": kept,
        }
        if not kept:
            self.choice = "judge_uncertainty"
        return self

    @property
    def falls_back(self) -> bool:
        """True when the data could not show that a model beats judge uncertainty."""
        return self.choice == "judge_uncertainty"

    def secondary(self, table: pd.DataFrame) -> list[pd.Series]:
        if self.falls_back:
            return JudgeUncertaintyPolicy(low_confidence=0.6).secondary(table)
        return super().secondary(table)

    def scores(self, table: pd.DataFrame) -> pd.Series:
        if not self.fitted:
            raise InvalidInput("learned: the policy has no fitted model yet")
        if self.falls_back:
            return self._checked_uncertainty(table)
        from threadpoolctl import threadpool_limits

        X = self._design(table)
        out = np.zeros(len(table))
        folds = self.fold_by_key.reindex(table.index)
        labelled = folds.notna().all(axis=1).to_numpy() if len(folds.columns) else None
        with threadpool_limits(1):
            if not self.complete and (labelled is None or not labelled.all()):
                raise InvalidInput("learned: fitted without a full model; every item needs a fold")
            if labelled is None or not labelled.any():
                return pd.Series(self.full.predict(X), index=table.index)
            # Labelled in training: only the models that never saw this item (or its group).
            for r, row in enumerate(self.models):
                fold_r = folds[r].to_numpy()
                for f, model in enumerate(row):
                    rows = labelled & (fold_r == f)
                    if rows.any() and model is not None:
                        out[rows] += model.predict(X[rows]) / len(self.models)
            if (~labelled).any():
                out[~labelled] = self.full.predict(X[~labelled])
        return pd.Series(out, index=table.index)

    def _checked_uncertainty(self, table: pd.DataFrame) -> pd.Series:
        """The judge_uncertainty policy's score with the checked weights (its ranking exactly
        when no signal was reversed); labelled items of the cross-fit take their fold's weights,
        checked without their own labels."""
        scores = judge_uncertainty_scores(table, weights=self.weights)
        if self.weight_folds is None or not self.fold_weights:
            return scores
        folds = self.weight_folds.reindex(table.index)
        for f, weights in enumerate(self.fold_weights):
            rows = (folds == f).to_numpy()
            if rows.any():
                scores[rows] = judge_uncertainty_scores(table[rows], weights=weights).to_numpy()
        return scores
