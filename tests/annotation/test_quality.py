"""Quality figures against values worked out by hand, and alpha/kappa against the libraries'
own documented examples.

The pairwise fixture (``worked``), used by most tests here:

    item  candidates (chars)  gold   ann1 (order)  ann2 (order)  ann3 (order)      judge j1: AB / BA
    i1    A=4  B=2 -> A      A      A (AB)        A (BA)        B (AB) [was A]    A    / A
    i2    A=1  B=3 -> B      B      B (AB)        tie (AB)      B (BA)            A    / B
    i3    A=2  B=2 -> none   -      A (BA)        A (AB)        both_bad (AB)     None / A
    i4    A=3  B=1 -> A      -      A (AB)        B (BA)        tie (AB)          tie  / tie

ann3's first label on i1 (A) was superseded by B: only B counts. ann1 skipped one more item (i5).
The human majority: i1 A, i2 B, i3 A, i4 none (A, B, tie once each).
The fixture itself is ``worked`` in tests/annotation/conftest.py.
"""

import math
import random

import numpy as np
import pandas as pd
import pytest
from django.db import connection, transaction

from annotation import quality
from annotation.models import Annotation
from annotation.quality import QualitySettings
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

from .conftest import worked_project

CONFIG = QualitySettings(min_items=3, min_pair_items=2)


def share(figure):
    return (figure.successes, figure.n)


def test_the_labels_frame_has_one_row_per_current_label(worked, django_assert_num_queries):
    with django_assert_num_queries(2):  # one row per item, one per label
        labels = quality.quality_labels(project=worked)
    assert len(labels) == 12 + 8  # the superseded label of ann3 on i1 is not there
    i1 = labels[labels["item"] == worked.items.get(external_id="i1").pk]
    assert sorted(i1[i1["source"] == "human"]["label"]) == ["A", "A", "B"]
    assert set(labels["longer"].dropna()) == {"A", "B"}
    assert labels["longer"].isna().sum() == 3 + 2  # i3: equal lengths (3 human + 2 judge labels)
    assert labels["gold"].notna().sum() == 10  # i1 and i2


def test_human_majority(worked):
    majority = quality.human_majority(labels=quality.quality_labels(project=worked))
    ids = {i.pk: i.external_id for i in worked.items.all()}
    assert {ids[k]: v for k, v in majority.items()} == {"i1": "A", "i2": "B", "i3": "A"}


def test_krippendorff_alpha_by_hand(worked):
    """Coincidences (each unit has 3 values, pairs weigh 1/2): o_AA = 1 (i1) + 1 (i3) = 2,
    o_BB = 1 (i2); 12 values, so 12 - 3 = 9 off the diagonal. n_A=5, n_B=4, n_tie=2, n_bb=1:
    sum over c != k of n_c n_k = 144 - (25 + 16 + 4 + 1) = 98. alpha = 1 - 11 * 9 / 98 = -1/98."""
    alpha = quality.krippendorff_alpha(project=worked, config=CONFIG)
    assert alpha.value == pytest.approx(-1 / 98, abs=1e-6)
    assert (alpha.n, alpha.too_few) == (4, False)
    assert quality.krippendorff_alpha(project=worked, config=QualitySettings(min_items=5)).too_few


def test_fleiss_kappa_by_hand(worked):
    """Rows (A, B, tie, bb): i1 2100, i2 0210, i3 2001, i4 1110; 3 raters each. P_i = (sum
    n_ij^2 - 3) / 6 = 2/6, 2/6, 2/6, 0: mean 1/4. p_j = 5/12, 4/12, 2/12, 1/12: P_e = 46/144.
    kappa = (36/144 - 46/144) / (98/144) = -10/98."""
    kappa = quality.fleiss_kappa(project=worked, config=CONFIG)
    assert kappa.value == pytest.approx(-10 / 98, abs=1e-6)
    assert (kappa.n, kappa.raters) == (4, 3)


def test_cohen_kappa_pairs_by_hand(worked):
    """ann1 ABAA vs ann2 A,tie,A,B: p_o = 2/4, p_e = (3*2 + 1*1) / 16 = 7/16: kappa = 1/9.
    ann1 vs ann3 B,B,bb,tie: p_o = 1/4, p_e = 1*2/16: kappa = (1/4 - 1/8) / (7/8) = 1/7.
    ann2 vs ann3: p_o = 0, p_e = (tie 1*1 + B 1*2) / 16 = 3/16: kappa = -3/13."""
    kappas = quality.cohen_kappa_pairs(project=worked, config=CONFIG)
    by_pair = {k.annotators: k.value for k in kappas.pairs}
    assert by_pair == pytest.approx(
        {("ann1", "ann2"): 1 / 9, ("ann1", "ann3"): 1 / 7, ("ann2", "ann3"): -3 / 13}, abs=1e-6
    )
    assert kappas.pairs_total == 3 and all(k.n == 4 for k in kappas.pairs)
    assert kappas.mean.value == pytest.approx((1 / 9 + 1 / 7 - 3 / 13) / 3, abs=1e-6)
    few = quality.cohen_kappa_pairs(project=worked, config=QualitySettings(min_pair_items=5))
    assert few.pairs == [] and few.mean.value is None


def test_gold_accuracy_by_hand(worked):
    """Gold items i1 (A) and i2 (B): ann1 A, B: 2/2; ann2 A, tie: 1/2; ann3 B, B: 1/2."""
    gold = quality.gold_accuracy(project=worked, config=CONFIG)
    assert {k: share(v) for k, v in gold.items()} == {
        "ann1": (2, 2),
        "ann2": (1, 2),
        "ann3": (1, 2),
    }
    assert gold["ann1"].too_few  # 2 gold labels < 3


def test_peer_agreement_leaves_the_annotator_out(worked):
    """The others' majority exists only where the two others agree. ann1: never (i1 A/B, i2
    tie/B, i3 A/bb, i4 B/tie). ann2: i2 (others B, B; ann2 tie): 0/1. ann3: i1 (others A, A;
    ann3 B) and i3 (A, A; ann3 both_bad): 0/2."""
    peers = quality.peer_agreement(project=worked, config=CONFIG)
    assert {k: share(v) for k, v in peers.items()} == {"ann2": (0, 1), "ann3": (0, 2)}


def test_activity_counts_labels_time_and_skips(worked, django_assert_num_queries):
    """ann1 spent 1, 2, 3, 4 s (median 2.5 s) and skipped i5."""
    labels = quality.quality_labels(project=worked)
    with django_assert_num_queries(1):  # the skips
        activity = quality.annotator_activity(project=worked, labels=labels)
    assert activity["ann1"] == quality.Activity(labels=4, median_seconds=2.5, skips=1)
    assert activity["ann3"].labels == 4  # the superseded label is not counted


def test_position_bias_by_hand(worked):
    """First shown wins, over decided labels: ann1 i1 A(AB) win, i2 B(AB) lose, i3 A(BA) lose,
    i4 A(AB) win: 2/4. ann2: i1 lose, i3 win, i4 B(BA) win: 2/3, one tie. ann3: i1 B(AB) lose,
    i2 B(BA) win: 1/2, a tie and a both-bad. j1: i1 AB win, BA lose; i2 AB win, BA win; i3 BA
    lose: 3/5, two ties, one unparsed."""
    bias = quality.position_bias(project=worked, config=CONFIG)
    got = {
        k: (share(v.first_wins), v.ties, v.both_bad, v.unparsed, v.chance) for k, v in bias.items()
    }
    assert got == {
        ("human", "ann1"): ((2, 4), 0, 0, 0, 0.5),
        ("human", "ann2"): ((2, 3), 1, 0, 0, 0.5),
        ("human", "ann3"): ((1, 2), 1, 1, 0, 0.5),
        ("judge", "j1"): ((3, 5), 2, 0, 1, 0.5),
    }
    # Wilson 95% interval of 2/4, as statsmodels documents it: 0.15 .. 0.85.
    ann1 = bias[("human", "ann1")].first_wins
    assert ann1.low == pytest.approx(0.150036, abs=1e-5)
    assert ann1.high == pytest.approx(0.849964, abs=1e-5)


def test_length_bias_by_hand(worked):
    """Longer candidate: i1 A, i2 B, i4 A (i3 has none). ann1 A, B, A: 3/3. ann2 A, (tie), B:
    1/2. ann3 B, B, (tie): 1/2. j1: i1 A, A; i2 A, B: 3/4. The human majority: i1 A, i2 B (i3
    has no longer candidate, i4 no majority): 2/2."""
    bias = quality.length_bias(project=worked, config=CONFIG)
    assert share(bias.reference) == (2, 2)
    assert {k: share(v) for k, v in bias.by_labeller.items()} == {
        ("human", "ann1"): (3, 3),
        ("human", "ann2"): (1, 2),
        ("human", "ann3"): (1, 2),
        ("judge", "j1"): (3, 4),
    }


def test_judge_figures_by_hand(worked):
    """Agreement with the human majority (i1 A, i2 B, i3 A), parsed verdicts: i1 A, A; i2 A, B;
    i3 A: 4/5. Consistent across orders, items with both orders parsed: i1 yes, i2 no, i4 (tie,
    tie) yes: 2/3. Unparsed: 1 of 8."""
    config = CONFIG
    assert share(quality.judge_human_agreement(project=worked, config=config)["j1"]) == (4, 5)
    assert share(quality.judge_order_consistency(project=worked, config=config)["j1"]) == (2, 3)
    assert share(quality.judge_unparsed(project=worked, config=config)["j1"]) == (1, 8)


def test_report_flags_and_one_read(worked, django_assert_num_queries):
    config = QualitySettings(
        min_items=2, min_pair_items=2, flag_gold_accuracy=0.75, flag_peer_agreement=0.9
    )
    with django_assert_num_queries(3):  # the items, the labels, the skips
        report = quality.quality_report(project=worked, config=config)
    flags = {row.annotator: row.flags for row in report.annotators}
    # ann2 and ann3: 1/2 gold (< 0.75); peers: ann3 0/2 (ann2's 0/1 is too few to flag).
    assert flags == {
        "ann1": [],
        "ann2": ["gold_accuracy"],
        "ann3": ["gold_accuracy", "peer_agreement"],
    }
    assert [(j.judge, j.labels, j.flags) for j in report.judges] == [("j1", 8, ["human_agreement"])]
    assert (report.human_labels, report.judge_labels, report.items_labelled) == (12, 8, 4)
    assert report.as_dict()["agreement"]["fleiss_kappa"]["raters"] == 3


def test_position_bias_flag_needs_distance_and_a_clear_interval():
    config = QualitySettings(min_items=10, flag_position_bias=0.15)

    def bias(successes, n):
        first = quality._share(successes, n, config)
        return quality.PositionBias(first, 0.5, 0, 0, 0, 0)

    assert quality.position_biased(bias(90, 100), config)
    assert not quality.position_biased(bias(7, 10), config)  # 0.7, but the interval holds 0.5
    assert not quality.position_biased(bias(55, 100), config)  # clear, but within tolerance


def test_empty_project_reports_nothing_without_failing(project):
    report = quality.quality_report(project=project, config=CONFIG)
    assert report.annotators == [] and report.judges == []
    assert report.agreement.krippendorff_alpha == quality.Figure(None, 0, True)
    assert report.agreement.fleiss_kappa.value is None
    assert report.length_bias_reference.n == 0


# --- the libraries' documented examples, through a project -----------------------------------


def listwise_project(units, letters="ABCDE"):
    """A listwise project where ``units[coder][unit]`` is the letter that coder ranked top."""
    project = ProjectFactory(task_type="listwise")
    coders = [UserFactory(username=f"coder{c}") for c in range(len(units))]
    n_units = len(units[0])
    items = [
        ItemFactory(project=project, candidates=[f"response {x}" for x in letters])
        for _ in range(n_units)
    ]
    rows = []
    for coder, values in zip(coders, units, strict=True):
        for item, value in zip(items, values, strict=True):
            if value is None:
                continue
            ranking = [value, *[x for x in letters if x != value]]
            rows.append(
                Annotation(
                    project=project,
                    item=item,
                    source="human",
                    annotator=coder,
                    payload={"ranking": ranking},
                    order=letters,
                )
            )
    Annotation.objects.bulk_create(rows)
    return project


def test_krippendorff_alpha_on_krippendorffs_own_example(db):
    """Krippendorff (2011), "Computing Krippendorff's alpha-reliability", C: 4 observers, 12
    units, values 1-5, nominal alpha = 0.743 (the ``krippendorff`` package's README example)."""
    nan = None
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    units = [[None if v is None else "ABCDE"[v - 1] for v in coder] for coder in data]
    project = listwise_project(units)
    alpha = quality.krippendorff_alpha(project=project, config=CONFIG)
    assert alpha.value == pytest.approx(0.743, abs=5e-4)
    assert alpha.n == 11  # the last unit has one value only


def test_fleiss_kappa_on_fleiss_example(db):
    """Fleiss' kappa's textbook example (14 raters, 10 subjects, 5 categories; statsmodels'
    test data): kappa = 0.210."""
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    # Rater r of a subject gives the r-th value of the subject's counts spelt out.
    spelt = [[c for c, n in zip("ABCDE", row, strict=True) for _ in range(n)] for row in table]
    units = [[subject[r] for subject in spelt] for r in range(14)]
    kappa = quality.fleiss_kappa(project=listwise_project(units), config=CONFIG)
    assert kappa.value == pytest.approx(0.210, abs=5e-4)
    assert (kappa.n, kappa.raters) == (10, 14)


def test_cohen_kappa_on_scikit_learns_example(db):
    """scikit-learn's cohen_kappa_score docstring: negative/positive/negative/neutral/positive
    against negative/positive/negative/neutral/negative: 0.6875. As pairwise choices A/B/tie."""
    project = ProjectFactory()
    first, second = UserFactory(username="y1"), UserFactory(username="y2")
    as_choice = {"negative": "A", "positive": "B", "neutral": "tie"}
    y1 = ["negative", "positive", "negative", "neutral", "positive"]
    y2 = ["negative", "positive", "negative", "neutral", "negative"]
    for a, b in zip(y1, y2, strict=True):
        item = ItemFactory(project=project)
        AnnotationFactory(item=item, annotator=first, payload={"choice": as_choice[a]})
        AnnotationFactory(item=item, annotator=second, payload={"choice": as_choice[b]})
    kappas = quality.cohen_kappa_pairs(project=project, config=CONFIG)
    assert [(k.annotators, k.value) for k in kappas.pairs] == [(("y1", "y2"), 0.6875)]


def test_cohen_kappa_of_every_pair_is_statsmodels_own(db):
    """All pairs' kappas are computed at once in numpy; each equals statsmodels' cohens_kappa
    on that pair's contingency table (random answers, four people, values of every kind)."""
    from statsmodels.stats import inter_rater

    rng = random.Random(3)
    project = ProjectFactory()
    people = [UserFactory(username=f"k{i}") for i in range(4)]
    values = ["A", "B", "tie", "both_bad"]
    answers: dict[str, dict[int, str]] = {p.username: {} for p in people}
    for i in range(40):
        item = ItemFactory(project=project)
        for person in rng.sample(people, 3):
            choice = rng.choice(values[:2] if i % 3 else values)
            AnnotationFactory(item=item, annotator=person, payload={"choice": choice})
            answers[person.username][i] = choice
    config = QualitySettings(min_pair_items=5, min_items=2)
    kappas = quality.cohen_kappa_pairs(project=project, config=config)
    assert kappas.pairs_total == 6
    for pair in kappas.pairs:
        first, second = (answers[name] for name in pair.annotators)
        shared = sorted(set(first) & set(second))
        table = np.zeros((4, 4))
        for i in shared:
            table[values.index(first[i]), values.index(second[i])] += 1
        expected = inter_rater.cohens_kappa(table, return_results=False)
        assert pair.n == len(shared)
        assert pair.value == pytest.approx(round(float(expected), 6), abs=1e-12)


def test_thumbs_have_agreement_but_no_position_or_length_bias(db):
    project = ProjectFactory(task_type="thumbs")
    people = [UserFactory(username=f"t{i}") for i in range(3)]
    for votes in (["up", "up", "down"], ["down", "down", "down"], ["up", "up", "up"]):
        item = ItemFactory(project=project, gold="up")
        for person, vote in zip(people, votes, strict=True):
            AnnotationFactory(item=item, annotator=person, payload={"thumb": vote})
    report = quality.quality_report(project=project, config=CONFIG)
    assert report.agreement.krippendorff_alpha.n == 3
    assert not math.isnan(report.agreement.krippendorff_alpha.value)
    t2 = next(r for r in report.annotators if r.annotator == "t2")
    assert share(t2.gold_accuracy) == (1, 3)  # gold "up": down, down, up
    assert t2.position_bias is None and t2.length_bias is None
    assert report.length_bias_reference is None


def test_listwise_position_and_length_bias_by_hand(db):
    """Three candidates, B the longest (A=5, B=10, C=1 chars), one annotator:
    [B, A, C] shown BCA: top B = first shown (win), = longest (win);
    [A, [B, C]] shown CAB: top A, first shown C (lose), not the longest (lose);
    [[A, B], C] shown ABC: a tied top, counted as a tie, not decided.
    First shown wins 1/2 (chance 1/3), one tie; the longest wins 1/2."""
    project = ProjectFactory(task_type="listwise")
    person = UserFactory(username="lister")
    rankings = [(["B", "A", "C"], "BCA"), (["A", ["B", "C"]], "CAB"), ([["A", "B"], "C"], "ABC")]
    for ranking, order in rankings:
        item = ItemFactory(project=project, candidates=["a" * 5, "b" * 10, "c"])
        AnnotationFactory(item=item, annotator=person, payload={"ranking": ranking}, order=order)
    bias = quality.position_bias(project=project, config=CONFIG)[("human", "lister")]
    assert (share(bias.first_wins), bias.ties, bias.chance) == ((1, 2), 1, pytest.approx(1 / 3))
    lengths = quality.length_bias(project=project, config=CONFIG).by_labeller
    assert share(lengths[("human", "lister")]) == (1, 2)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the two-connection read")
def test_the_two_connection_read_gives_the_one_connection_frame(transactional_db):
    """Outside a transaction PostgreSQL reads items and labels at once on two connections;
    inside one (as every other test here runs) on one. Both give the same frame."""
    project = worked_project()
    assert not connection.in_atomic_block
    both = quality.quality_labels(project=project)
    with transaction.atomic():
        one = quality.quality_labels(project=project)
    pd.testing.assert_frame_equal(both, one)
    assert both["gold"].notna().sum() == 10 and both["longer"].notna().any()
