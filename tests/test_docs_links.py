"""The documentation stands alone: every link and reference in README.md, CHANGELOG.md,
docs/**/*.md and examples/*/README.md resolves inside the repository.

What is checked, outside fenced code blocks and inline code:

- inline links and images `[text](target)`, reference definitions `[ref]: target`,
  autolinks `<https://...>` and bare `http(s)://` URLs;
- a relative target must exist (a file or a folder) and stay inside the repository: no `../`
  past its root, no absolute path, no other scheme (`file:`, `mailto:`...);
- an anchor (`#section`, `page.md#section`) must be a heading of the target Markdown file under
  GitHub's rules (inline markup dropped, lowercase, every character but letters, digits, `_`,
  `-` and spaces dropped, spaces to `-`, `-1`, `-2`... for repeated headings) or an explicit
  `<a id="...">`; anchors into other files (GitHub's `#L10` line anchors) are refused, since a
  line number moves with every edit;
- external links go only to ALLOWED_HOSTS. Everything a user needs about rlsctl is in the
  repository (and so in the source distribution, which carries docs/): a reader with the wheel
  or a checkout and no network has it. The allow-list holds the home pages of outside tools the
  docs tell users to install and run, nothing about rlsctl itself.

Anywhere in those files, code blocks included: no reference to a specification that is not in
the repository (`shared/SPEC.md`, "SPEC s3"-style section citations, the word SPEC at all).
`test_no_spec_citations_in_code` keeps the citations out of the package, templates, policy
files, tests, examples and benchmarks too, migrations' up scripts excepted: their bytes are
checksummed into `rlsctl.applied_phase` of every database that applied them
(docs/migrations.md), so editing a comment there would make `rlsctl migrate` refuse those
databases.

`test_the_checker_finds_what_it_must` runs the checker on bad and good examples, so this file
cannot go green by checking nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.conftest import ROOT

ALLOWED_HOSTS = frozenset({"pgtap.org"})  # docs/pgtap.md: the tool whose `pg_prove` runs the export

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto|file):[^>\s]+)>")
BARE_URL = re.compile(r"https?://[^\s)>\]\"'`]+")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*(?:\s#+\s*)?$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=\"([^\"]+)\"")
FORBIDDEN = (
    (re.compile(r"shared/SPEC|\.\./shared/"), "points at a file outside the repository"),
    (re.compile(r"\bSPEC\s+s\d+"), "cites a section of a specification that is not in the repository"),
    (re.compile(r"\bSPEC\b"), "names a specification that is not in the repository"),
)


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "examples").glob("*/README.md"))
    return files


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags go
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code blanked out."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1) == fence:
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
    return lines


def anchors(text: str) -> set[str]:
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: Counter[str] = Counter()
    fence: str | None = None
    for line in text.splitlines():
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1) == fence:
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def targets(line: str) -> list[str]:
    """Every link target of one prose line."""
    found = [m.group(1) for m in INLINE_LINK.finditer(line)]
    rest = INLINE_LINK.sub(" ", line)
    definition = REFERENCE_DEFINITION.match(rest)
    if definition:
        found.append(definition.group(1))
        rest = rest[: definition.start(1)] + " " * len(definition.group(1)) + rest[definition.end(1) :]
    found += AUTOLINK.findall(rest)
    found += [url.rstrip(".,;:!?") for url in BARE_URL.findall(AUTOLINK.sub(" ", rest))]
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in found]


def check_target(source: Path, text: str, target: str) -> str | None:
    """Why a link from `source` (whose text is `text`) to `target` does not resolve inside the
    repository, or None."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        if parts.hostname not in ALLOWED_HOSTS:
            return f"external link to {parts.hostname} (allowed: {', '.join(sorted(ALLOWED_HOSTS))})"
        return None
    if parts.scheme or target.startswith("//"):
        return "not a link into the repository"
    path, _, anchor = target.partition("#")
    path = unquote(path.split("?", 1)[0])
    if path.startswith("/"):
        return "an absolute path"
    if not path:  # an anchor of the same page
        return None if anchor in anchors(text) else f"no heading #{anchor} on this page"
    resolved = (source.parent / path).resolve()
    if not resolved.is_relative_to(ROOT.resolve()):
        return "leaves the repository"
    if not resolved.exists():
        return "no such file or folder"
    if anchor:
        if resolved.suffix != ".md" or not resolved.is_file():
            return "an anchor into a file that is not Markdown"
        if anchor not in anchors(resolved.read_text()):
            return f"no heading #{anchor} in {resolved.relative_to(ROOT.resolve())}"
    return None


def check_markdown(source: Path, text: str) -> list[str]:
    """Every problem of one Markdown text, as `file:line: target: why`."""
    name = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    problems: list[str] = []
    for number, line in prose(text):
        for target in targets(line):
            why = check_target(source, text, target)
            if why:
                problems.append(f"{name}:{number}: {target}: {why}")
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in FORBIDDEN:
            found = pattern.search(line)
            if found:
                problems.append(f"{name}:{number}: {found.group(0)!r} {why}")
                break
    return problems


def test_every_link_and_reference_in_the_docs_stays_in_the_repository():
    files = markdown_files()
    assert ROOT / "docs" / "upgrading.md" in files and all(f.exists() for f in files)
    problems = [problem for path in files for problem in check_markdown(path, path.read_text())]
    assert not problems, "\n".join(problems)


def test_no_spec_citations_in_code():
    """The package, templates, policy files, tests, examples and benchmarks point to docs/, not to
    a specification outside the repository (migrations' up scripts excepted: see the docstring)."""
    suffixes = {".py", ".sql", ".j2", ".yaml", ".yml", ".md", ".toml", ".txt", ".cfg"}
    roots = ["rlsctl", "templates", "policies", "tests", "examples", "benchmarks", "expectations"]
    problems = []
    for root in roots:
        for path in sorted((ROOT / root).rglob("*")):
            if path.suffix not in suffixes or not path.is_file() or path == Path(__file__).resolve():
                continue
            if "migrations" in path.relative_to(ROOT).parts and path.name.endswith(".up.sql"):
                continue  # checksummed into every database that applied it
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if FORBIDDEN[2][0].search(line) or FORBIDDEN[0][0].search(line):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    for path in (ROOT / "Makefile", ROOT / "pyproject.toml"):
        problems += [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                     if FORBIDDEN[2][0].search(line)]  # fmt: skip
    assert not problems, "cite docs/ instead:\n" + "\n".join(problems)


def test_the_checker_finds_what_it_must():
    source = ROOT / "docs" / "selftest.md"  # a page that would sit beside the others
    bad = "\n".join(
        [
            "See [the matrix](access-matrix.md#no-such-section) and [a page](no-such-page.md).",  # 1, 2
            "The spec is in [SPEC](../../shared/SPEC.md); SPEC s4 says so.",  # 3: escape, 4: citation
            "Read <https://example.com/rlsctl> or https://example.org/docs, or [mail](mailto:a@b.c).",  # 5, 6, 7
            "[ref]: /etc/passwd",  # 8: absolute
            "An anchor into code: [apply](../rlsctl/change/apply.py#L10).",  # 9
            "Same page, wrong anchor: [here](#nowhere).",  # 10
        ]
    )
    problems = check_markdown(source, bad)
    expected = [
        "access-matrix.md#no-such-section: no heading #no-such-section",
        "no-such-page.md: no such file",
        "../../shared/SPEC.md: leaves the repository",
        "'../shared/' points at a file outside the repository",
        "https://example.com/rlsctl: external link to example.com",
        "https://example.org/docs: external link to example.org",
        "mailto:a@b.c: not a link into the repository",
        "/etc/passwd: an absolute path",
        "../rlsctl/change/apply.py#L10: an anchor into a file that is not Markdown",
        "#nowhere: no heading #nowhere",
    ]
    for fragment in expected:
        assert any(fragment in problem for problem in problems), (fragment, problems)
    citation = check_markdown(source, "As SPEC s3 says.")
    assert citation and "cites a section" in citation[0], citation

    good = "\n".join(
        [
            "# Self test",
            "The [roles](access-matrix.md#roles), [guarantees](threat-model.md#guarantees),",
            "[migrate](cli.md#rlsctl-migrate), [this page](#self-test), [the README](../README.md),",
            "[examples](../examples/orgs) and [pgTAP](https://pgtap.org). `[not a link](nowhere.md)`",
            "```",
            "[also not a link](nowhere.md) https://example.com",
            "```",
        ]
    )
    assert check_markdown(source, good) == []


def test_slugs_follow_github():
    assert slug("`rlsctl migrate [--to N]`") == "rlsctl-migrate---to-n"
    assert slug("Attacks tried, and how each is stopped") == "attacks-tried-and-how-each-is-stopped"
    assert slug("Rotation, backfill and decryption: `rlsctl keys`") == "rotation-backfill-and-decryption-rlsctl-keys"
    assert slug("`api_keys`") == "api_keys"
    assert anchors("# A\n## A\n```\n# A\n```\n### A\n") == {"a", "a-1", "a-2"}
