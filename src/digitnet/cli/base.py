"""The ``digitnet`` command's shared parts: the app, the consoles, one-line errors, JSON out.

Commands live beside this module, one module per group: :mod:`.train` (data, train),
:mod:`.models` (evaluate, predict, info, robustness, gradcheck), :mod:`.apps` (report, serve,
export, bench), :mod:`.explain` and :mod:`.sweep`. Errors digitnet raises on purpose become one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x parses with its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:
    from click.exceptions import UsageError  # type: ignore[assignment]

from digitnet._version import __version__
from digitnet.cli import streams
from digitnet.cli.streams import shown
from digitnet.errors import DigitnetError


class _Group(TyperGroup):
    """Turns the errors digitnet raises on purpose into one line on stderr and exit 1, and
    lists the commands in the order a newcomer uses them."""

    ORDER = ("data", "train", "evaluate", "predict", "explain", "info", "robustness",
             "gradcheck", "report", "serve", "sweep", "export", "bench")

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        known = [name for name in self.ORDER if name in names]
        return known + [name for name in names if name not in known]

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DigitnetError as exc:
            fail(str(exc))
        except UsageError as exc:  # a command's options: one line too, and exit 2 as click does
            fail(usage_line(exc), code=2)
        except KeyboardInterrupt:
            print_error("interrupted (Ctrl-C)")
            raise typer.Exit(130) from None
        except streams.Terminated:
            print_error("terminated (SIGTERM)")
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
    print_error(message)
    raise typer.Exit(code)


def print_error(message: object) -> None:
    # Text, not markup: a file name like "x[/]y.png" is shown as it is, not parsed as a tag;
    # control characters (from a file name or a file's content) are shown escaped, so the
    # message stays one line and cannot drive the terminal.
    err_console.print(Text.assemble(("error:", "bold red"), " ", shown(str(message))),
                      highlight=False, soft_wrap=True)


def safe(text: object) -> str:
    """Text from a file or a path, ready for Rich: control characters escaped, markup too."""
    return escape(shown(text))


def usage_line(exc: Exception) -> str:
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
    print_error(message)
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
