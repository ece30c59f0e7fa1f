"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Read once, at import: tests that unset DIGITNET_DATA for isolation must not hide the real data
# from the tests that ask for it.
_DIGITNET_DATA = os.environ.get("DIGITNET_DATA")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder that holds the real ``mnist/`` (``DIGITNET_DATA``); skips the test otherwise."""
    if not _DIGITNET_DATA:
        pytest.skip("real MNIST not available: set DIGITNET_DATA to a folder holding mnist/")
    root = Path(_DIGITNET_DATA).expanduser()
    if not (root / "mnist").is_dir():
        pytest.skip(f"real MNIST not available: DIGITNET_DATA={root} holds no mnist/ folder")
    return root
