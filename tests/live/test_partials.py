"""Partial text by LocalAgreement-2: words go out once two consecutive hypotheses agree on them,
written as the newest writes them, never taken back, never repeated; a changed earlier word, a
merge or a hypothesis that shrinks sends nothing wrong."""

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.live.partials import Agreement, join_text, open_ending, split_words, word_key


def feed(hypotheses: List[str]) -> List[str]:
    agreement = Agreement()
    deltas = [agreement.update(hypothesis) for hypothesis in hypotheses]
    assert agreement.sent == "".join(deltas)
    return deltas


def test_words_go_out_once_two_hypotheses_agree():
    assert feed([
        " Hello",
        " Hello world",
        " Hello world, how are",
        " Hello world, how are you",
        " Hello world, how are you today?",
    ]) == ["", "Hello", " world,", " how are", " you"]


def test_the_last_word_waits_for_the_next_hypothesis():
    """"sto" (the audio ended inside "store") is never sent; "store" only once confirmed."""
    assert feed([" I went to the sto", " I went to the store", " I went to the store."]) == \
        ["", "I went to the", " store."]


def test_agreement_ignores_case_and_punctuation_and_writes_the_newest_form():
    assert feed([" hello world, it is", " Hello, World. It is nice"]) == ["", "Hello, World. It is"]
    assert feed([" Dr. Smith's car", " dr smiths car is"]) == ["", "dr smiths car"]


def test_nothing_is_sent_until_there_is_agreement():
    assert feed([" The cat", " A cat sat", " The dog sat down"]) == ["", "", ""]
    assert feed(["", " ", " Yes"]) == ["", "", ""]


def test_a_changed_earlier_word_is_not_taken_back_nor_repeated():
    agreement = Agreement()
    assert agreement.update(" I went to") == ""
    assert agreement.update(" I went to the") == "I went to"
    # the model now hears "want": nothing sent is retracted, the words after follow on
    assert agreement.update(" I want to the store") == ""  # agrees with the one before on "I" only
    assert agreement.update(" I want to the store today") == " the store"
    assert agreement.sent == "I went to the store"
    assert not agreement.consistent


def test_a_changed_last_sent_word_is_a_substitution():
    assert feed([" It is two", " It is two o'clock", " It is to o'clock now", " It is to o'clock now."]) == \
        ["", "It is two", "", " o'clock now."]


def test_merged_and_split_words_are_placed_by_their_letters():
    assert feed([" See you to day", " See you to day at", " See you today at noon", " See you today at noon."]) == \
        ["", "See you to day", "", " at noon."]
    assert feed([" It is today", " It is today for", " It is to day for sure", " It is to day for sure!"]) == \
        ["", "It is today", "", " for sure!"]


def test_a_sent_word_that_grew_is_a_substitution():
    """"to" sent, the model now hears "today": the words after it follow on ("It is to for sure"):
    nothing is repeated, and the partials do not stop for the rest of the turn."""
    assert feed([" It is to", " It is to", " It is today for sure", " It is today for sure."]) == ["", "It is to", "", " for sure."]


def test_words_dropped_or_added_before_the_end_of_sent_text():
    assert feed([" I really went to", " I really went to the", " I went to the shop", " I went to the shop."]) == \
        ["", "I really went to", "", " the shop."]
    assert feed([" I went to", " I went to the", " I just went to the shop", " I just went to the shop."]) == \
        ["", "I went to", "", " the shop."]


def test_a_shrinking_hypothesis_sends_nothing_until_the_words_return():
    agreement = Agreement()
    deltas = [agreement.update(h) for h in [" one two three four", " one two three four five", " one two", " one two",
                                             " one two three four five six", " one two three four five six seven"]]
    assert deltas == ["", "one two three four", "", "", "", " five six"]


def test_unplaceable_sent_text_holds_back_new_words():
    """The sent words' end is nowhere in the new hypotheses, or held by one word only after a word
    dropped: sending more would guess (and might repeat)."""
    assert feed([" We met at noon", " We met at noon in", " Completely different words here", " Completely different words here ok"]) == \
        ["", "We met at noon", "", ""]
    assert feed([" the a", " the a", " a a", " a a", " a a b"]) == ["", "the a", "", "", ""]


def test_unspaced_scripts_agree_character_by_character():
    assert feed(["我们今天", "我们今天去公园", "我们今天去公园玩"]) == ["", "我们今天", "去公园"]
    assert split_words(" 東京に行く") == [" 東", "京", "に", "行", "く"]


def test_first_delta_has_no_leading_space_and_later_ones_have_theirs():
    agreement = Agreement()
    assert agreement.update("Yes") == ""
    assert agreement.update("Yes, I") == "Yes,"
    assert agreement.update("Yes, I do") == " I"
    assert agreement.sent == "Yes, I"


def test_finish_records_the_final_text_and_sends_nothing():
    agreement = Agreement()
    for hypothesis in [" The quick brown", " The quick brown fox"]:
        agreement.update(hypothesis)
    assert agreement.finish(" The quick brown fox jumps.") == ""
    assert agreement.final == " The quick brown fox jumps." and agreement.consistent
    assert agreement.sent == "The quick brown"
    agreement.reset()
    assert (agreement.sent, agreement.final) == ("", None)
    assert agreement.update(" New turn") == "" and agreement.update(" New turn here") == "New turn"


def test_words_and_keys():
    assert split_words(" Hello, world!  Ok") == [" Hello,", " world!", "  Ok"]
    assert "".join(split_words(" a  b c ")) == " a  b c"
    assert [word_key(word) for word in [" Hello,", "world!", " It's", " $5", " ...", " Ça"]] == ["hello", "world", "its", "$5", "", "ça"]


VOCABULARY = ["the", "a", "cat", "dog", "sat", "on", "mat", "Today", "today,", "to", "day", "store.", "Yes"]


@st.composite
def hypothesis_sequences(draw):
    """Hypotheses as a live turn makes them: each mostly the one before with words added, but with
    random edits: an earlier word changed, the tail dropped, case and punctuation changed."""
    words = draw(st.lists(st.sampled_from(VOCABULARY), max_size=3))
    out = []
    for _ in range(draw(st.integers(1, 12))):
        edit = draw(st.sampled_from(["grow", "grow", "grow", "same", "change", "cut", "case"]))
        if edit == "grow":
            words = words + draw(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=3))
        elif edit == "change" and words:
            words = list(words)
            words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(VOCABULARY))
        elif edit == "cut":
            words = words[:draw(st.integers(0, len(words)))]
        elif edit == "case":
            words = [word.upper() if draw(st.booleans()) else word.strip(".,") for word in words]
        out.append("".join(" " + word for word in words))
    return out


@settings(max_examples=500, deadline=None)
@given(hypothesis_sequences())
def test_any_sequence_sends_only_agreed_words_and_never_repeats(hypotheses):
    agreement, previous = Agreement(), []
    for hypothesis in hypotheses:
        before = agreement.sent
        delta = agreement.update(hypothesis)
        assert agreement.sent == before + delta  # appended, never changed
        assert not before or not delta or delta[0] == " "  # later deltas keep their word's space
        assert not delta.startswith(" ") or before  # the first has none
        keys = [word_key(word) for word in split_words(hypothesis)]
        sent = [word_key(word) for word in split_words(agreement.sent)]
        new = [word_key(word) for word in split_words(delta)]
        said = [word_key(word) for word in split_words(before)]
        if new:
            # the new words are a run that this hypothesis and the one before agree on, from the start ...
            # ... and they follow the sent text: word for word, or the same letters, or after its last two words
            assert any(keys[:at + len(new)] == previous[:at + len(new)] and keys[at:at + len(new)] == new
                       and (at == len(said) or "".join(keys[:at]) == "".join(said) or (keys[at - 2:at] == said[-2:] and len(said) >= 2))
                       for at in range(len(keys) - len(new) + 1))
        assert len(sent) == len(said) + len(new)
        previous = keys


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=30), st.lists(st.integers(1, 4), min_size=1, max_size=15))
def test_growing_hypotheses_send_exactly_their_words(words, steps):
    """Hypotheses that only ever add words: the deltas join to the words agreed so far, and the
    whole text once the last hypothesis is repeated."""
    agreement, count, text = Agreement(), 0, ""
    for step in steps + [len(words)]:
        count = min(len(words), count + step)
        text = "".join(" " + word for word in words[:count])
        agreement.update(text)
        assert text.lstrip().startswith(agreement.sent)
    agreement.update(text)
    assert agreement.sent == text.lstrip() and agreement.consistent


def test_pieces_of_a_turn_join_with_one_space_and_a_sentence_that_went_on_loses_its_full_stop():
    assert join_text("the art of making books.", "by means of movable types.") == "the art of making books by means of movable types."
    assert join_text(" occupied.", " Or cost incurred") == "occupied. Or cost incurred"  # a new sentence: kept
    assert join_text("Wait...", "and then") == "Wait... and then" and join_text("Why?", "because") == "Why? because"
    assert join_text("", " Hello", "  ", "world") == "Hello world" and join_text() == ""
    assert join_text("我们走吧。", "好的") == "我们走吧。好的" and join_text("東京", "Tokyo") == "東京Tokyo"
    assert join_text("hello", "好 ok") == "hello好 ok" and join_text("ok 好", "x") == "ok 好x"  # the characters that meet decide


def test_the_prompt_of_the_audio_that_follows_has_no_final_full_stop():
    assert open_ending("the art of making books.") == "the art of making books"
    assert open_ending("Wait...") == "Wait..." and open_ending("Why?") == "Why?" and open_ending("") == ""
