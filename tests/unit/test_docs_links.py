"""Every relative link in the repository's Markdown resolves inside the repository.

For each Markdown file (tracked or new, not ignored; never under .venv) every inline
link or image `[text](target)` and every reference definition `[id]: target` outside
code (fenced blocks and `inline code`) is checked: a relative target must name a file
or directory that exists inside the repository, and a `#anchor` into a Markdown file
(or the file itself) must match a heading's GitHub-style slug there. Absolute paths
and `file:` URLs are refused, and so is a relative path that climbs out of the
repository. Web links (http, https, mailto) are not followed.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".venv", ".git", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
WEB_SCHEMES = ("http://", "https://", "mailto:")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+[^)]*)?\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def markdown_files(root: Path = REPO) -> list[Path]:
    """Tracked and untracked-but-not-ignored *.md files; a directory walk without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
        paths = [root / n for n in names]
    except (OSError, subprocess.CalledProcessError):
        paths = list(root.rglob("*.md"))
    return sorted(
        p for p in paths if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(root).parts)
    )


def _outside_fences(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
        else:
            lines.append((number, line))
    return lines


def links_in(path: Path) -> list[Link]:
    found: list[Link] = []
    for number, text in _outside_fences(path.read_text(encoding="utf-8")):
        line = _INLINE_CODE.sub(lambda c: " " * len(c.group(0)), text)
        targets = [m.group(1) for m in _INLINE_LINK.finditer(line)]
        ref = _REF_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        for target in targets:
            found.append(Link(path, number, target.strip("<>")))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "")
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """Every heading slug of a Markdown file (repeats get -1, -2, ... as on GitHub)."""
    seen: Counter[str] = Counter()
    anchors: set[str] = set()
    text = path.read_text(encoding="utf-8")
    for _, line in _outside_fences(text):
        m = _HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            anchors.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
            seen[slug] += 1
        anchors.update(a.lower() for a in _HTML_ANCHOR.findall(line))
    return anchors


def problem(link: Link, root: Path = REPO) -> str | None:
    """Why a link does not resolve inside the repository, or None when it does."""
    target = link.target
    lowered = target.lower()
    if lowered.startswith(WEB_SCHEMES):
        return None
    if (
        lowered.startswith("file:")
        or target.startswith(("/", "\\"))
        or re.match(r"^[a-zA-Z]:[\\/]", target)
    ):
        return "absolute link: use a path relative to the file"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return f"unexpected scheme in {target!r}"
    raw_path, _, anchor = target.partition("#")
    raw_path = unquote(raw_path.split("?", 1)[0])
    resolved = (link.source.parent / raw_path).resolve() if raw_path else link.source
    try:
        resolved.relative_to(root.resolve())
    except ValueError:
        return f"{raw_path!r} is outside the repository"
    if not resolved.exists():
        return f"{raw_path!r} does not exist"
    is_markdown = resolved.is_file() and resolved.suffix.lower() == ".md"
    if anchor and is_markdown and unquote(anchor).lower() not in anchors_of(resolved):
        return f"no heading with the anchor #{anchor} in {resolved.relative_to(root)}"
    return None


def test_the_markdown_files_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in markdown_files()}
    assert {"README.md", "SECURITY.md", "bench/README.md"} <= names
    assert any(n.startswith("docs/") for n in names)
    assert not any(".venv" in Path(n).parts for n in names)


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = [
        f"{link.source.relative_to(REPO)}:{link.line}: ({link.target}) {why}"
        for path in markdown_files()
        for link in links_in(path)
        if (why := problem(link)) is not None
    ]
    assert not broken, "broken Markdown links:\n" + "\n".join(broken)


def test_the_readme_links_its_docs_and_nothing_outside() -> None:
    links = links_in(REPO / "README.md")
    assert any(link.target.startswith("docs/") for link in links)
    assert all(problem(link) is None for link in links)


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A page\n\n## `bench.rules`: the engine's costs\n\n## Again\n\n## Again\n",
        encoding="utf-8",
    )
    page = tmp_path / "README.md"
    page.write_text(
        "See [a](docs/a.md#benchrules-the-engines-costs), [b](docs/a.md#again-1),\n"
        "[c](docs/missing.md), [d](../shared/DESIGN.md), [e](/etc/passwd),\n"
        "[f](docs/a.md#nope), ![g](docs/), [h](https://example.org/x.md),\n"
        "`[not a link](nowhere.md)`, [i](#top)\n\n"
        "```\n[also not](nowhere.md)\n```\n\n"
        "[ref]: docs/gone.md\n\n# Top\n",
        encoding="utf-8",
    )
    verdicts = {link.target: problem(link, tmp_path) for link in links_in(page)}
    assert set(verdicts) == {
        "docs/a.md#benchrules-the-engines-costs",
        "docs/a.md#again-1",
        "docs/missing.md",
        "../shared/DESIGN.md",
        "/etc/passwd",
        "docs/a.md#nope",
        "docs/",
        "https://example.org/x.md",
        "#top",
        "docs/gone.md",
    }
    ok = {t for t, why in verdicts.items() if why is None}
    assert ok == {
        "docs/a.md#benchrules-the-engines-costs",
        "docs/a.md#again-1",
        "docs/",
        "https://example.org/x.md",
        "#top",
    }
    assert "outside the repository" in (verdicts["../shared/DESIGN.md"] or "")
    assert "absolute" in (verdicts["/etc/passwd"] or "")


def test_github_slugs() -> None:
    assert github_slug("Two commands") == "two-commands"
    assert github_slug("The demo with `--keep`") == "the-demo-with---keep"
    assert (
        github_slug("`bench.ingest`: ingest readings/s, beside the machine's ceilings")
        == "benchingest-ingest-readingss-beside-the-machines-ceilings"
    )
    assert github_slug("Operations center (Grafana)") == "operations-center-grafana"
    assert github_slug("snake_case_name") == "snake_case_name"
