"""The import structure docs/ARCHITECTURE.md promises, read from the source with ``ast``.

Every import counts, wherever it sits (module top, inside a function, under ``TYPE_CHECKING``): a lazy
import is still an arrow between two modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "fid_bench"
#: modules every layer may import: they import nothing from fid_bench but errors
FOUNDATIONS = (
    "fid_bench.errors",
    "fid_bench.markdown",
    "fid_bench.evaluation.metric_registry",
    "fid_bench.tracking.kinds",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "conf" not in p.parts}


MODULES = _modules()


def _imports(name: str) -> Iterator[str]:
    """Every module ``name`` imports (first-party ones resolved to a module or package of fid_bench)."""
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module


def _first_party(name: str) -> set[str]:
    return {m for m in _imports(name) if m in MODULES and m != name and m != "fid_bench"}


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


GRAPH = {name: _first_party(name) for name in MODULES}


def test_the_graph_is_read() -> None:
    # a guard for the reader itself: known arrows are seen, including lazy ones
    assert "fid_bench.commands.predict_command" in GRAPH["fid_bench.cli"]
    assert "fid_bench.tracking.pyfunc" in GRAPH["fid_bench.predict"]  # imported inside a function
    assert "fid_bench.evaluation.metric_registry" in GRAPH["fid_bench.tracking.leaderboard"]


def test_nothing_imports_the_commands() -> None:
    offenders = {
        name: sorted(m for m in deps if _in(m, "fid_bench.commands", "fid_bench.cli"))
        for name, deps in GRAPH.items()
        if not _in(name, "fid_bench.commands", "fid_bench.cli")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # the data layer sits below everything but the foundations and the config
        ("fid_bench.data", ("fid_bench.contract", "fid_bench.evaluation", "fid_bench.features",
                            "fid_bench.backbones", "fid_bench.audit", "fid_bench.balance",
                            "fid_bench.features_track", "fid_bench.finetune", "fid_bench.tracking",
                            "fid_bench.predict", "fid_bench.submission", "fid_bench.jobs", "fid_bench.commands", "fid_bench.cli")),
        # a backbone builds a network and its preprocessing; it knows nothing of the tracks above it
        ("fid_bench.backbones", ("fid_bench.contract", "fid_bench.evaluation", "fid_bench.features",
                                 "fid_bench.features_track", "fid_bench.finetune", "fid_bench.tracking",
                                 "fid_bench.audit", "fid_bench.predict", "fid_bench.jobs", "fid_bench.commands", "fid_bench.cli")),
        ("fid_bench.audit", ("fid_bench.tracking", "fid_bench.predict", "fid_bench.jobs", "fid_bench.commands", "fid_bench.cli")),
        ("fid_bench.evaluation", ("fid_bench.audit", "fid_bench.tracking", "fid_bench.predict", "fid_bench.jobs", "fid_bench.commands", "fid_bench.cli")),
        # run queries and logging never reach up into inference, jobs, searches or commands
        ("fid_bench.tracking", ("fid_bench.predict", "fid_bench.submission", "fid_bench.jobs", "fid_bench.commands", "fid_bench.cli")),
        ("fid_bench.predict", ("fid_bench.jobs", "fid_bench.commands")),
        ("fid_bench.submission", ("fid_bench.tracking", "fid_bench.jobs", "fid_bench.commands")),
    ],
)  # fmt: skip
def test_no_arrow_runs_back_up(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = {
        name: sorted(m for m in deps if _in(m, *forbidden))
        for name, deps in GRAPH.items()
        if _in(name, package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_foundations_import_nothing_but_errors() -> None:
    for name in FOUNDATIONS:
        assert GRAPH[name] <= {"fid_bench.errors"}, name


def test_argparse_lives_in_the_commands_only() -> None:
    parsing = sorted(
        name
        for name in MODULES
        if "argparse" in set(_imports(name)) and not _in(name, "fid_bench.commands", "fid_bench.cli")
    )
    assert parsing == []


def test_no_import_circle() -> None:
    """Strongly connected components of the module graph (Tarjan): every one a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(component)

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert [sorted(c) for c in circles] == []


#: the one module that starts MLflow runs (``start_run``); every kind of run goes through it
RUN_FACTORY = "fid_bench.tracking.run_factory"


def test_runs_are_started_in_one_place() -> None:
    """``mlflow.start_run`` and ``MlflowClient.create_run`` are called by the run factory only, so
    every run gets its kind tag, name and parent the same way."""
    callers = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("start_run", "create_run")
            ):
                callers.add(name)
    assert RUN_FACTORY in callers  # the reader sees the factory's own calls
    assert callers == {RUN_FACTORY}


def _calls_in_order(func: ast.FunctionDef) -> list[str]:
    """The dotted names a function calls, in the order the code is written."""

    def name(node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{name(node.value)}.{node.attr}"
        return "?"

    calls = [n for n in ast.walk(func) if isinstance(n, ast.Call)]
    return [name(c.func) for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def test_a_job_reads_its_config_once_and_runs_in_stages() -> None:
    """``run_job`` hands ``cfg`` to ``JobSpec.of_config`` only, then calls one layer per stage in the
    order docs/ARCHITECTURE.md draws ("A job's config, read once"): nothing below the top reads the
    config, and the job returns to a higher layer only to open the run and to log."""
    tree = ast.parse((PACKAGE / "jobs" / "experiment.py").read_text())
    (run_job,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_job"]
    given_cfg = [
        c
        for c in ast.walk(run_job)
        if isinstance(c, ast.Call) and any(isinstance(a, ast.Name) and a.id == "cfg" for a in ast.walk(c))
    ]
    assert [ast.unparse(c.func) for c in given_cfg] == ["JobSpec.of_config"]
    stages = [
        "JobSpec.of_config",
        "tracked_run",
        "read_job_inputs",
        "audit_job",
        "log_job_inputs",
        "fit_and_score",
        "log_job_outcome",
    ]
    called = [c for c in _calls_in_order(run_job) if c in stages]
    assert called == stages
