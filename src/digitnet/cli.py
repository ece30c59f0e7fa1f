"""The ``digitnet`` command: thin Typer commands over the library.

Commands parse options, call the modules and decide what a person sees (Rich) or what a
program reads (``--json`` on stdout). Errors digitnet raises on purpose become one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from digitnet import __version__
from digitnet.errors import DigitnetError

app = typer.Typer(
    name="digitnet",
    help="The classic 784-10-10 MNIST network, from scratch in NumPy.",
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
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


class RichDownloadBar:
    """The progress object pooch's downloader expects, drawn with Rich on stderr."""

    def __init__(self) -> None:
        from rich.progress import Progress

        self.total = 0
        self._progress = Progress(console=err_console, transient=True)
        self._task = None

    def update(self, n: int) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("downloading", total=self.total or None)
        self._progress.update(self._task, advance=n, total=self.total or None)

    def reset(self) -> None:
        if self._task is not None:
            self._progress.reset(self._task)

    def close(self) -> None:
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
    sources, balance = {}, {}
    for split in datasets.SPLITS:
        images, labels, files = datasets.load_split(
            dataset, split, data_dir, download, progressbar=RichDownloadBar())
        report[split] = len(images)
        sources[split] = {"source": files.source, "folder": str(files.images.parent),
                          "files": [str(files.images), str(files.labels)]}
        balance[split] = datasets.class_balance(labels)
    report["source"] = sources["train"]["source"]
    report["folder"] = sources["train"]["folder"]
    report["verified"] = True
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


def main() -> None:
    """Entry point: run the app, turning digitnet's errors into one line and exit 1."""
    try:
        app()
    except DigitnetError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
