"""Temporary directories that sandboxed app uids can traverse.

Not under pytest's tmp_path: the app uid must traverse into every dir bound into its sandbox,
and any pytest session starting meanwhile on the host resets /tmp/pytest-of-<user> to 0700.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def app_readable_dir(prefix: str = "minipaas-test-") -> Path:
    """A new empty directory under /tmp, mode 0755; the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@contextmanager
def app_readable_tmp(prefix: str = "minipaas-test-") -> Iterator[Path]:
    """`app_readable_dir`, removed with everything in it afterwards."""
    path = app_readable_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
