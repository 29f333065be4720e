"""The one home of error formatting: ``one_line`` and ``first_line``."""

from __future__ import annotations

from fid_bench.errors import FidBenchError, UsageError, first_line, one_line


def test_one_line_collapses_whitespace_and_names_an_empty_error() -> None:
    assert one_line(ValueError("bad\n  value\tthere")) == "bad value there"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(FidBenchError("x Config search path: long list")) == "x"
    assert one_line(ValueError("abcdefghij"), limit=6) == "abc..."


def test_first_line_keeps_the_type_and_the_first_line_only() -> None:
    assert first_line(RuntimeError("server said no\n<html>...</html>")) == "RuntimeError: server said no"
    assert first_line(OSError()) == "OSError"


def test_usage_errors_exit_2() -> None:
    assert UsageError("x").exit_code == 2 and isinstance(UsageError("x"), FidBenchError)
