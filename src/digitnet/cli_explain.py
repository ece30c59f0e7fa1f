"""``digitnet explain``: one forward pass shown with its numbers (registered on ``cli.app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# The command's options, as cli.py spells them. The rest of cli.py is imported when the command
# runs, so this module can be imported from cli.py's last lines (also under python -m).
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder whose <name>/ sub-folder holds the IDX files "
                 "(default: DIGITNET_DATA, then the cache, then download)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def input_digit(images: list[Path] | None, dataset: str | None, index: int | None, split: str,
                data_dir: Path | None) -> tuple[np.ndarray, str, int | None]:
    """The one 28x28 input named on the command line: its pixels, its name, its true label."""
    from digitnet import imaging
    from digitnet.cli import _check_split, _labelled_data, fail

    if dataset is not None or index is not None:
        if images:
            fail("give an image file or --dataset/--index, not both")
        if dataset is None or index is None:
            fail("--dataset and --index go together")
        _check_split(split)
        data, labels = _labelled_data(dataset, split, data_dir)
        if not 0 <= index < len(data):
            fail(f"--index {index} is out of range; {dataset} {split} has {len(data):,} "
                 f"images (0 to {len(data) - 1})")
        return np.asarray(data[index]).reshape(28, 28), f"{dataset}[{split}][{index}]", \
            int(labels[index])
    if not images:
        fail("give an image file, or --dataset and --index")
    if len(images) > 1:
        fail(f"explain takes one image, got {len(images)}; use predict for several")
    return imaging.preprocess(images[0]), str(images[0]), None


def explain(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    image: Annotated[list[Path] | None, typer.Argument(
        metavar="[IMAGE]", help="A PNG, JPEG or BMP file (or use --dataset and --index).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Explain a stored digit of this dataset "
                                                "instead (with --index).")] = None,
    index: Annotated[int | None, typer.Option(help="Which digit of --dataset.")] = None,
    split: Annotated[str, typer.Option(help="Split of --dataset: train or test.")] = "test",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show one forward pass with its numbers: from 784 pixels to ten probabilities.

    The input drawn in the terminal; Z1 = X·W1 + b1 for each hidden unit; A1 = max(0, Z1)
    and the silent units; the table of contributions A1[j]·W2[j,k]; b2; the logits Z2; and
    softmax as exponentials over their sum. --json prints every array by name (x, z1, a1,
    contributions, b2, z2, probabilities). Terms: docs/GLOSSARY.md.
    """
    from digitnet import explain as explaining
    from digitnet.cli import _check_takes_digits, _load_model, print_json

    model = _load_model(model_path)
    _check_takes_digits(model, model_path)
    pixels, name, truth = input_digit(image, dataset, index, split, data_dir)
    result = explaining.explain(model, pixels)
    if as_json:
        print_json(_as_json(result, model_path, name, truth))
        return
    _show(result, name, truth, model)


def _as_json(result: Any, model_path: Path, name: str, truth: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": str(model_path), "image": name, "sizes": [len(result.x)] +
        [len(layer.z) for layer in result.layers],
        "label": result.label, "class_name": result.class_names[result.label],
        "pixels": result.pixels.astype(int).tolist(),
    }
    if truth is not None:
        out["true_label"] = truth
    out.update({key: value.tolist() for key, value in result.arrays().items()})
    for layer in result.layers[:-1]:
        out[f"silent{layer.number}"] = layer.silent.tolist()
    out["silent"] = result.layers[0].silent.tolist() if len(result.layers) > 1 else []
    return out


# -- what a person sees -----------------------------------------------------------------------


def _show(result: Any, name: str, truth: int | None, model: Any) -> None:
    from digitnet.cli import console
    from digitnet.terminal import digit_text

    pre = model.preprocessing
    console.print(Text.assemble(("the input ", "bold"), name,
                                f": 28x28 grey levels 0-255, {int(np.count_nonzero(result.pixels))}"
                                " pixels inked"), highlight=False)
    console.print(digit_text(result.pixels, console.is_terminal and
                             console.color_system is not None))
    console.print(f"x = (pixels × {pre.scale:.6g} − {pre.mean:.4g}) / {pre.std:.4g}: 784 "
                  f"numbers from {result.x.min():.3f} to {result.x.max():.3f}", highlight=False)
    for layer in result.layers[:-1]:
        _hidden_table(layer)
    _output_table(result)
    _softmax_table(result, truth)


def _hidden_table(layer: Any) -> None:
    from digitnet.cli import console

    n, prev = layer.number, "X" if layer.number == 1 else f"A{layer.number - 1}"
    if n > 1:
        _contribution_table(layer, f"A{n - 1}[i]·W{n}[i,j]", "unit", "i")
    table = Table(title=f"layer {n}: Z{n} = {prev}·W{n} + b{n}, A{n} = max(0, Z{n})")
    for column in ("unit", f"{prev}·W{n}[:,j]", f"b{n}[j]", f"Z{n}[j]", f"A{n}[j]"):
        table.add_column(column, justify="right")
    for j, (z, b, a) in enumerate(zip(layer.z, layer.b, layer.a, strict=True)):
        table.add_row(str(j), f"{z - b:+.3f}", f"{b:+.3f}", f"{z:+.3f}",
                      f"{a:.3f}" if a > 0 else "[dim]0 (silent)[/]")
    console.print(table)
    silent = layer.silent.tolist()
    console.print(f"{len(layer.z) - len(silent)} of {len(layer.z)} units fire; silent: "
                  f"{', '.join(map(str, silent)) or 'none'}", highlight=False)


def _contribution_table(layer: Any, what: str, column: str, row: str,
                        names: list[str] | None = None) -> None:
    from digitnet.cli import console

    n = layer.number
    # Compact, so that ten classes fit in 80 columns
    table = Table(title=f"layer {n}: contributions {what}\n(row {row}: unit of layer {n - 1}; "
                  "a silent unit adds 0)", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column(row, justify="right")
    for k in range(len(layer.z)):
        table.add_column(escape(names[k][:6]) if names else f"{column} {k}", justify="right")
    active = np.flatnonzero(layer.inputs)
    for i in active:
        table.add_row(str(i), *(f"{c:+.1f}" for c in layer.contributions[i]))
    if len(active) < len(layer.inputs):
        table.add_row("[dim]rest[/]", *("[dim]0[/]",) * len(layer.z))
    table.add_row(f"b{n}", *(f"{b:+.1f}" for b in layer.b), style="italic", end_section=True)
    table.add_row(f"Z{n}", *(f"{z:+.1f}" for z in layer.z), style="bold")
    console.print(table)


def _output_table(result: Any) -> None:
    layer = result.output
    n = layer.number
    _contribution_table(layer, f"A{n - 1}[j]·W{n}[j,k]", "class", "j", list(result.class_names))


def _softmax_table(result: Any, truth: int | None) -> None:
    from digitnet.cli import console

    n = result.output.number
    e = result.exponentials
    console.print(f"softmax: p[k] = exp(Z{n}[k] − max Z{n}) / {e.sum():.4f}, the sum of the "
                  "exponentials", highlight=False)
    table = Table()
    for column in ("class", f"Z{n}[k]", f"exp(Z{n}[k] − {result.logits.max():.2f})",
                   "probability"):
        table.add_column(column, justify="right")
    for k, (z, ek, p) in enumerate(zip(result.logits, e, result.probabilities, strict=True)):
        style = "bold" if k == result.label else None
        table.add_row(escape(result.class_names[k]), f"{z:+.3f}", f"{ek:.4f}", f"{p:.2%}",
                      style=style)
    console.print(table)
    verdict = Text.assemble("prediction: ", (result.class_names[result.label], "bold"),
                            f" ({result.probabilities[result.label]:.1%})")
    if truth is not None:
        verdict.append(f"; true label {result.class_names[truth]}")
    console.print(verdict, highlight=False)
