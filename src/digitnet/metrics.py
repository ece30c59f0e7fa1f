"""Accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "confusion_matrix", "per_class", "evaluate"]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """C[i, j] = how many examples of class i were predicted as j; shape (n, n).

    Raises
    ------
    ValueError
        If the two label arrays differ in length or hold a class outside 0..n_classes-1.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"expected two label arrays of the same length, got shapes "
                         f"{y_true.shape} and {y_pred.shape}")
    for name, y in (("true", y_true), ("predicted", y_pred)):
        if len(y) and not 0 <= y.min() <= y.max() < n_classes:
            raise ValueError(f"{name} labels span {y.min()}..{y.max()}, outside the "
                             f"{n_classes} classes 0..{n_classes - 1}")
    flat = y_true * n_classes + y_pred
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class(confusion: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall, F1 and support for each class, from a confusion matrix.

    A ratio with nothing to divide by (a class never predicted, or absent) is 0.
    """
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return [
        {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for p, r, f, s in zip(precision, recall, f1, actual, strict=True)
    ]


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> dict[str, Any]:
    """Accuracy, per-class figures and the confusion matrix as plain Python values."""
    confusion = confusion_matrix(y_true, y_pred, n_classes)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "n": int(len(y_true)),
        "per_class": per_class(confusion),
        "confusion_matrix": confusion.tolist(),
    }
