"""Layering of the audit: it stands above data and evaluation and imports nothing above itself.

Read from the source with ``ast`` (every import, including those inside functions), so a circle
such as ``experiment`` <-> audit fails here before anything runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fid_bench"


def _imports(path: Path) -> set[str]:
    """Every first-party module ``path`` imports (``from fid_bench import x`` counts as ``fid_bench.x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = parts[: len(parts) - node.level]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "fid_bench" or name.startswith("fid_bench.")}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _sources(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    assert files, f"no modules under {folder}"
    return files


def test_audit_imports_only_data_evaluation_and_errors() -> None:
    allowed = ("fid_bench.audit", "fid_bench.data", "fid_bench.evaluation", "fid_bench.errors")
    for path in _sources(PACKAGE / "audit"):
        imported = _imports(path)
        assert not {n for n in imported if _within(n, ("fid_bench.jobs.experiment", "fid_bench.commands"))}, (
            path
        )
        outside = {n for n in imported if n != "fid_bench" and not _within(n, allowed)}
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_data_layer_imports_nothing_above_it() -> None:
    # fid_bench.config sits beside data: OmegaConf helpers that import nothing of fid_bench but errors
    for path in _sources(PACKAGE / "data"):
        outside = {
            n
            for n in _imports(path)
            if not _within(n, ("fid_bench.data", "fid_bench.errors", "fid_bench.config"))
        }
        assert not outside, f"data/{path.name} imports {sorted(outside)}"


def test_only_the_job_top_and_commands_import_the_audit() -> None:
    users = {
        path.relative_to(PACKAGE).as_posix()
        for path in _sources(PACKAGE)
        if not path.is_relative_to(PACKAGE / "audit")
        and any(_within(n, ("fid_bench.audit",)) for n in _imports(path))
    }
    assert users == {"jobs/experiment.py", "jobs/job_spec.py", "commands/audit_command.py"}
