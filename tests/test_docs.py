"""The README and docs/ document what the code declares: the README's request table follows the
schema (names, bounds, defaults, and which options are sequential-only), docs/design.md's layout
table follows the source tree, every link between the guides leads to a file and heading that
exist, and the figures the README quotes are the ones docs/results.md states."""

import re
from pathlib import Path

import pytest

from worker.request.schema import SEQUENTIAL_ONLY, TranscriptionRequest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
REQUEST = README.split("## Request", 1)[1].split("\n## ", 1)[0]


def request_rows():
    """(field names, type, default, meaning) for each row of the README's request table."""
    table = next(block for block in REQUEST.split("\n\n") if block.startswith("| field"))
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        yield re.findall(r"`([a-z_0-9]+)`", cells[0]), *cells[1:]


ROWS = list(request_rows())


def bound(name: str, kind: str):
    return next((getattr(fact, kind) for fact in TranscriptionRequest.model_fields[name].metadata if hasattr(fact, kind)), None)


def test_readme_request_table_names_every_request_field_and_only_those():
    """Request options are declared once, in the schema; the README's table must follow it."""
    named = {name for names, *_ in ROWS for name in names}
    assert named == set(TranscriptionRequest.model_fields)


@pytest.mark.parametrize("names, kind, default, meaning", ROWS, ids=[names[0] for names, *_ in ROWS])
def test_readme_request_row_states_the_schema_bounds_and_defaults(names, kind, default, meaning):
    """A row naming several fields gives one default for all or one each, in order."""
    for low, high in re.findall(r"int (\d+) ?(?:\.\.|-) ?(\d+)", kind):
        assert all((bound(name, "ge"), bound(name, "le")) == (int(low), int(high)) for name in names), kind
    for most in re.findall(r"(?:≤|up to) (\d+)", kind):
        assert all(bound(name, "max_length") == int(most) for name in names), kind
    defaults = default.replace("`", "").split(", ")
    for name, written in zip(names, defaults * len(names) if len(defaults) == 1 else defaults):
        value = TranscriptionRequest.model_fields[name].default
        if isinstance(value, bool):
            assert written == str(value).lower(), name
        elif isinstance(value, (int, float, str)):
            assert written == (f"{value:g}" if isinstance(value, float) else str(value)), name
    assert meaning.startswith("sequential") == any(name in SEQUENTIAL_ONLY for name in names), names


def test_readme_names_the_sequential_only_options():
    listed = re.search(r"Sequential-only options \(([^)]*)\)", REQUEST).group(1)
    assert set(re.findall(r"`([a-z_]+)`", listed)) == set(SEQUENTIAL_ONLY)


# --- The documentation under docs/ ---------------------------------------------------------------

DOCS = ROOT / "docs"
DESIGN = (DOCS / "design.md").read_text(encoding="utf-8")
# The top-level folders the layout table must describe beside worker/.
TOP_LEVEL = {"builder/", "benchmarks/", "tests/", "docs/", "scripts/", "examples/", "mutation/", ".runpod/"}


def layout_paths() -> list:
    """The path of each row of docs/design.md's layout table (its first cell, in backticks)."""
    section = DESIGN.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    table = next(block for block in section.split("\n\n") if block.startswith("| path"))
    return [re.match(r"\| `([^`]+)` \|", line).group(1) for line in table.splitlines()[2:]]


def worker_tree() -> list:
    """Every package (as `worker/x/`) and every module or data file of worker/ on disk."""
    found = ["worker/"]
    for path in sorted((ROOT / "worker").rglob("*")):
        if "__pycache__" in path.parts or path.name == "__init__.py" or path.suffix == ".pyc":
            continue
        relative = path.relative_to(ROOT).as_posix()
        if path.is_dir():
            if (path / "__init__.py").is_file():
                found.append(relative + "/")
        else:
            found.append(relative)
    return found


LAYOUT = layout_paths()


def test_layout_table_names_each_path_once_and_the_top_level_folders():
    assert len(LAYOUT) == len(set(LAYOUT)), [path for path in LAYOUT if LAYOUT.count(path) > 1]
    assert TOP_LEVEL <= set(LAYOUT), TOP_LEVEL - set(LAYOUT)


@pytest.mark.parametrize("path", LAYOUT)
def test_every_path_in_the_layout_table_exists(path):
    target = ROOT / path
    assert (target.is_dir() if path.endswith("/") else target.is_file()), f"docs/design.md names {path}, which is not in the tree"


@pytest.mark.parametrize("path", worker_tree())
def test_every_worker_module_and_package_is_in_the_layout_table(path):
    assert path in LAYOUT, f"{path} is missing from docs/design.md's layout table"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set:
    """Every heading's anchor (outside fenced code), with GitHub's -1, -2 ... for repeats."""
    seen, fenced = {}, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            anchor = github_anchor(line.lstrip("#"))
            seen[anchor] = seen.get(anchor, -1) + 1
            if seen[anchor]:
                anchor = f"{anchor}-{seen[anchor]}"
                seen[anchor] = 0
    return set(seen)


GUIDES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def relative_links():
    for page in GUIDES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):
                yield page.relative_to(ROOT).as_posix(), target


@pytest.mark.parametrize("page, target", list(relative_links()))
def test_links_in_the_readme_and_docs_lead_to_a_file_and_heading_that_exist(page, target):
    """Moving a section must move every link to it: a file, and a heading in it, that exist."""
    path, _, anchor = target.partition("#")
    file = (ROOT / page).parent / path if path else ROOT / page
    assert file.exists(), f"{page} links {target}: no such file"
    if anchor and file.suffix == ".md":
        assert anchor in anchors(file.read_text(encoding="utf-8")), f"{page} links {target}: no such heading"


def test_the_readme_figures_are_the_measured_ones():
    """The README quotes a few figures; each must be one docs/results.md states, so they cannot drift."""
    measured = README.split("\n## Measured", 1)[1].split("\n## ", 1)[0]
    results = (DOCS / "results.md").read_text(encoding="utf-8")
    for figure in re.findall(r"\d[\d,.]*\d|\d", measured):
        assert figure in results, figure


def named_paths():
    """Each repository path the README and docs/ name in backticks (`worker/...`, `tests/...`)."""
    for page in GUIDES:
        text = page.read_text(encoding="utf-8")
        pattern = r"`((?:worker|tests|benchmarks|builder|scripts|examples|mutation|docs|\.runpod|\.ci|\.github)/[\w./-]*)`"
        for path in sorted(set(re.findall(pattern, text))):
            yield page.relative_to(ROOT).as_posix(), path


@pytest.mark.parametrize("page, path", list(named_paths()))
def test_paths_the_readme_and_docs_name_exist(page, path):
    """A module or test moved or split must be renamed in the guides too."""
    assert (ROOT / path.rstrip("/")).exists(), f"{page} names {path}, which is not in the tree"
