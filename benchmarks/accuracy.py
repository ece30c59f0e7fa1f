"""The ablation behind the presets: each lever's effect on validation, test and robustness.

Every row trains the exact 784-10(ReLU)-10(softmax) network on MNIST with seed 0 and is the
``digitnet train`` command shown beside it. Choices were made on the validation accuracy (5,000
of the 60,000 training images) and the robustness set; the test set is only reported.

    python benchmarks/accuracy.py [--data-dir DIR] [--rows NAME ...] [--json OUT]

prints the Markdown table that benchmarks/ACCURACY.md holds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from digitnet import datasets, robustness, training

# name, preset, overrides: each row changes one thing from the row it names.
ROWS: list[tuple[str, str, dict]] = [
    ("seed: the original notebook", "seed", {}),
    ("default: He init, standardised input, Adam, one-cycle, batch 64, 15 epochs", "default",
     {}),
    ("default, cosine schedule instead of one-cycle", "default", {"schedule": "cosine"}),
    ("default, constant rate", "default", {"schedule": "constant", "lr": 0.002}),
    ("default, inputs /255 only (not standardised)", "default", {"standardize": False}),
    ("default, no L2", "default", {"l2": 0.0}),
    ("default, label smoothing 0.1", "default", {"label_smoothing": 0.1}),
    ("default, 40 epochs", "default", {"epochs": 40}),
    ("40 epochs, batch 128, rate 0.02 (best without augmentation)", "best", {"augment": 0.0}),
    ("best without augmentation, seed 1", "best", {"augment": 0.0, "seed": 1}),
    ("best without augmentation, seed 2", "best", {"augment": 0.0, "seed": 2}),
    ("best without augmentation, batch 256, rate 0.03, 80 epochs", "best",
     {"augment": 0.0, "batch_size": 256, "lr": 0.03, "epochs": 80}),
    ("augmentation 0.25", "best", {"augment": 0.25}),
    ("best: augmentation 0.5", "best", {}),
    ("augmentation 1.0", "best", {"augment": 1.0}),
    ("best, seed 1", "best", {"seed": 1}),
    ("best, seed 2", "best", {"seed": 2}),
]

FLAGS = {"schedule": "--schedule", "lr": "--lr", "l2": "--l2", "epochs": "--epochs",
         "seed": "--seed", "batch_size": "--batch-size", "augment": "--augment"}


def command(preset: str, overrides: dict) -> str:
    words = ["digitnet train", f"--preset {preset}"]
    for key, value in overrides.items():
        if key in FLAGS:
            words.append(f"{FLAGS[key]} {value:g}" if isinstance(value, float)
                         else f"{FLAGS[key]} {value}")
        else:  # options without a flag of their own are set through the Python API
            words.append(f"({key}={value})")
    return " ".join(words)


def run(rows: list[tuple[str, str, dict]], data_dir: str | None) -> list[dict]:
    images, labels = datasets.load("mnist", "train", data_dir)
    test_images, test_labels = datasets.load("mnist", "test", data_dir)
    cases = robustness.make_cases(test_images, test_labels, per_transform=100, seed=0)
    results = []
    for name, preset, overrides in rows:
        config = training.make_config(preset, **overrides)
        start = time.perf_counter()
        model = training.train(config, images, labels)
        seconds = time.perf_counter() - start
        test = float(np.mean(model.predict(test_images) == test_labels))
        robust = robustness.accuracy_by_transform(cases, robustness.predict_cases(model, cases))
        results.append({"name": name, "command": command(preset, overrides),
                        "val": model.meta["metrics"]["dev_accuracy"], "test": test,
                        "robust": robust["overall"], "robust_by_transform": robust,
                        "seconds": seconds})
    return results


def table(results: list[dict]) -> str:
    lines = ["| lever | validation | test | robustness set | seconds | command |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        lines.append(f"| {r['name']} | {r['val']:.2%} | {r['test']:.2%} | {r['robust']:.1%} | "
                     f"{r['seconds']:.1f} | `{r['command']}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--rows", nargs="*", help="row names to run (a prefix is enough)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    rows = [r for r in ROWS if not args.rows or any(r[0].startswith(p) for p in args.rows)]
    results = run(rows, args.data_dir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
