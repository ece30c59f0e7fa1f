"""Commands that read a model: ``evaluate``, ``predict``, ``info``, ``robustness``,
``gradcheck``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from digitnet.cli.base import (
    DataDir,
    Json,
    app,
    console,
    err_console,
    fail,
    print_error,
    print_json,
    safe,
)
from digitnet.errors import DigitnetError


def check_split(split: str) -> None:
    if split not in ("train", "test"):
        fail(f"unknown split {split!r}; choose 'train' or 'test'")


def load_model(path: Path):
    from digitnet import modelfile

    return modelfile.load(path)


def check_takes_digits(model: Any, path: Path) -> None:
    if model.sizes[0] != 28 * 28:
        fail(f"{path}: the model takes {model.sizes[0]} inputs, not the 784 pixels of a 28x28 "
             "digit, so it cannot read digits")


def labelled_data(dataset: str, split: str, data_dir: Path | None, use: str = "evaluated"):
    images, labels = _digits(dataset, split, data_dir)
    if labels is None:
        fail(f"{dataset}: has no labels, so it cannot be {use}; give a file with a label "
             "column (or predict its digits with digitnet predict --dataset FILE --index N)")
    return images, labels


def _digits(dataset: str, split: str, data_dir: Path | None):
    """The images and labels (None for a file without them) of a dataset name or a file."""
    from digitnet import datasets

    if dataset in datasets.DATASETS:
        return datasets.load(dataset, split, data_dir)
    path = Path(dataset)
    if not path.exists() and not path.is_symlink():  # a link loop: the reader says so
        fail(f"{dataset}: neither a dataset name ({', '.join(datasets.DATASETS)}) nor a file")
    images, labels = datasets.load_file(path, split)
    if len(images) == 0:
        fail(f"{path}: holds no images")
    return images, labels


def _probabilities(model: Any, images: Any, path: Path) -> Any:
    """The model's class probabilities, refused when they are not finite numbers."""
    import numpy as np

    with np.errstate(all="ignore"):
        probabilities = model.predict_proba(images)
    if not np.isfinite(probabilities).all():
        fail(f"{path}: the model's outputs are not finite numbers (NaN or inf) for these "
             "images; its weights overflow on them, so retrain it")
    return probabilities


@app.command()
def evaluate(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or a file "
                                         "(CSV, npz, IDX).")] = "mnist",
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of a model.

    Terms: docs/GLOSSARY.md#measuring.
    """
    from digitnet import metrics

    check_split(split)
    model = load_model(model_path)
    check_takes_digits(model, model_path)
    images, labels = labelled_data(dataset, split, data_dir)
    if labels.max() >= model.sizes[-1]:
        fail(f"{dataset}: holds label {labels.max()}, but the model knows only "
             f"{model.sizes[-1]} classes; give a model trained on this dataset")
    predicted = _probabilities(model, images, model_path).argmax(axis=1)
    result = metrics.evaluate(labels, predicted, model.sizes[-1])
    if as_json:
        print_json({"model": str(model_path), "dataset": dataset, "split": split, **result})
        return
    names = [safe(name) for name in model.class_names]  # names are data, not markup
    table = Table(title=f"{safe(str(model_path))} on {safe(dataset)} {split}: accuracy "
                  f"{result['accuracy']:.2%} of {result['n']:,}")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    for name, row in zip(names, result["per_class"], strict=True):
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                      f"{row['f1']:.3f}", f"{row['support']:,}")
    console.print(table)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("")
    for name in names:
        confusion.add_column(name[:6], justify="right")
    for name, row in zip(names, result["confusion_matrix"], strict=True):
        confusion.add_row(name[:6], *(str(v) for v in row))
    console.print(confusion)


@app.command()
def predict(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    images: Annotated[list[Path] | None, typer.Argument(metavar="IMAGE...",
                                                        help="PNG, JPEG or BMP files.")] = None,
    top: Annotated[int | None, typer.Option(help="How many classes to show per image "
                                            "(default 3, or all when fewer).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Predict a stored digit of this "
                                                "dataset instead (with --index).")] = None,
    index: Annotated[int | None, typer.Option(help="Which digit of --dataset.")] = None,
    split: Annotated[str, typer.Option(help="Split of --dataset.")] = "test",
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 input the network "
                                       "reads (on stderr with --json).")] = False,
    save_input: Annotated[Path | None, typer.Option(
        "--save-input", metavar="DIR", help="Write each 28x28 input as DIR/<name>.28x28.png."
    )] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Predict the digit in a person's own images (or one stored digit).

    An image that cannot be read is named on stderr and the others are still predicted; the
    exit status is then 1. With --json, refused images are listed with their error. The input
    is made as MNIST was: docs/GLOSSARY.md#mnist-preprocessing.
    """
    import numpy as np

    from digitnet import imaging
    from digitnet.cli import inputs as cli_inputs

    check_split(split)
    model = load_model(model_path)
    check_takes_digits(model, model_path)
    n_classes = model.sizes[-1]
    top = min(3, n_classes) if top is None else top
    if not 1 <= top <= n_classes:
        fail(f"--top {top} is out of range; it must be between 1 and {n_classes}")
    if save_input is not None and save_input.exists() and not save_input.is_dir():
        fail(f"--save-input {save_input}: is a file; give a folder for the 28x28 PNGs")
    inputs: list[np.ndarray] = []
    names: list[str] = []
    truths: list[int | None] = []
    refused: list[dict[str, Any]] = []
    order: list[dict[str, Any] | int] = []  # each image as given: a refusal, or its input
    notes: dict[str, list[str]] = {}
    if dataset is not None or index is not None:
        if images:
            fail("give image files or --dataset/--index, not both")
        if dataset is None or index is None:
            fail("--dataset and --index go together")
        data, labels = _digits(dataset, split, data_dir)
        if not 0 <= index < len(data):
            fail(f"--index {index} is out of range; {dataset} {split} has {len(data):,} "
                 f"images (0 to {len(data) - 1})")
        inputs.append(data[index])
        names.append(f"{dataset}[{split}][{index}]")
        truths.append(None if labels is None else int(labels[index]))
        order.append(0)
    elif not images:
        fail("give at least one image file, or --dataset and --index")
    else:
        for path in images:
            try:
                image, noticed = imaging.preprocess_with_notes(path)
            except DigitnetError as exc:  # named now, and the others still predicted
                print_error(exc)
                refused.append({"file": str(path), "refused": True, "error": str(exc)})
                order.append(refused[-1])
                continue
            inputs.append(image)
            notes[str(path)] = list(noticed)
            order.append(len(names))
            names.append(str(path))
            truths.append(None)
    saved = cli_inputs.save(save_input, names, inputs, images or []) if save_input else []
    probabilities = _probabilities(model, np.stack(inputs), model_path) if inputs else []
    answers: list[dict[str, Any]] = []
    for k, (name, p, truth) in enumerate(zip(names, probabilities, truths, strict=True)):
        result = {"file": name, "label": int(np.argmax(p)),
                  "probabilities": [round(float(v), 6) for v in p]}
        if truth is not None:
            result["true_label"] = truth
        if notes.get(name):
            result["notes"] = notes[name]  # e.g. that the image seems to hold two digits
        if saved:
            result["input_png"] = str(saved[k])
        answers.append(result)
    results = [answers[slot] if isinstance(slot, int) else slot for slot in order]
    if as_json:
        print_json(results)
    else:
        cli_inputs.print_predictions(console, [r for r in results if "label" in r],
                                     model.class_names, top)
        for note in (note for found in notes.values() for note in found):
            console.print(Text(f"note: {note}", style="yellow"), highlight=False)
    if show:
        cli_inputs.show(err_console if as_json else console, names, inputs)
    if refused:
        raise typer.Exit(1)


@app.command()
def info(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    as_json: Json = False,
) -> None:
    """What a model file says about itself: architecture, training config, metrics, hashes.

    Terms: docs/GLOSSARY.md.
    """
    model = load_model(model_path)  # loading verifies the weights' SHA-256
    meta = model.meta
    summary = {
        "model": str(model_path),
        "sizes": list(model.sizes),
        "preset": meta.get("preset"),
        "digitnet_version": meta.get("digitnet_version"),
        "weights_sha256": meta["weights_sha256"],
        "weights_verified": True,
        "preprocessing": meta["preprocessing"],
        "metrics": meta.get("metrics", {}),
        "config": meta.get("config", {}),
        "datasets": meta.get("datasets", {}),
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=safe(str(model_path)), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("network", "-".join(map(str, model.sizes)) + " (ReLU hidden, softmax out)")
    table.add_row("preset", safe(str(summary["preset"])))  # text from the file, not markup
    table.add_row("digitnet", safe(str(summary["digitnet_version"])))
    table.add_row("weights SHA-256", f"{summary['weights_sha256']} (verified)")
    pre = summary["preprocessing"]
    table.add_row("input", escape(f"x = (pixels × {pre.get('scale', 1):.6g} − "
                                  f"{pre.get('mean', 0):.6g}) / {pre.get('std', 1):.6g}"),
                  end_section=True)
    for key, value in summary["config"].items():  # the whole training config, as saved
        table.add_row(escape(f"config {key}"), escape("none" if value is None else str(value)))
    table.add_section()
    for key, value in summary["metrics"].items():
        if key.endswith("accuracy") and isinstance(value, float):
            text = f"{value:.2%}"
        else:
            text = f"{value:.2f}" if isinstance(value, float) else str(value)
        table.add_row(safe(key), safe(text))
    data = summary["datasets"]
    for split in ("train", "test"):
        for stem, digest in data.get(split, {}).get("sha256", {}).items():
            table.add_row(safe(f"{data.get('name', '')} {stem}"), safe(digest))
    console.print(table)


@app.command()
def robustness(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    per_transform: Annotated[int, typer.Option(help="Digits rendered per "
                                               "transform.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the rendering.")] = 0,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Accuracy on MNIST test digits rendered like handwriting on paper, through predict's path.

    Each transform (stroke thickness, slant, scale, rotation, position, blur, contrast, noise,
    and everything at once; then photos of paper: shadow, lined, squared, pencil, a table's
    edge, a second mark, low-quality JPEG, a phone photo) turns test digits into dark-on-light
    images of their own size; "overall" is the accuracy over all of them. Terms:
    docs/GLOSSARY.md#robustness.
    """
    from digitnet import datasets
    from digitnet import robustness as rob

    if not 1 <= per_transform <= 1000:
        fail(f"--per-transform {per_transform} is out of range; it must be between 1 and 1000")
    if seed < 0:
        fail(f"--seed {seed} is out of range; it must be >= 0")
    model = load_model(model_path)
    check_takes_digits(model, model_path)
    images, labels = datasets.load("mnist", "test", data_dir)
    cases = rob.make_cases(images, labels, per_transform, seed)
    result = rob.accuracy_by_transform(cases, rob.predict_cases(model, cases))
    if as_json:
        print_json({"model": str(model_path), "per_transform": per_transform, "seed": seed,
                    "accuracy": result})
        return
    table = Table(title=f"digits as people write them ({per_transform} per transform)")
    table.add_column("transform")
    table.add_column("accuracy", justify="right")
    shown = {"everything": "everything at once (each digit)",
             "overall": "overall (every digit above)"}
    for name, value in result.items():
        table.add_row(shown.get(name, name), f"{value:.1%}", end_section=name == "everything")
    console.print(table)


@app.command()
def gradcheck(
    threshold: Annotated[float, typer.Option(help="Largest relative error "
                                             "accepted.")] = 1e-6,
    as_json: Json = False,
) -> None:
    """Compare backpropagation with central differences (float64, small random network)."""
    import math

    from digitnet.gradcheck import gradient_check

    if not (math.isfinite(threshold) and 0 < threshold < 1):
        fail(f"--threshold {threshold:g} is out of range; give a relative error between 0 and "
             "1, e.g. 1e-6")
    result = gradient_check()
    ok = result.max_relative_error <= threshold
    if as_json:
        print_json({"max_relative_error": result.max_relative_error,
                    "per_parameter": result.per_parameter, "threshold": threshold,
                    "sizes": list(result.sizes), "batch": result.batch, "passed": ok})
    else:
        for name, error in result.per_parameter.items():
            console.print(f"{name}: largest relative error {error:.2e}")
        verdict = "[green]passed[/]" if ok else "[red]failed[/]"
        console.print(f"gradient check {verdict}: {result.max_relative_error:.2e} "
                      f"(threshold {threshold:.0e})")
    if not ok:
        fail(f"gradient check failed: the largest relative error "
             f"{result.max_relative_error:.2e} is above --threshold {threshold:.0e}")
