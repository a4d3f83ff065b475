"""The one packaged language table (worker/languages.json) is faster-whisper's, code for code and
in the tokenizer's order: a language the tokenizer has no token for cannot be accepted, and one it
has cannot be refused."""

from faster_whisper.tokenizer import _LANGUAGE_CODES

from worker.languages import LANGUAGE_CODES, LANGUAGE_NAMES, language_name


def test_the_codes_are_faster_whispers_in_its_order():
    assert list(LANGUAGE_NAMES) == list(_LANGUAGE_CODES)
    assert LANGUAGE_CODES == frozenset(_LANGUAGE_CODES)


def test_every_code_has_a_lowercase_english_name():
    assert all(name and name == name.lower() and name.strip() == name for name in LANGUAGE_NAMES.values())
    assert language_name("en") == "english" and language_name("yue") == "cantonese"
    assert language_name("xx") == "xx"
