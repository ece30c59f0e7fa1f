"""Knowledge distillation: a 784-10-10 student taught by a wider teacher digitnet trains itself.

The teacher is the same code with 256 hidden units. The student keeps the seed's architecture
and learns from targets that blend the true label with the teacher's probabilities softened by a
temperature T: ``Y = (1 - alpha) * one_hot + alpha * softmax(Z_teacher / T)``. Any such Y sums to
1, so ``dZ2 = A2 - Y`` in network.py still holds and nothing else changes: the trainer takes
them as its ``targets``.

    python benchmarks/distill.py [--data-dir DIR] [--temperature 2] [--alpha 0.5]
                                 [--teacher-epochs 8] [--epochs 40]

prints one JSON object: the teacher's and the student's validation and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from digitnet import datasets, network, training
from digitnet.model import Model

_BLOCK = 4096  # images whose logits are computed at a time


def soft_targets(teacher: Model, images: np.ndarray, labels: np.ndarray, temperature: float,
                 alpha: float) -> np.ndarray:
    """``(1 - alpha) * one_hot(labels) + alpha * softmax(Z_teacher / temperature)``, shape
    (n, n_classes), float64; each row sums to 1."""
    predictor = teacher.predictor()
    targets = (1 - alpha) * network.one_hot(labels, teacher.sizes[-1], np.float64)
    for start in range(0, len(images), _BLOCK):
        Z, _ = predictor.logits(images[start:start + _BLOCK])
        targets[start:start + _BLOCK] += alpha * network.softmax(
            Z.astype(np.float64) / temperature)
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--teacher-hidden", type=int, default=256)
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=None,
                        help="the student's epochs (default: the best preset's)")
    args = parser.parse_args()
    images, labels = datasets.load("mnist", "train", args.data_dir)
    test_images, test_labels = datasets.load("mnist", "test", args.data_dir)

    start = time.perf_counter()
    teacher = training.train(training.make_config(
        "default", hidden=args.teacher_hidden, epochs=args.teacher_epochs, lr=0.003,
        batch_size=128), images, labels)
    teacher_seconds = time.perf_counter() - start
    config = training.make_config("best", augment=0.0, epochs=args.epochs)
    start = time.perf_counter()
    targets = soft_targets(teacher, images, labels, args.temperature, args.alpha)
    student = training.Trainer(config, images, labels, targets=targets).run()
    student_seconds = time.perf_counter() - start

    def test(model: Model) -> float:
        return float(np.mean(model.predict(test_images) == test_labels))

    print(json.dumps({
        "teacher": {"hidden": args.teacher_hidden, "epochs": args.teacher_epochs,
                    "val": teacher.meta["metrics"]["dev_accuracy"], "test": test(teacher),
                    "seconds": round(teacher_seconds, 1)},
        "student": {"temperature": args.temperature, "alpha": args.alpha,
                    "epochs": config.epochs, "val": student.meta["metrics"]["dev_accuracy"],
                    "test": test(student), "seconds": round(student_seconds, 1)},
    }))


if __name__ == "__main__":
    main()
