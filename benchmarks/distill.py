"""Knowledge distillation: a 784-10-10 student taught by a wider teacher digitnet trains itself.

The teacher is the same code with 256 hidden units. The student keeps the seed's architecture
and learns from targets that blend the true label with the teacher's probabilities softened by a
temperature T: ``Y = (1 - alpha) * one_hot + alpha * softmax(Z_teacher / T)``. Any such Y sums to
1, so ``dZ2 = A2 - Y`` in network.py still holds and nothing else changes.

    python benchmarks/distill.py [--data-dir DIR] [--temperature 2] [--alpha 0.5]

prints one JSON object: the teacher's and the student's validation and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from digitnet import datasets, network, training


class Student(training.Trainer):
    """A trainer whose targets blend the labels with a teacher's softened probabilities."""

    def __init__(self, config, images, labels, teacher, temperature: float, alpha: float):
        super().__init__(config, images, labels, backend="reference")  # per-batch targets
        self.teacher, self.temperature, self.alpha = teacher, temperature, alpha

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, Y = super()._batch(idx)
        Z = self.teacher.forward(self._images_now[idx]).Z[-1]
        soft = network.softmax(Z / self.temperature)
        return X, ((1 - self.alpha) * Y + self.alpha * soft).astype(Y.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--teacher-hidden", type=int, default=256)
    args = parser.parse_args()
    images, labels = datasets.load("mnist", "train", args.data_dir)
    test_images, test_labels = datasets.load("mnist", "test", args.data_dir)

    start = time.perf_counter()
    teacher = training.train(training.make_config(
        "default", hidden=args.teacher_hidden, epochs=8, lr=0.003, batch_size=128), images,
        labels)
    teacher_seconds = time.perf_counter() - start
    config = training.make_config("best", augment=0.0)
    start = time.perf_counter()
    student = Student(config, images, labels, teacher, args.temperature, args.alpha).run()
    student_seconds = time.perf_counter() - start

    def test(model) -> float:
        return float(np.mean(model.predict(test_images) == test_labels))

    print(json.dumps({
        "teacher": {"hidden": args.teacher_hidden, "val": teacher.meta["metrics"]["dev_accuracy"],
                    "test": test(teacher), "seconds": round(teacher_seconds, 1)},
        "student": {"temperature": args.temperature, "alpha": args.alpha,
                    "val": student.meta["metrics"]["dev_accuracy"], "test": test(student),
                    "seconds": round(student_seconds, 1)},
    }))


if __name__ == "__main__":
    main()
