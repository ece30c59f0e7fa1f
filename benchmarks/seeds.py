"""The ``best`` preset (or another) over several seeds: validation, test and training time.

Each seed changes the initial weights, the validation split, the shuffling and the
augmentation; the preset is chosen on the validation column alone and the test column is
reported. ``--set name=value`` changes a field of the preset, as a row of the ablation does.

    python benchmarks/seeds.py [--data-dir DIR] [--preset best] [--seeds 0 1 2 3 4]
                               [--set lr=0.01 ...] [--json OUT] [--save DIR]

prints the Markdown table that benchmarks/ACCURACY.md holds, and one JSON line per run on
stderr as it finishes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from digitnet import datasets, modelfile, training


def parse_value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--preset", default="best")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE")
    parser.add_argument("--json", default=None, help="also write the runs to this file")
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="save each seed's model as DIR/<preset>-seed<N>.safetensors")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.overrides)
    overrides = {name: parse_value(value) for name, value in overrides.items()}
    images, labels = datasets.load("mnist", "train", args.data_dir)
    test_images, test_labels = datasets.load("mnist", "test", args.data_dir)
    runs = []
    for seed in args.seeds:
        config = training.make_config(args.preset, **{**overrides, "seed": seed})
        start, cpu = time.perf_counter(), time.process_time()
        model = training.train(config, images, labels)
        run = {"seed": seed, "overrides": overrides,
               "val": model.meta["metrics"]["dev_accuracy"],
               "test": float(np.mean(model.predict(test_images) == test_labels)),
               "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
               "chosen_epoch": model.meta["metrics"]["chosen_epoch"]}
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            modelfile.save(model, Path(args.save) / f"{args.preset}-seed{seed}.safetensors")
        print(json.dumps(run), file=sys.stderr, flush=True)
        runs.append(run)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(runs, file, indent=1)
    print("| seed | validation | test | seconds |")
    print("| ---: | ---: | ---: | ---: |")
    for run in runs:
        print(f"| {run['seed']} | {run['val']:.2%} | {run['test']:.2%} | {run['seconds']:.1f} |")
    for name, pick in (("mean", statistics.mean), ("min", min)):
        print(f"| {name} | {pick(r['val'] for r in runs):.2%} | "
              f"{pick(r['test'] for r in runs):.2%} | |")


if __name__ == "__main__":
    main()
