"""One line instead of a traceback when fid_bench runs without its dependencies.

``python -m fid_bench`` or ``fid-bench`` started by a Python that lacks the packages ``make install``
puts into ``.venv`` (the system Python, a venv that was never activated) would otherwise end in
``ModuleNotFoundError: No module named 'hydra'``. The check only looks the packages up
(``importlib.util.find_spec``), it imports none of them.
"""

from __future__ import annotations

import importlib.util
import sys

#: the packages every entry point imports first (import name, distribution name)
REQUIRED = (("hydra", "hydra-core"), ("omegaconf", "omegaconf"), ("numpy", "numpy"), ("pandas", "pandas"))


def missing() -> list[str]:
    """The distributions of ``REQUIRED`` this interpreter cannot import."""
    return [dist for module, dist in REQUIRED if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module blocked in sys.modules
        return False


def require(entry: str) -> None:
    """Exit with one line naming ``make install`` when a required package is missing."""
    absent = missing()
    if absent:
        raise SystemExit(
            f"error: {entry} needs packages this Python ({sys.executable}) lacks: {', '.join(absent)}. "
            "Run `make install` in the checkout, then use `.venv/bin/fid-bench` and "
            "`.venv/bin/python -m fid_bench` (or `source .venv/bin/activate` first)."
        )
