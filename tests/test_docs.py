"""The README documents what the code declares: the request table follows the schema (names,
bounds, defaults, and which options are sequential-only)."""

import re
from pathlib import Path

import pytest

from worker.request.schema import SEQUENTIAL_ONLY, TranscriptionRequest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
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
