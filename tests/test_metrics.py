"""Accuracy, confusion matrix and per-class figures against scikit-learn's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digitnet import metrics

sk = pytest.importorskip("sklearn.metrics")


def random_labels(seed: int, n: int = 500, classes: int = 10, skip: tuple[int, ...] = ()):
    rng = np.random.default_rng(seed)
    allowed = np.array([k for k in range(classes) if k not in skip])
    y_true = rng.choice(allowed, n)
    # Mostly right, sometimes any class: a classifier's kind of mistakes.
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, classes, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_scikit_learn(seed):
    y_true, y_pred = random_labels(seed)
    ours = metrics.confusion_matrix(y_true, y_pred, 10)
    np.testing.assert_array_equal(ours, sk.confusion_matrix(y_true, y_pred, labels=range(10)))
    assert ours.sum() == len(y_true)


@pytest.mark.parametrize(("seed", "skip"), [(0, ()), (1, ()), (2, (3,)), (3, (0, 9))])
def test_per_class_figures_match_scikit_learn(seed, skip):
    y_true, y_pred = random_labels(seed, skip=skip)
    if skip:  # a class that is never predicted either
        y_pred = np.where(np.isin(y_pred, skip), y_true, y_pred)
    rows = metrics.per_class(metrics.confusion_matrix(y_true, y_pred, 10))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=range(10), zero_division=0)
    np.testing.assert_allclose([r["precision"] for r in rows], precision, atol=1e-12)
    np.testing.assert_allclose([r["recall"] for r in rows], recall, atol=1e-12)
    np.testing.assert_allclose([r["f1"] for r in rows], f1, atol=1e-12)
    np.testing.assert_array_equal([r["support"] for r in rows], support)
    for k in skip:
        assert rows[k] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 12).flatmap(lambda k: st.tuples(
    st.just(k),
    st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1,
             max_size=60))))
def test_any_labels_match_scikit_learn(case):
    classes, pairs = case
    y_true, y_pred = (np.array(side) for side in zip(*pairs, strict=True))
    confusion = metrics.confusion_matrix(y_true, y_pred, classes)
    np.testing.assert_array_equal(confusion, sk.confusion_matrix(y_true, y_pred,
                                                                 labels=range(classes)))
    rows = metrics.per_class(confusion)
    f1 = sk.f1_score(y_true, y_pred, labels=range(classes), average=None, zero_division=0)
    np.testing.assert_allclose([r["f1"] for r in rows], f1, atol=1e-12)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))


def test_accuracy():
    assert metrics.accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    assert np.isnan(metrics.accuracy(np.array([]), np.array([])))


def test_a_small_confusion_matrix_by_hand():
    y_true = [0, 0, 1, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 2, 2]
    confusion = metrics.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0],
                                              [0, 2, 1],
                                              [0, 0, 1]])
    rows = metrics.per_class(confusion)
    # class 1: precision 2/3 (2 of 3 predicted 1), recall 2/3, F1 2/3
    assert rows[1]["precision"] == pytest.approx(2 / 3)
    assert rows[1]["recall"] == pytest.approx(2 / 3)
    assert rows[1]["f1"] == pytest.approx(2 / 3)
    # class 2: precision 1/2, recall 1, F1 = 2·(1/2)·1 / (1/2 + 1) = 2/3
    assert rows[2]["f1"] == pytest.approx(2 / 3)


def test_evaluate_gives_plain_json_values():
    y_true, y_pred = random_labels(7)
    result = metrics.evaluate(y_true, y_pred)
    assert set(result) == {"accuracy", "n", "per_class", "confusion_matrix"}
    assert result["n"] == 500 and len(result["per_class"]) == 10
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert json.loads(json.dumps(result)) == result


def test_labels_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="same length"):
        metrics.confusion_matrix([0, 1, 2], [0, 1], 3)
    with pytest.raises(ValueError, match="same length"):
        metrics.confusion_matrix([0, 1, 2], [1], 3)  # would broadcast silently
    with pytest.raises(ValueError, match=r"true labels span 0\.\.10, outside the 10 classes"):
        metrics.confusion_matrix([0, 10], [0, 1], 10)
    with pytest.raises(ValueError, match="predicted labels span -1..1"):
        metrics.confusion_matrix([0, 1], [-1, 1], 10)
    assert metrics.confusion_matrix([], [], 3).sum() == 0
