"""README.md is the front page and docs/ holds the reference: every relative link between them
resolves (file and, for Markdown targets, heading anchor), README stays short, and it still shows the
test command CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
#: the front page stays a front page; the reference lives in docs/
README_MAX_LINES = 250
#: the docs pages the README's reference moved to, one per subject
REFERENCE = (
    "ARCHITECTURE.md",
    "COMPARISON.md",
    "CONFIGURATION.md",
    "DATA.md",
    "EVALUATION.md",
    "MODELS.md",
    "PERFORMANCE.md",
    "PREDICT.md",
    "SEARCH.md",
    "TRACKING.md",
)

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a shell block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    found = []
    for line in _prose(path.read_text(encoding="utf-8")):
        found += LINK.findall(INLINE_CODE.sub("", line))
    return found


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def test_slug_matches_github() -> None:
    assert slug("Fast CPU encoders: ONNX Runtime") == "fast-cpu-encoders-onnx-runtime"
    assert slug("Native resolution (`model.resize=native`, `model.crops`)") == (
        "native-resolution-modelresizenative-modelcrops"
    )
    assert slug("1. The demo, then leaderboard") == "1-the-demo-then-leaderboard"


def test_link_parser_sees_links_and_skips_code(tmp_path: Path) -> None:
    text = "see [a](docs/A.md#x) and ![img](p.png) `[not](code.md)`\n```\n[nor](block.md)\n# no\n```\n# H\n## H\n"
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    assert links(page) == ["docs/A.md#x", "p.png"]
    assert anchors(page) == {"h", "h-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if not _relative(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_readme_links_every_reference_page() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README) if _relative(t)}
    docs = REPO / "docs"
    missing = [p.name for p in sorted(docs.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"
    for name in REFERENCE:
        assert (docs / name).is_file(), name


def test_readme_shows_the_test_command_ci_runs() -> None:
    """.ci/run calls the test command written in README.md: both must name `make test`."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), ".ci/run no longer runs `make test`"
    assert re.search(r"^make test\b", README.read_text(encoding="utf-8"), re.M), "README.md lost `make test`"
