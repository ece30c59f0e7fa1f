"""The ``digitnet`` command: thin Typer commands over the library.

Commands parse options, call the modules and decide what a person sees (Rich) or what a
program reads (``--json`` on stdout). Errors digitnet raises on purpose become one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x parses with its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:
    from click.exceptions import UsageError  # type: ignore[assignment]

from digitnet import __version__, streams
from digitnet.errors import DigitnetError
from digitnet.streams import shown

if TYPE_CHECKING:
    from digitnet.bench import BenchResult


class _Group(TyperGroup):
    """Turns the errors digitnet raises on purpose into one line on stderr and exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DigitnetError as exc:
            fail(str(exc))
        except UsageError as exc:  # a command's options: one line too, and exit 2 as click does
            fail(_usage_line(exc), code=2)
        except KeyboardInterrupt:
            _print_error("interrupted (Ctrl-C)")
            raise typer.Exit(130) from None
        except streams.Terminated:
            _print_error("terminated (SIGTERM)")
            raise typer.Exit(143) from None


app = typer.Typer(
    cls=_Group,
    name="digitnet",
    help="The classic 784-10-10 MNIST network, from scratch in NumPy. Every term the commands "
    "use is explained in docs/GLOSSARY.md.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder whose <name>/ sub-folder holds the IDX files "
                 "(default: DIGITNET_DATA, then the cache, then download)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    _print_error(message)
    raise typer.Exit(code)


def _print_error(message: object) -> None:
    # Text, not markup: a file name like "x[/]y.png" is shown as it is, not parsed as a tag;
    # control characters (from a file name or a file's content) are shown escaped, so the
    # message stays one line and cannot drive the terminal.
    err_console.print(Text.assemble(("error:", "bold red"), " ", shown(str(message))),
                      highlight=False, soft_wrap=True)


def _safe(text: object) -> str:
    """Text from a file or a path, ready for Rich: control characters escaped, markup too."""
    return escape(shown(text))


def _usage_line(exc: Exception) -> str:
    """A usage error (unknown option, value of the wrong type) as one line, naming the value."""
    message = " ".join(getattr(exc, "format_message", exc.__str__)().split()).rstrip(".")
    errors = getattr(exc.__cause__, "errors", None)  # typer checks values with pydantic
    found = errors() if callable(errors) else None
    if found and isinstance(found[0], dict) and "input" in found[0]:
        message = f"{message} (got {found[0]['input']!r})"
    ctx = getattr(exc, "ctx", None)
    return f"{message}; see '{ctx.command_path} --help'" if ctx is not None else message


def print_json(obj: Any) -> None:
    from digitnet.modelfile import json_safe

    # JSON has no NaN: a figure that does not exist (no validation set) is printed as null.
    sys.stdout.write(json.dumps(json_safe(obj), allow_nan=False) + "\n")


class RichDownloadBar:
    """The progress object pooch's downloader expects, drawn with Rich on stderr."""

    def __init__(self) -> None:
        from rich.progress import Progress

        self.total = 0
        self._progress = Progress(console=err_console, transient=True)
        self._task: Any = None

    def update(self, n: int) -> None:
        if self._task is None:  # pooch reuses the object for each file it fetches
            self._progress.start()
            self._task = self._progress.add_task("downloading", total=self.total or None)
        self._progress.update(self._task, advance=n, total=self.total or None)

    def reset(self) -> None:
        if self._task is not None:
            self._progress.reset(self._task)

    def close(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._progress.stop()


def version_callback(value: bool) -> None:
    if value:
        console.print(f"digitnet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True,
                           help="Show the version and exit.")
    ] = False,
) -> None:
    """The classic 784-10-10 MNIST network, from scratch in NumPy."""


@app.command()
def data(
    dataset: Annotated[str, typer.Option("--dataset", help="mnist or fashion-mnist.")] = "mnist",
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option(help="Download when found nowhere.")] = True,
    as_json: Json = False,
) -> None:
    """Find, verify and describe a dataset: where each split is, counts, class balance."""
    from digitnet import datasets

    report: dict[str, Any] = {"name": dataset}
    sources, balance, found = {}, {}, []
    bar = RichDownloadBar()
    for split in datasets.SPLITS:
        images, labels, files = datasets.load_split(dataset, split, data_dir, download, bar)
        found.append(files)
        report[split] = len(images)
        sources[split] = {"source": files.source, "folder": str(files.images.parent),
                          "files": [str(files.images), str(files.labels)]}
        balance[split] = datasets.class_balance(labels)
    report["source"] = sources["train"]["source"]
    report["folder"] = sources["train"]["folder"]
    report["verified"] = all(files.verified for files in found)
    report["splits"] = sources
    report["class_balance"] = balance
    if as_json:
        print_json(report)
        return
    info = datasets.DATASETS[dataset]
    table = Table(title=f"{info.title}: verified against the published content")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("found in")
    for split in datasets.SPLITS:
        table.add_row(split, f"{report[split]:,}",
                      f"{sources[split]['folder']} ({sources[split]['source']})")
    console.print(table)
    classes = Table(title="class balance")
    classes.add_column("class")
    for split in datasets.SPLITS:
        classes.add_column(split, justify="right")
    for k, name in enumerate(info.class_names):
        classes.add_row(name, *(f"{balance[s][k]:,}" for s in datasets.SPLITS))
    console.print(classes)


def _train_progress(total: int, quiet: bool, by_step: bool = False):
    """A Rich progress bar fed by the trainer's per-epoch callback (on stderr).

    It counts ``total`` epochs, or ``total`` steps when ``by_step`` (``--iterations`` given).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  val acc {task.fields[val]}"),
        TimeElapsedColumn(), console=err_console, transient=True,
        disable=quiet or not err_console.is_terminal,  # no stray blank line in a log or pipe
    )
    task = progress.add_task("train", total=total, loss="-", val="-")

    def callback(record: Any) -> None:
        done = record.step if by_step else record.epoch
        progress.update(task, completed=done, loss=f"{record.loss:.4f}",
                        val=f"{record.val_accuracy:.2%}")

    return progress, callback


@app.command()
def train(
    preset: Annotated[str, typer.Option(
        help="seed (the original notebook), default or best.")] = "default",
    hidden: Annotated[int | None, typer.Option(help="Units in each hidden layer.")] = None,
    layers: Annotated[int | None, typer.Option(help="Number of hidden layers.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Total gradient steps "
                                                   "(replaces --epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step; 0 = all "
                                                   "(full-batch).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="gd, momentum or adam "
                                                  "(docs/GLOSSARY.md#adam).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate α.")] = None,
    schedule: Annotated[str | None, typer.Option(help="constant, cosine or onecycle "
                                                 "(docs/GLOSSARY.md#schedule).")] = None,
    l2: Annotated[float | None, typer.Option(help="L2 penalty λ (docs/GLOSSARY.md#l2).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    val_size: Annotated[int | None, typer.Option(help="Training images held out for "
                                                 "validation.")] = None,
    augment: Annotated[float | None, typer.Option(help="Strength of random deformations of "
                                                  "the training digits (0 = none).")] = None,
    dataset: Annotated[str | None, typer.Option(help="mnist or fashion-mnist.")] = None,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the model "
                                             "(default: models/<preset>.safetensors).")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Write a checkpoint every N epochs "
                                                  "(0 = only when stopped).")] = 0,
    checkpoint_path: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Checkpoint file (default: the model path with .ckpt added)."
    )] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue from a checkpoint, to the "
                                                "same weights as an unbroken run.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    as_json: Json = False,
) -> None:
    """Train the network on MNIST and save it as a model file.

    Ctrl-C or SIGTERM stops after the current epoch, writes a checkpoint and exits with 130 or
    143; `digitnet train --resume CHECKPOINT` goes on from there.

    Terms (epoch, step, batch, Adam, one-cycle, L2, validation): docs/GLOSSARY.md#training.
    """
    from digitnet import checkpoint, guard, modelfile, runner, snapshots, training

    overrides = dict(hidden=hidden, layers=layers, epochs=epochs, iterations=iterations,
                     batch_size=batch_size, optimizer=optimizer, lr=lr, schedule=schedule,
                     l2=l2, seed=seed, val_size=val_size, augment=augment, dataset=dataset)
    if checkpoint_every < 0 or checkpoint_every > 1_000_000:
        fail(f"--checkpoint-every {checkpoint_every} is out of range; it must be >= 0")
    if out is not None:  # before the checkpoint is even read
        guard.check_output(out, [resume], what="--out", example="model.safetensors")
    if resume is not None:
        given = sorted(f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None)
        if given:
            fail(f"{', '.join(given)} cannot change a resumed run; --resume continues "
                 "with the checkpoint's own settings")
        config = checkpoint.config_of(checkpoint.read(resume)[0])
    else:
        config = training.make_config(preset, **overrides)
    out = out or Path("models") / f"{config.preset}.safetensors"
    guard.check_output(out, [resume], what="--out", example="model.safetensors")
    checkpoint_path = checkpoint_path or resume or out.with_name(out.name + ".ckpt")
    _check_train_outputs(out, checkpoint_path, resume, config.dataset, data_dir)
    progress, show = _train_progress(
        config.iterations or config.epochs, quiet or as_json, config.iterations is not None)
    recorder = snapshots.Recorder()  # W1 at a few points of the run, for the report
    with progress, _StopSignals() as stop:
        data = runner.load_data(config.dataset, data_dir, progressbar=RichDownloadBar())
        trainer = runner.make_trainer(config, data, resume)
        stop.connect(trainer.stop)
        saved_at = trainer.epoch
        recorder.observe(trainer.step, trainer.total_steps, trainer.params, trainer.epoch)
        for record in trainer.events(snapshots=True):
            show(record)
            recorder.observe(record.step, record.total_steps, record.params, record.epoch)
            if checkpoint_every and record.epoch // checkpoint_every > saved_at // checkpoint_every:
                checkpoint.save(trainer, checkpoint_path)
                saved_at = record.epoch
        if trainer.stopped:
            checkpoint.save(trainer, checkpoint_path)
            progress.stop()
            err_console.print(Text(shown(
                f"{stop.name}: training stopped after epoch {trainer.epoch} of {trainer.epochs} "
                f"(step {trainer.step} of {trainer.total_steps}); checkpoint saved to "
                f"{checkpoint_path}; continue with: digitnet train --resume {checkpoint_path} "
                f"--out {out}")), soft_wrap=True)
            raise typer.Exit(stop.exit_code)
    model = runner.finish(trainer.result(), data)
    model.meta["snapshots"] = recorder.to_meta()
    modelfile.save(model, out, [resume])
    metrics = model.meta["metrics"]
    if as_json:
        print_json({**metrics, "model": str(out), "preset": config.preset,
                    "config": config.to_dict()})
        return
    if not quiet:  # the progress bar is gone: the per-epoch figures stay on screen
        from digitnet.terminal import history_table

        console.print(history_table(model.meta["history"], config.batch_size == 0))
    table = Table(title=f"{config.preset} preset: {'-'.join(map(str, model.sizes))} network")
    for column in ("train", "dev (validation)", "test", "seconds", "epochs", "steps"):
        table.add_column(column, justify="right")
    table.add_row(f"{metrics['train_accuracy']:.2%}", f"{metrics['dev_accuracy']:.2%}",
                  f"{metrics['test_accuracy']:.2%}", f"{metrics['train_seconds']:.2f}",
                  str(metrics["epochs"]), str(metrics["iterations"]))
    console.print(table)
    console.print(Text.assemble("model saved to ", (shown(out), "bold")))


def _check_train_outputs(out: Path, checkpoint_path: Path, resume: Path | None, dataset: str,
                         data_dir: Path | None) -> None:
    """Refuse, before any training, outputs that cannot be written or are the run's inputs.

    The checkpoint may be the one resumed from (it is read whole at the start, and each new
    checkpoint continues it); the model file may be neither, nor any of the data files.
    """
    from digitnet import datasets, guard

    guard.check_output(checkpoint_path, [], what="--checkpoint", example="run.ckpt")
    if guard.same_file(out, checkpoint_path):
        fail(f"--checkpoint {checkpoint_path}: is the same file as --out; give the checkpoint "
             f"its own name, e.g. {out.name}.ckpt")
    data_files: list[Path] = []
    for split in datasets.SPLITS:
        try:
            found = datasets.locate(dataset, split, data_dir, download=False)
        except DigitnetError:  # not there yet (or a bad folder): training says so itself
            continue
        data_files += [found.images, found.labels]
    guard.check_output(out, data_files, what="--out", example="model.safetensors")
    guard.check_output(checkpoint_path, data_files, what="--checkpoint", example="run.ckpt")


class _StopSignals:
    """SIGINT and SIGTERM ask training to stop after its epoch; a second one stops at once."""

    CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._listeners: list[Callable[[], None]] = []

    def connect(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the first signal (at once, if one came already)."""
        self._listeners.append(listener)
        if self.signal is not None:
            listener()

    def __enter__(self) -> _StopSignals:
        for sig in self.CODES:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # asked twice: stop now, without a checkpoint
            _print_error("stopped at once by a second signal; no checkpoint written")
            raise SystemExit(self.CODES[signum])
        self.signal = signum
        for listener in self._listeners:
            listener()

    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return self.CODES.get(self.signal, 130) if self.signal is not None else 130

    @property
    def name(self) -> str:
        return "interrupted" if self.signal == signal.SIGINT else "terminated"


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        fail(f"unknown split {split!r}; choose 'train' or 'test'")


def _load_model(path: Path):
    from digitnet import modelfile

    return modelfile.load(path)


def _check_takes_digits(model: Any, path: Path) -> None:
    if model.sizes[0] != 28 * 28:
        fail(f"{path}: the model takes {model.sizes[0]} inputs, not the 784 pixels of a 28x28 "
             "digit, so it cannot read digits")


def _labelled_data(dataset: str, split: str, data_dir: Path | None, use: str = "evaluated"):
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

    _check_split(split)
    model = _load_model(model_path)
    _check_takes_digits(model, model_path)
    images, labels = _labelled_data(dataset, split, data_dir)
    if labels.max() >= model.sizes[-1]:
        fail(f"{dataset}: holds label {labels.max()}, but the model knows only "
             f"{model.sizes[-1]} classes; give a model trained on this dataset")
    predicted = _probabilities(model, images, model_path).argmax(axis=1)
    result = metrics.evaluate(labels, predicted, model.sizes[-1])
    if as_json:
        print_json({"model": str(model_path), "dataset": dataset, "split": split, **result})
        return
    names = [_safe(name) for name in model.class_names]  # names are data, not markup
    table = Table(title=f"{_safe(str(model_path))} on {_safe(dataset)} {split}: accuracy "
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

    from digitnet import cli_inputs, imaging

    _check_split(split)
    model = _load_model(model_path)
    _check_takes_digits(model, model_path)
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
                inputs.append(imaging.preprocess(path))
            except DigitnetError as exc:  # named now, and the others still predicted
                _print_error(exc)
                refused.append({"file": str(path), "refused": True, "error": str(exc)})
                order.append(refused[-1])
                continue
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
        if saved:
            result["input_png"] = str(saved[k])
        answers.append(result)
    results = [answers[slot] if isinstance(slot, int) else slot for slot in order]
    if as_json:
        print_json(results)
    else:
        cli_inputs.print_predictions(console, [r for r in results if "label" in r],
                                     model.class_names, top)
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
    model = _load_model(model_path)  # loading verifies the weights' SHA-256
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
    table = Table(title=_safe(str(model_path)), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("network", "-".join(map(str, model.sizes)) + " (ReLU hidden, softmax out)")
    table.add_row("preset", _safe(str(summary["preset"])))  # text from the file, not markup
    table.add_row("digitnet", _safe(str(summary["digitnet_version"])))
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
        table.add_row(_safe(key), _safe(text))
    data = summary["datasets"]
    for split in ("train", "test"):
        for stem, digest in data.get(split, {}).get("sha256", {}).items():
            table.add_row(_safe(f"{data.get('name', '')} {stem}"), _safe(digest))
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
    and everything at once) turns test digits into dark-on-light images of their own size;
    "overall" is the accuracy over all of them. Terms: docs/GLOSSARY.md#robustness.
    """
    from digitnet import datasets
    from digitnet import robustness as rob

    if not 1 <= per_transform <= 1000:
        fail(f"--per-transform {per_transform} is out of range; it must be between 1 and 1000")
    if seed < 0:
        fail(f"--seed {seed} is out of range; it must be >= 0")
    model = _load_model(model_path)
    _check_takes_digits(model, model_path)
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


@app.command()
def report(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    out: Annotated[Path, typer.Option(help="Folder for the figures and index.html.")] =
    Path("report"),
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or a labelled file "
                                         "(CSV, npz, IDX).")] = "mnist",
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Figures of what the network learned and how it was trained, in one HTML page.

    The training curves, the learning-rate schedule, the hidden units' weights at several
    points of training, the confusion matrix, what each unit looks for, the mistakes.
    Terms: docs/GLOSSARY.md.
    """
    _check_split(split)
    if out.exists() and not out.is_dir():
        fail(f"{out}: is a file; give a folder for the report")
    _check_report_folder(out, [model_path, Path(dataset)])
    try:
        from digitnet import report as reporting
    except ImportError as exc:
        fail(f"report needs matplotlib ({exc.name} is missing): pip install 'digitnet[plot]'")
    model = _load_model(model_path)
    _check_takes_digits(model, model_path)
    images, labels = _labelled_data(dataset, split, data_dir, use="reported on")
    _check_classes(model, model_path, labels, dataset)
    source = f"{dataset if dataset in ('mnist', 'fashion-mnist') else Path(dataset).name} {split}"
    try:
        written = reporting.write_report(model, images, labels, out, source)
    except ValueError as exc:
        fail(f"{dataset}: {exc}")
    except OSError as exc:
        fail(f"{out}: cannot write the report ({exc.strerror or exc})")
    if as_json:
        print_json({"model": str(model_path), "dataset": dataset, "split": split,
                    "files": [str(p) for p in written]})
        return
    for path in written:
        console.print(f"wrote {_safe(str(path))}", highlight=False, soft_wrap=True)
    console.print(f"open [bold]{_safe(str(written[-1]))}[/] in a browser", highlight=False,
                  soft_wrap=True)


def _check_report_folder(out: Path, inputs: list[Path]) -> None:
    """Refuse a report folder holding an input under a name the report writes (PNG, HTML)."""
    from digitnet import guard

    for path in inputs:
        if path.suffix.lower() not in (".png", ".html") or not path.exists():
            continue
        if guard.same_file(path.parent, out) and path.name != "":
            fail(f"--out {out}: holds the input {path}, which the report's files could "
                 "replace; give another folder")


def _check_classes(model: Any, model_path: Path, labels: Any, dataset: str) -> None:
    if len(labels) and int(labels.max()) >= model.sizes[-1]:
        fail(f"{model_path}: the model knows {model.sizes[-1]} classes (0 to "
             f"{model.sizes[-1] - 1}), but {dataset} holds label {int(labels.max())}; give "
             "a model trained on this dataset")


def _sample_digits(model: Any, data_dir: Path | None):
    """The test digits of the model's dataset for the page's random-digit button, or None."""
    from digitnet import datasets

    name = (model.meta.get("datasets") or {}).get("name") or \
        (model.meta.get("config") or {}).get("dataset") or "mnist"
    if not isinstance(name, str) or name not in datasets.DATASETS:
        return None
    if len(datasets.DATASETS[name].class_names) != model.sizes[-1]:
        err_console.print(f"[yellow]note:[/] the model has {model.sizes[-1]} classes, not the "
                          f"{len(datasets.DATASETS[name].class_names)} of {name}, so the page "
                          "hides its random-digit button", highlight=False, soft_wrap=True)
        return None
    try:
        return datasets.load(name, "test", data_dir, download=False)
    except DigitnetError as exc:
        err_console.print(f"[yellow]note:[/] no {name} test digits, so the page hides its "
                          f"random-digit button ({_safe(exc)})", highlight=False,
                          soft_wrap=True)
        return None


@app.command()
def serve(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    allow_train: Annotated[bool, typer.Option("--allow-train", help="Let the page train "
                                              "networks on an address other than loopback "
                                              "(training costs CPU).")] = False,
) -> None:
    """Serve the drawing page: draw a digit and watch the network read it, or train one."""
    import logging

    if not 0 <= port <= 65535:
        fail(f"--port {port} is out of range; it must be between 0 and 65535")
    model = _load_model(model_path)  # a bad model file stops here, before the port is bound
    _check_takes_digits(model, model_path)
    try:
        from digitnet.web.app import create_app
        from digitnet.web.runs import TrainSettings
        from digitnet.web.server import check_address
        from digitnet.web.server import run as run_server
    except ImportError as exc:
        fail(f"serve needs the web extra ({exc.name} is missing): pip install 'digitnet[web]'")
    check_address(host, port)
    try:
        web_app = create_app(model, _sample_digits(model, data_dir),
                             training=TrainSettings.for_host(host, allow_train, data_dir))
    except ValueError as exc:
        fail(f"{model_path}: {exc}")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:  %(message)s"))
    web_log = logging.getLogger("digitnet.web")
    web_log.addHandler(handler)
    web_log.propagate = False
    address = f"[{host}]" if ":" in host else host
    # Open event streams are closed after 3 s, so Ctrl+C stops a training run without waiting.
    run_server(web_app, host, port, timeout_graceful_shutdown=3, announce=lambda: console.print(
        f"serving {_safe(str(model_path))} on [bold]http://{_safe(address)}:{port}/[/] "
        "(Ctrl+C stops)", highlight=False))


@app.command()
def export(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The ONNX file to write, e.g. "
                                        "model.onnx (folders are created).")],
    input_type: Annotated[str, typer.Option(help="Element type of the 'pixels' input: uint8 "
                                            "or float32 (values 0-255 either way).")] = "uint8",
    as_json: Json = False,
) -> None:
    """Export a model to ONNX: pixels in; probabilities and label out."""
    from digitnet import export as onnx_export
    from digitnet import guard

    if input_type not in onnx_export.INPUT_TYPES:
        fail(f"--input-type {shown(input_type)!r} is unknown; choose "
             f"{' or '.join(onnx_export.INPUT_TYPES)}")
    guard.check_output(out, [model_path], what="OUT", example="model.onnx")
    model = _load_model(model_path)
    written = onnx_export.to_onnx(model, out, input_type, inputs=[model_path])
    result = {"model": str(model_path), "onnx": str(written), "sizes": list(model.sizes),
              "input_type": input_type, "opset": onnx_export.OPSET,
              "ir_version": onnx_export.IR_VERSION, "bytes": written.stat().st_size}
    if as_json:
        print_json(result)
        return
    console.print(f"wrote [bold]{_safe(written)}[/]: {'-'.join(map(str, model.sizes))} network, "
                  f"input 'pixels' {input_type} [N, {model.sizes[0]}], outputs 'probabilities' and "
                  f"'label' (ONNX opset {onnx_export.OPSET})", highlight=False)


@app.command()
def bench(
    data_dir: DataDir = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer repeats and iterations "
                                        "(well under a minute).")] = False,
    threads: Annotated[int, typer.Option(help="Threads for every implementation "
                                         "(BLAS, PyTorch).")] = 1,
    as_json: Json = False,
) -> None:
    """Time digitnet against scikit-learn, PyTorch, onnxruntime and the original notebook."""
    from digitnet import bench as benchmark

    if threads < 1:
        fail(f"--threads {threads} is out of range; it must be at least 1")
    settings = (benchmark.BenchSettings.quick_settings(threads) if quick
                else benchmark.BenchSettings(threads=threads))
    with err_console.status("benchmarking") as status:
        result = benchmark.run(data_dir, settings, progress=lambda m: status.update(m))
    if as_json:
        print_json(result.to_dict())
        return
    _bench_tables(result)


def _bench_tables(result: BenchResult) -> None:
    """The benchmark's figures as Rich tables."""
    peers = {"digitnet": "digitnet", "digitnet_numpy": "digitnet (numpy)",
             "digitnet_reference": "digitnet (reference)", "sklearn": "scikit-learn",
             "torch": "PyTorch", "onnxruntime": "onnxruntime"}
    m = result.machine
    console.print(f"[bold]{m.cpu}[/], {m.cores} cores, {m.threads} thread(s); numpy "
                  f"{m.numpy} ({m.blas or '?'}), scikit-learn {m.sklearn}, torch {m.torch}, "
                  f"numba {m.numba or '-'}; digitnet backend {m.backend}"
                  + ("  [yellow](--quick)[/]" if result.quick else ""))
    if m.vector_features is not None:
        console.print(f"vector features: {' '.join(m.vector_features) or 'none'}",
                      highlight=False)
    epochs = Table(title="seconds per training epoch (60,000 images)")
    epochs.add_column("batch", justify="right")
    names = [name for name, _ in result.epoch_seconds[0].seconds.items()]
    for name in names:
        epochs.add_column(peers[name], justify="right")
    for row in result.epoch_seconds:
        epochs.add_row(str(row.batch), *(f"{value:.4f}" for _, value in row.seconds.items()))
    console.print(epochs)
    race = result.time_to_accuracy
    table = Table(title=f"seconds from scratch to a test accuracy (cap {race.cap_seconds:g} s;"
                  " evaluation not counted)")
    table.add_column("target", justify="right")
    racers = (race.digitnet, race.sklearn, race.torch)
    for name in ("digitnet", "sklearn", "torch"):
        table.add_column(peers[name], justify="right")
    for k, first in enumerate(race.digitnet.targets):
        cells = []
        for peer in racers:
            r = peer.targets[k]
            mark = "" if r.reached else " (not reached)"
            cells.append(f"{r.seconds:.2f} ({r.epochs} ep){mark}")
        table.add_row(f"{first.target:.0%}", *cells)
    console.print(table)
    seed = result.seed_preset
    table = Table(title=f"the seed preset: {seed.iterations} full-batch iterations")
    for column in ("", "seconds", "ms per iteration", "test accuracy"):
        table.add_column(column, justify="right")
    for label, run in (("digitnet", seed.digitnet), ("naive notebook", seed.naive)):
        table.add_row(label, f"{run.seconds:.2f}", f"{1000 * run.seconds_per_iteration:.1f}",
                      f"{run.test_accuracy:.2%}")
    console.print(table)
    inference = result.inference
    table = Table(title=f"inference on the {inference.images:,} test images")
    for column in ("", "images per second", "one image (µs)"):
        table.add_column(column, justify="right")
    single = dict(inference.single_image_seconds.items())
    for name, speed in inference.images_per_second.items():
        one = single.get(name)
        table.add_row(peers[name], f"{speed:,.0f}", "" if one is None else f"{1e6 * one:.1f}")
    console.print(table)
    floor = result.floor
    table = Table(title="the machine and memory")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("float32 matmul", f"{floor.matmul_gflops:.1f} GFLOP/s")
    table.add_row("array copy", f"{floor.copy_gb_per_s:.1f} GB/s")
    table.add_row("epoch floor: FLOPs / stream float32 inputs",
                  f"{floor.epoch_flop_floor_s:.4f} s / {floor.epoch_stream_floor_s:.4f} s")
    for memory in result.memory:
        table.add_row(f"peak RSS, default training ({memory.backend} backend)",
                      f"{memory.peak_rss_mib:.0f} MiB")
    console.print(table)
    ratios = Table(title="digitnet divided by the peer (times: lower is better; images/s: "
                   "higher is better)")
    ratios.add_column("ratio")
    ratios.add_column("value", justify="right")
    for name, value in result.ratios.to_dict().items():
        ratios.add_row(name, f"{value:.3f}")
    console.print(ratios)


from digitnet.cli_explain import explain as _explain  # noqa: E402  (needs app, defined above)

app.command(name="explain")(_explain)


def _one_line_warning(message: Warning | str, category: type[Warning], *args: Any,
                      **kwargs: Any) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


def main() -> None:
    """Entry point: run the app, turning digitnet's errors into one line and exit 1."""
    warnings.formatwarning = _one_line_warning
    streams.prepare_streams([console, err_console], lambda message: fail_now(message, 1))
    previous = signal.signal(signal.SIGTERM, streams.terminate)
    try:
        app()
    except DigitnetError as exc:
        fail_now(str(exc), 1)
    except KeyboardInterrupt:
        fail_now("interrupted (Ctrl-C)", 130)
    except streams.Terminated:
        fail_now("terminated (SIGTERM)", 143)
    except SystemExit as exc:
        _flush_stdout()
        raise SystemExit(exc.code) from None
    except OSError as exc:  # writing the output failed: a full disk, a closed pipe
        if not streams.stdout_failed(exc):
            raise
        _stdout_error(exc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _flush_stdout()


def fail_now(message: str, code: int) -> NoReturn:
    _print_error(message)
    sys.exit(code)


def _stdout_error(exc: OSError) -> NoReturn:
    streams.drop_stdout()
    fail_now(f"cannot write to standard output ({exc.strerror or exc}); the output is "
             "incomplete", 1)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:
        _stdout_error(exc)


if __name__ == "__main__":
    main()
