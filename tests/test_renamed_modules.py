"""Models logged before a module was renamed still load, and no file name serves two roles."""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
from collections import defaultdict

import pytest

from fid_bench.tracking.pyfunc import RENAMED_MODULES, load_pickle
from tests.conftest import REPO


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_MODULES.items()))
def test_a_pickle_naming_an_old_module_loads_from_the_new_one(old: str, new: str) -> None:
    module = importlib.import_module(new)
    cls = next(c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == new)
    # protocol 0 writes "c<module>\n<name>\n": the old path can be put back byte for byte
    data = pickle.dumps(cls, protocol=0).replace(f"{new}\n".encode(), f"{old}\n".encode())
    assert f"{old}\n".encode() in data
    assert load_pickle(io.BytesIO(data)) is cls


#: file names shared by modules of the same role: each track's detector
SAME_ROLE = {"__init__.py", "detector.py"}


def test_no_file_name_is_used_by_two_modules() -> None:
    places = defaultdict(list)
    for path in sorted((REPO / "fid_bench").rglob("*.py")):
        places[path.name].append(path.relative_to(REPO).as_posix())
    shared = {name: paths for name, paths in places.items() if len(paths) > 1 and name not in SAME_ROLE}
    assert shared == {}
    assert sorted(places["detector.py"]) == [
        "fid_bench/features_track/detector.py",
        "fid_bench/finetune/detector.py",
    ]
