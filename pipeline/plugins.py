"""Plugin modules named in ``$MMFEAT_PLUGINS`` (comma-separated): imported in every process that looks up an
extractor or a head kind, so that third-party ones are known to Dask and Prefect workers too."""
from __future__ import annotations

import importlib
import os

from .errors import MmfeatError


def load_plugins() -> None:
    """Import each plugin module once (Python caches them); a missing one is one line, a plugin that fails
    to import something itself shows its own traceback."""
    for module in [m.strip() for m in os.environ.get("MMFEAT_PLUGINS", "").split(",") if m.strip()]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module.split(".")[0] and exc.name != module:
                raise  # the plugin itself failed to import something: its bug, shown whole
            raise MmfeatError(f"MMFEAT_PLUGINS names {module!r}, which is not importable here "
                              "(install it or put its folder on PYTHONPATH)") from None
