"""The README documents what the code declares: the request table follows the schema."""

import re
from pathlib import Path

from worker.request import TranscriptionRequest


def test_readme_request_table_names_every_request_field_and_only_those():
    """Request options are declared once, in the schema; the README's table must follow it."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Request", 1)[1].split("\n## ", 1)[0]
    table = next(block for block in section.split("\n\n") if block.startswith("| field"))
    named = {name for line in table.splitlines()[2:] for name in re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])}
    assert named == set(TranscriptionRequest.model_fields)
