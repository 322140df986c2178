"""Scratch folders for benchmark runs, removed when the run ends (a benchmark's stores and copies run
to gigabytes; left in /tmp they fill the disk that the next install and CI need).
MMFEAT_KEEP_SCRATCH=1 keeps them for inspection."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def scratch_dir(prefix: str = "mmfeat-bench-") -> str:
    """A new empty folder, deleted at interpreter exit unless MMFEAT_KEEP_SCRATCH=1."""
    path = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("MMFEAT_KEEP_SCRATCH") != "1":
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
