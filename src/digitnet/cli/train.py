"""Commands: ``data`` (find and describe a dataset) and ``train``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from digitnet.cli.base import (
    DataDir,
    Json,
    RichDownloadBar,
    app,
    console,
    err_console,
    fail,
    print_error,
    print_json,
)
from digitnet.cli.streams import shown
from digitnet.errors import DigitnetError


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
        from digitnet.cli.terminal import history_table

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
            print_error("stopped at once by a second signal; no checkpoint written")
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
