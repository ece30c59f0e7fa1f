"""``python -m digitnet.cli``: the ``digitnet`` command."""

from digitnet.cli import main

main()
