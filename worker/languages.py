"""The languages Whisper knows, declared once in languages.json (code -> Whisper's own English
name, in the tokenizer's order): the request checks codes against it, OpenAI's verbose_json names
the language from it. tests/test_languages.py pins the codes to faster-whisper's tokenizer."""

from __future__ import annotations

import json
from importlib import resources
from typing import Dict, Optional

LANGUAGE_NAMES: Dict[str, str] = json.loads(resources.files("worker").joinpath("languages.json").read_text(encoding="utf-8"))
LANGUAGE_CODES = frozenset(LANGUAGE_NAMES)


def language_name(code: Optional[str]) -> Optional[str]:
    """OpenAI's verbose_json names the language ("english"), as Whisper's own table does; a code
    outside the table is given back as it is."""
    return LANGUAGE_NAMES.get(code, code)
