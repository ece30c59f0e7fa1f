"""The ``digitnet`` command: thin Typer commands over the library.

Commands parse options, call the modules and decide what a person sees (Rich) or what a
program reads (``--json`` on stdout). Importing this package registers every command on
:data:`app`; :func:`main` is the entry point.
"""

from digitnet.cli import apps, models, train  # noqa: F401  (each registers its commands)
from digitnet.cli.base import app, main
from digitnet.cli.explain import explain
from digitnet.cli.sweep import sweep

app.command(name="explain")(explain)
app.command(name="sweep")(sweep)

__all__ = ["app", "main"]
