"""RegexSegmenter: lossless, the paper's cuts, the token budget, merging; segment_and_tokenize."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graftlm.interfaces import Segmenter
from graftlm.segmenter import RegexSegmenter, SegmentedBatch, segment_and_tokenize, split_paragraph

# Texts rich in the characters the rules care about: cut punctuation, quotes, line breaks, spaces.
RULE_TEXT = st.text(alphabet=st.sampled_from(list("ab 你。，.,!?;:\"”’'…)\r\n\t😀é")), max_size=200)


def byte_len(text: str) -> int:
    return len(text.encode("utf-8"))


# -- losslessness ---------------------------------------------------------------------------------


@given(st.text())
def test_lossless_on_arbitrary_unicode(text):
    parts = RegexSegmenter().split(text)
    assert "".join(parts) == text


@given(st.text())
def test_no_empty_segment(text):
    assert all(parts for parts in RegexSegmenter(max_tokens=5).split(text))


@given(st.text(), st.integers(1, 40))
def test_lossless_with_small_byte_budget(text, max_tokens):
    assert "".join(RegexSegmenter(max_tokens=max_tokens).split(text)) == text


@given(st.text(), st.integers(4, 40), st.integers(1, 40))
def test_lossless_with_min_tokens(text, max_tokens, min_tokens):
    segmenter = RegexSegmenter(max_tokens=max_tokens, min_tokens=min(min_tokens, max_tokens))
    assert "".join(segmenter.split(text)) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300), st.integers(4, 30))
def test_lossless_with_gpt2_tokenizer(gpt2_tokenizer, text, max_tokens):
    parts = RegexSegmenter(max_tokens=max_tokens, min_tokens=3, tokenizer=gpt2_tokenizer).split(text)
    assert "".join(parts) == text


def test_empty_string_gives_no_segment():
    assert RegexSegmenter().split("") == []


def test_whitespace_only_is_one_segment():
    assert RegexSegmenter().split(" \t \n ") == [" \t \n "]


def test_text_without_punctuation_is_kept_whole():
    assert RegexSegmenter().split("no punctuation at all here") == ["no punctuation at all here"]


def test_trailing_text_after_last_punctuation_is_kept():
    assert RegexSegmenter().split("First. and then some") == ["First.", " and then some"]


# -- the default (semantic) rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("In 2023, the company sold 4,500 units for $12.99 each.",
         ["In 2023,", " the company sold 4,500 units for $12.99 each."]),
        ("Version 3.11.7 is out. See e.g. the docs.", ["Version 3.11.7 is out.", " See e.g. the docs."]),
        ("Use os.path.join() here. Done.", ["Use os.path.join() here.", " Done."]),
        ("See https://example.com/a.b?x=1,2 now. Then /usr/lib/python3.11/os.py is read.",
         ["See https://example.com/a.b?x=1,2 now.", " Then /usr/lib/python3.11/os.py is read."]),
        ("Mr. Smith and Dr. Jones met Prof. Lee, i.e. the team.", ["Mr. Smith and Dr. Jones met Prof. Lee,", " i.e. the team."]),
        ("He moved to the U.S. in May. The U.S. Navy", ["He moved to the U.S. in May.", " The U.S.", " Navy"]),
        ("Apples, pears, etc. are fruit. Buy some, etc. Then go.",
         ["Apples,", " pears,", " etc. are fruit.", " Buy some,", " etc.", " Then go."]),
        ("J. R. R. Tolkien wrote it. So did I. Yes.", ["J. R. R. Tolkien wrote it.", " So did I.", " Yes."]),
        ("Wait... what?! Really?? Yes!!!", ["Wait...", " what?!", " Really??", " Yes!!!"]),
        ('He said, "Hi." Then left.', ["He said,", ' "Hi."', " Then left."]),
        ("(see above.) next", ["(see above.)", " next"]),
        ("One: two; three", ["One:", " two;", " three"]),
        ("line one\nline two\n\n  Para two.", ["line one", "\nline two", "\n\n  Para two."]),
    ],
)
def test_semantic_cuts(text, expected):
    assert RegexSegmenter().split(text) == expected


def test_semantic_cuts_on_cjk():
    text = "你好，世界。“是的！”他说……然后"
    assert RegexSegmenter().split(text) == ["你好，", "世界。", "“是的！”", "他说……", "然后"]


def test_no_cut_inside_numbers_or_dotted_names_on_real_text(pydoc_paragraphs):
    import re

    text = "\n\n".join(pydoc_paragraphs[:200])
    parts = RegexSegmenter(max_tokens=10**9).split(text)
    for left, right in zip(parts, parts[1:]):
        assert not (re.search(r"\d[.,]$", left) and re.match(r"\d", right)), (left[-20:], right[:20])
        assert not (re.search(r"\w\.$", left) and re.match(r"[A-Za-z_]", right)), (left[-20:], right[:20])


@given(st.text())
def test_whitespace_at_a_cut_goes_to_the_following_segment(text):
    parts = RegexSegmenter(max_tokens=10**9).split(text)
    # no segment but the last ends in whitespace; the text's trailing whitespace stays with the last
    assert not any(part[-1].isspace() for part in parts[:-1])


def test_trailing_whitespace_stays_with_the_last_segment():
    assert RegexSegmenter().split("The cat sat. ") == ["The cat sat. "]
    assert RegexSegmenter().split("Ab. Cd.\n") == ["Ab.", " Cd.\n"]


def test_budget_split_cuts_before_whitespace():
    parts = RegexSegmenter(max_tokens=12).split("aaaa bbbb cccc dddd")
    assert "".join(parts) == "aaaa bbbb cccc dddd" and parts[0] == "aaaa bbbb" and parts[1].startswith(" ")


# -- the paper's cut rule (a named preset) --------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('He said, "Hi." Then left.', ["He said, ", '"Hi." ', "Then left."]),
        ("Wait... what?! Ok", ["Wait... ", "what?! ", "Ok"]),
        ("One: two; three", ["One: ", "two; ", "three"]),
        ("line one\nline two", ["line one\n", "line two"]),
        ("She left.\" He stayed.", ['She left." ', "He stayed."]),
        ('a "quoted". b', ['a "quoted". ', "b"]),
        ("(see above.) next", ["(see above.) ", "next"]),
        ("In 2023, the company sold 4,500 units for $12.99 each.",
         ["In 2023, ", "the company sold 4,", "500 units for $12.", "99 each."]),
    ],
)
def test_paper_cuts_on_english(text, expected):
    assert RegexSegmenter.paper().split(text) == expected


def test_paper_preset_is_the_paper_rule_and_whitespace():
    seg = RegexSegmenter.paper(max_tokens=32)
    assert (seg.rule, seg.whitespace, seg.max_tokens) == ("paper", "preceding", 32)
    assert RegexSegmenter(rule="paper").split("pi is 3.14") == ["pi is 3.", "14"]


def test_paper_cuts_on_cjk():
    text = "你好，世界。“是的！”他说……然后"
    assert RegexSegmenter.paper().split(text) == ["你好，", "世界。", "“是的！”", "他说……", "然后"]


def test_emoji_stay_whole_and_cuts_follow_punctuation():
    assert RegexSegmenter.paper().split("Hi 😀! Bye 👋🏽.") == ["Hi 😀! ", "Bye 👋🏽."]
    assert RegexSegmenter().split("Hi 😀! Bye 👋🏽.") == ["Hi 😀!", " Bye 👋🏽."]


def test_crlf_stays_whole():
    assert RegexSegmenter.paper().split("a\r\nb.\r\n\r\nc") == ["a\r\n", "b.\r\n\r\n", "c"]
    assert RegexSegmenter().split("a\r\nb.\r\n\r\nc") == ["a", "\r\nb.", "\r\n\r\nc"]


@given(st.text())
def test_paper_whitespace_after_a_cut_stays_with_preceding_segment(text):
    parts = RegexSegmenter.paper(max_tokens=10**9).split(text)
    assert not any(part[0].isspace() for part in parts[1:])


@given(st.text(), st.sampled_from(["semantic", "paper"]), st.sampled_from(["following", "preceding"]))
def test_lossless_for_every_rule_and_whitespace_mode(text, rule, whitespace):
    parts = RegexSegmenter(max_tokens=7, rule=rule, whitespace=whitespace).split(text)
    assert "".join(parts) == text and all(parts)


def test_opening_straight_quote_does_not_cut():
    assert RegexSegmenter.paper().split('say "yes') == ['say "yes']


def test_custom_pattern_replaces_the_rule():
    assert RegexSegmenter(pattern=r"\n", whitespace="preceding").split("a, b.\nc, d.") == ["a, b.\n", "c, d."]
    assert RegexSegmenter(pattern=r"\n").split("a, b.\nc, d.") == ["a, b.", "\nc, d."]


# -- token budget ---------------------------------------------------------------------------------


@given(st.text(), st.integers(4, 40))
def test_every_piece_within_byte_budget(text, max_tokens):
    assert all(byte_len(p) <= max_tokens for p in RegexSegmenter(max_tokens=max_tokens).split(text))


@given(RULE_TEXT, st.integers(1, 8), st.booleans())
def test_crlf_never_split(text, max_tokens, merge):
    parts = RegexSegmenter(max_tokens=max_tokens, min_tokens=1 if merge else None).split(text)
    assert not any(a.endswith("\r") and b.startswith("\n") for a, b in zip(parts, parts[1:]))


def test_run_on_sentence_of_10000_gpt2_tokens_fits_budget(gpt2_tokenizer):
    text = " ".join(f"word{i % 97}" for i in range(5000))  # ≈ 10,000 GPT-2 tokens, no punctuation
    assert len(gpt2_tokenizer(text)["input_ids"]) >= 10_000
    parts = RegexSegmenter(max_tokens=64, tokenizer=gpt2_tokenizer).split(text)
    counts = [len(gpt2_tokenizer(p)["input_ids"]) for p in parts]
    assert "".join(parts) == text and max(counts) <= 64


def test_run_on_without_whitespace_is_split_not_truncated():
    text = "x" * 10_000
    parts = RegexSegmenter(max_tokens=64).split(text)
    assert "".join(parts) == text and max(map(len, parts)) <= 64


def test_long_segment_split_prefers_whitespace():
    parts = RegexSegmenter(max_tokens=12).split("the quick brown fox jumps over the lazy dog again")
    assert all(part.startswith(" ") for part in parts[1:])


def test_emoji_never_split_inside_a_character():
    assert RegexSegmenter(max_tokens=5).split("😀" * 4) == ["😀"] * 4


def test_character_larger_than_budget_is_kept_whole():
    assert RegexSegmenter(max_tokens=1).split("aé") == ["a", "é"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300), st.integers(4, 30))
def test_every_piece_within_gpt2_budget(gpt2_tokenizer, text, max_tokens):
    parts = RegexSegmenter(max_tokens=max_tokens, tokenizer=gpt2_tokenizer).split(text)
    assert all(len(gpt2_tokenizer(p, add_special_tokens=False)["input_ids"]) <= max_tokens for p in parts)


class WordTokenizer:
    """A tokenizer with only the minimal HF call signature (no **kwargs): one token per word."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[7] * len(t.split()) for t in texts]}


def test_minimal_tokenizer_without_extra_keywords_is_supported():
    parts = RegexSegmenter(max_tokens=3, tokenizer=WordTokenizer()).split("a b c d e f g h")
    assert parts == ["a b c", " d e f", " g h"]


# -- min_tokens -----------------------------------------------------------------------------------


def test_min_tokens_merges_short_clauses():
    assert RegexSegmenter(min_tokens=8).split("A, b, c. Dee eee.") == ["A, b, c.", " Dee eee."]


def test_min_tokens_never_merges_across_paragraph_break():
    assert RegexSegmenter(min_tokens=20).split("A.\n\nB. C.") == ["A.", "\n\nB. C."]
    assert RegexSegmenter.paper(min_tokens=20).split("A.\n\nB. C.") == ["A.\n\n", "B. C."]


@given(st.text(), st.integers(4, 30), st.integers(1, 30))
def test_min_tokens_keeps_byte_budget(text, max_tokens, min_tokens):
    segmenter = RegexSegmenter(max_tokens=max_tokens, min_tokens=min(min_tokens, max_tokens))
    assert all(byte_len(p) <= max_tokens for p in segmenter.split(text))


def test_min_tokens_reduces_segment_count_on_real_text(gpt2_tokenizer, pydoc_paragraphs):
    text = "\n\n".join(pydoc_paragraphs[:60])
    plain = RegexSegmenter(tokenizer=gpt2_tokenizer).split(text)
    merged = RegexSegmenter(min_tokens=16, tokenizer=gpt2_tokenizer).split(text)
    assert "".join(merged) == text and len(merged) < 0.8 * len(plain)


def test_min_tokens_pieces_fit_gpt2_budget_on_real_text(gpt2_tokenizer, pydoc_paragraphs):
    text = "\n\n".join(pydoc_paragraphs[:60])
    merged = RegexSegmenter(max_tokens=32, min_tokens=16, tokenizer=gpt2_tokenizer).split(text)
    assert max(len(gpt2_tokenizer(p)["input_ids"]) for p in merged) <= 32


# -- arguments ------------------------------------------------------------------------------------


def test_is_a_segmenter():
    assert isinstance(RegexSegmenter(), Segmenter)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"max_tokens": 0}, ValueError),
        ({"max_tokens": 2.5}, TypeError),
        ({"max_tokens": 8, "min_tokens": 9}, ValueError),
        ({"min_tokens": 0}, ValueError),
        ({"pattern": "(unclosed"}, ValueError),
        ({"pattern": 3}, TypeError),
        ({"tokenizer": "gpt2"}, TypeError),
        ({"rule": "spacy"}, ValueError),
        ({"whitespace": "both"}, ValueError),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error):
    with pytest.raises(error):
        RegexSegmenter(**kwargs)


def test_non_str_text_is_rejected():
    with pytest.raises(TypeError, match="expects a str"):
        RegexSegmenter().split(b"bytes")


# -- segment_and_tokenize -------------------------------------------------------------------------


def test_batch_shapes(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo.", "A, bb, c."], byte_tokenizer)
    assert batch.input_ids.shape == (2, 3, 4) and batch.token_mask.shape == (2, 3, 4)


def test_batch_dtypes(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo."], byte_tokenizer)
    assert (batch.input_ids.dtype, batch.token_mask.dtype, batch.sentence_mask.dtype) == (
        torch.long,
        torch.bool,
        torch.bool,
    )


def test_sentence_mask_marks_real_segments(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo.", "A, bb, c."], byte_tokenizer)
    assert batch.sentence_mask.tolist() == [[True, True, False], [True, True, True]]


def test_token_mask_counts_tokens_of_each_segment(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo.", "A, bb, c."], byte_tokenizer)
    assert batch.token_mask.sum(-1).tolist() == [[3, 4, 0], [2, 4, 3]]


def test_padding_uses_pad_id(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo.", "A, bb, c."], byte_tokenizer, pad_token_id=7)
    assert bool((batch.input_ids[~batch.token_mask] == 7).all())


def round_trip(batch: SegmentedBatch, tokenizer) -> list[str]:
    texts = []
    for ids, mask in zip(batch.input_ids, batch.token_mask):
        texts.append("".join(tokenizer.decode(row[m].tolist()) for row, m in zip(ids, mask) if m.any()))
    return texts


def test_round_trip_with_byte_tokenizer(byte_tokenizer, pydoc_paragraphs):
    paragraphs = pydoc_paragraphs[:8]
    assert round_trip(segment_and_tokenize(paragraphs, byte_tokenizer), byte_tokenizer) == paragraphs


def test_round_trip_with_gpt2(gpt2_tokenizer, pydoc_paragraphs):
    paragraphs = pydoc_paragraphs[:8]
    batch = segment_and_tokenize(paragraphs, gpt2_tokenizer, pad_token_id=gpt2_tokenizer.eos_token_id)
    assert round_trip(batch, gpt2_tokenizer) == paragraphs


def test_segments_field_holds_the_split(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo."], byte_tokenizer)
    assert batch.segments == [["Hi.", " Yo."]]


def test_special_token_text_is_encoded_as_text(gpt2_tokenizer):
    batch = segment_and_tokenize(["a <|endoftext|> b."], gpt2_tokenizer, pad_token_id=0)
    assert gpt2_tokenizer.eos_token_id not in batch.input_ids[batch.token_mask].tolist()


class BosAddingTokenizer:
    """Adds bos even with add_special_tokens=False, like some HF tokenizers do."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __call__(self, texts, add_special_tokens=False, **_):
        return {"input_ids": [[1, *(3 + b for b in t.encode())] for t in texts]}


def test_bos_added_anyway_is_stripped():
    batch = segment_and_tokenize(["Hi."], BosAddingTokenizer())
    assert batch.input_ids[0, 0].tolist() == [3 + ord(c) for c in "Hi."]


def test_to_and_num_tokens(byte_tokenizer):
    batch = segment_and_tokenize(["Hi. Yo."], byte_tokenizer).to("cpu")
    assert batch.num_tokens == 7


def test_as_model_inputs(byte_tokenizer):
    inputs = segment_and_tokenize(["Hi. Yo."], byte_tokenizer).as_model_inputs()
    assert sorted(inputs) == ["input_ids", "sentence_mask", "token_mask"]


def test_custom_segmenter_is_used(byte_tokenizer):
    batch = segment_and_tokenize(["a, b. c"], byte_tokenizer, RegexSegmenter(pattern=r"\."))
    assert batch.segments == [["a, b.", " c"]]


@pytest.mark.parametrize(
    "paragraphs, error, message",
    [
        ([], ValueError, "empty"),
        ("Hi.", TypeError, "single str"),
        (["Hi.", 3], TypeError, "paragraph 1"),
        (["Hi.", ""], ValueError, "paragraph 1 is the empty string"),
    ],
)
def test_bad_paragraphs_are_rejected(byte_tokenizer, paragraphs, error, message):
    with pytest.raises(error, match=message):
        segment_and_tokenize(paragraphs, byte_tokenizer)


def test_too_many_sentences_says_how_to_split(byte_tokenizer):
    with pytest.raises(ValueError, match="split_paragraph"):
        segment_and_tokenize(["a. b. c."], byte_tokenizer, max_sentences=2)


def test_missing_pad_id_is_an_error(gpt2_tokenizer):
    with pytest.raises(ValueError, match="pad_token_id"):
        segment_and_tokenize(["Hi."], gpt2_tokenizer)


def test_zero_token_segment_is_named():
    with pytest.raises(ValueError, match="'   '"):
        segment_and_tokenize(["   "], WordTokenizer(), pad_token_id=0)


def test_split_paragraph_is_lossless():
    chunks = split_paragraph(["a. ", "b. ", "c. ", "d. ", "e."], 2)
    assert chunks == [["a. ", "b. "], ["c. ", "d. "], ["e."]]


def test_split_paragraph_rejects_bad_size():
    with pytest.raises(ValueError, match="max_sentences"):
        split_paragraph(["a."], 0)
