"""Atomic file writes (kept for existing imports; the code lives in :mod:`digitnet.guard`)."""

from __future__ import annotations

import os  # noqa: F401  - tests patch os functions through this module

from digitnet.guard import atomic_write_bytes

__all__ = ["atomic_write_bytes"]
