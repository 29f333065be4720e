"""Storage faults for the subprocess tests of ``tests/test_edges.py`` (on ``PYTHONPATH`` only there).

With ``FID_BENCH_FAULT_ROOT`` set, every write below that folder fails the way the operating system
fails it: ``FID_BENCH_FAULT=readonly`` as a read-only folder (EROFS on creating, opening for
writing, renaming, removing), ``full`` as a full disk (files may be created, but a file takes at most
``FID_BENCH_FAULT_BYTES`` bytes, default 64, before ENOSPC). Tests run as root, so permissions alone
cannot make a folder read-only, and filling a real disk is not an option.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sqlite3

_ROOT = os.environ.get("FID_BENCH_FAULT_ROOT")


def _below(path: object) -> bool:
    if isinstance(path, int):
        return False  # a file descriptor
    try:
        full = os.path.abspath(os.fsdecode(os.fspath(path)))
    except TypeError:
        return False
    return full == _ROOT or full.startswith(_ROOT + os.sep)


def _error(path: object, code: int) -> OSError:
    return OSError(code, os.strerror(code), os.fsdecode(os.fspath(path)))


class _FullDiskFile:
    """A writable file that takes ``budget`` bytes and then fails with ENOSPC (what a full disk does)."""

    def __init__(self, raw: io.IOBase, path: object, budget: int) -> None:
        self._raw, self._path, self._left = raw, path, budget

    def write(self, data):  # noqa: ANN001, ANN201 - the file protocol
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if size > self._left:
            self._raw.write(data[: self._left])
            self._left = 0
            raise _error(self._path, errno.ENOSPC)
        self._left -= size
        return self._raw.write(data)

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._raw, name)


def _install(kind: str, budget: int) -> None:
    real_open, real_os_open = builtins.open, os.open
    real = {name: getattr(os, name) for name in ("mkdir", "replace", "rename", "unlink", "remove", "rmdir")}
    real_connect = sqlite3.connect

    def writes(mode: str) -> bool:
        return any(c in mode for c in "wax+")

    def fake_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if _below(file) and writes(mode):
            if kind == "readonly":
                raise _error(file, errno.EROFS)
            return _FullDiskFile(real_open(file, mode, *args, **kwargs), file, budget)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN202
        if kind == "readonly" and _below(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise _error(path, errno.EROFS)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(name: str):  # noqa: ANN202
        def fake(*paths, **kwargs):  # noqa: ANN002, ANN003, ANN202
            hit = next((p for p in paths[:2] if _below(p)), None)
            if hit is not None and kind == "readonly":
                raise _error(hit, errno.EROFS)
            return real[name](*paths, **kwargs)

        return fake

    def fake_connect(database, *args, **kwargs):  # noqa: ANN001, ANN202
        if _below(database):
            raise sqlite3.OperationalError(
                "unable to open database file" if kind == "readonly" else "database or disk is full"
            )
        return real_connect(database, *args, **kwargs)

    builtins.open = io.open = fake_open
    os.open = fake_os_open
    for name in real:
        setattr(os, name, guard(name))
    sqlite3.connect = fake_connect


if _ROOT:
    _ROOT = os.path.abspath(_ROOT)
    _install(
        os.environ.get("FID_BENCH_FAULT", "readonly"), int(os.environ.get("FID_BENCH_FAULT_BYTES", "64"))
    )
