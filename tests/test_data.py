"""Corpus readers, held-out split and batching of graftlm.training."""

import json
import warnings

import pytest
import torch

from graftlm.tokenization import ByteTokenizer
from graftlm.training.batching import ExampleStream, TrainBatches, collate_sllm, heldout_examples
from graftlm.training.data import CorpusStats, is_heldout, read_corpus

PARAS = [f"Paragraph number {i}, which has a clause. And a second sentence! Then a third? Yes." for i in range(40)]


def _stream(kind="svae", **kw):
    return ExampleStream(kind, ByteTokenizer(), max_tokens=kw.pop("max_tokens", 24), max_sentences=kw.pop("max_sentences", 4))


def _batches(source, n, **kw):
    ds = TrainBatches(source, kw.pop("examples", _stream()), batch_size=kw.pop("batch_size", 4), pad_id=0,
                      shuffle_buffer=8, bucket_pool=2, **kw)
    it = iter(ds)
    return [next(it) for _ in range(n)]


def test_text_file_yields_blank_line_separated_paragraphs(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("first line\nsame paragraph\n\n\nsecond\n")
    assert list(read_corpus(p)) == ["first line\nsame paragraph", "second"]


def test_jsonl_reads_the_configured_field(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"content": "a"}) + "\n" + json.dumps({"text": "b", "content": "c"}) + "\n")
    assert list(read_corpus(p)) == ["a", "c"]
    with pytest.warns(UserWarning, match="without a string 'text' field"):
        assert list(read_corpus(p, text_field="text")) == ["b"]


def test_jsonl_invalid_lines_are_skipped_counted_and_reported(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"content": "good one"}\n{not json\n{"content": "good two"}\n')
    stats = CorpusStats()
    with pytest.warns(UserWarning, match=r"skipped 1 line\(s\) that are not valid JSON.*line 2"):
        docs = list(read_corpus(p, stats=stats))
    assert docs == ["good one", "good two"]
    assert stats.invalid_json == 1 and stats.documents == 2


def test_jsonl_with_only_invalid_lines_is_an_error(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("nope\n{broken\n")
    with pytest.raises(ValueError, match="no usable line"):
        list(read_corpus(p))


def test_missing_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list(read_corpus(tmp_path / "missing.jsonl"))


def test_empty_corpus_is_an_error_when_batching(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("\n\n")
    with pytest.raises(ValueError, match="no training documents"):
        _batches(p, 1)


def test_parquet_and_hf_dataset_sources(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["x one", "x two"]}), tmp_path / "c.parquet")
    assert list(read_corpus(tmp_path / "c.parquet")) == ["x one", "x two"]
    datasets.Dataset.from_dict({"content": ["h one", "h two"]}).save_to_disk(str(tmp_path / "hf"))
    assert list(read_corpus(tmp_path / "hf")) == ["h one", "h two"]
    assert list(read_corpus(datasets.Dataset.from_dict({"text": ["obj"]}), text_field="text")) == ["obj"]


def test_heldout_split_is_deterministic_and_disjoint_from_training():
    held = [p for p in PARAS if is_heldout(p, 0.2, seed=3)]
    assert held == [p for p in PARAS if is_heldout(p, 0.2, seed=3)] and 0 < len(held) < len(PARAS)
    tok = ByteTokenizer()
    first = lambda doc: doc.split(",")[0] + ","  # "Paragraph number i," is unique to each document
    trained = {tok.decode([i for i, m in zip(r, mk) if m]).strip()
               for b in _batches(PARAS, 40, heldout_fraction=0.2, seed=3)
               for r, mk in zip(b["input_ids"].tolist(), b["attention_mask"].tolist())}
    held_out = {tok.decode(e).strip() for e in heldout_examples(PARAS, _stream(), limit=1000, heldout_fraction=0.2, seed=3)}
    assert {first(d) for d in held} <= held_out
    assert not {first(d) for d in held} & trained
    assert {first(d) for d in PARAS if d not in held} & trained


def test_rank_slices_together_are_the_single_process_global_batch():
    whole = _batches(PARAS, 3, batch_size=4)
    r0 = _batches(PARAS, 3, batch_size=2, rank=0, world_size=2)
    r1 = _batches(PARAS, 3, batch_size=2, rank=1, world_size=2)
    for w, a, b in zip(whole, r0, r1):
        rows = lambda x: [tuple(i for i, m in zip(r, mk) if m) for r, mk in zip(x["input_ids"].tolist(), x["attention_mask"].tolist())]
        assert rows(w) == rows(a) + rows(b)


def test_start_position_skips_exactly_that_many_batches():
    full = _batches(PARAS, 5)
    resumed = _batches(PARAS, 2, start=3)
    for a, b in zip(full[3:], resumed):
        assert torch.equal(a["input_ids"], b["input_ids"])


def test_length_bucketing_groups_similar_lengths():
    batches = _batches(PARAS, 6, batch_size=4)
    for b in batches:
        lengths = b["attention_mask"].sum(1)
        assert int(lengths.max() - lengths.min()) <= 12


def test_svae_batch_shapes_and_masks():
    b = _batches(PARAS, 1)[0]
    assert b["input_ids"].dtype == torch.long and b["attention_mask"].dtype == torch.bool
    assert b["input_ids"].shape == b["attention_mask"].shape
    assert bool((b["input_ids"][~b["attention_mask"]] == 0).all())


def test_sllm_windows_respect_max_sentences_and_need_two_sentences():
    stream = _stream("sllm", max_sentences=3)
    windows = stream.examples(PARAS[0])
    assert windows and all(2 <= len(w) <= 3 for w in windows)
    b = collate_sllm(windows, 0)
    assert b["input_ids"].ndim == 3 and b["sentence_mask"].shape == b["input_ids"].shape[:2]
    assert b["token_mask"].sum() == sum(len(s) for w in windows for s in w)


def test_segments_never_exceed_the_token_budget():
    stream = _stream(max_tokens=10)
    long_doc = "x" * 95 + ", tail."
    assert all(len(e) <= 10 for e in stream.examples(long_doc))


def test_two_workers_give_a_fixed_order_and_resume_at_the_same_position():
    from graftlm.training.batching import train_loader

    def load(start, n):
        ds = TrainBatches(PARAS, _stream(), batch_size=4, pad_id=0, shuffle_buffer=8, bucket_pool=2, start=start)
        it = iter(train_loader(ds, num_workers=2, prefetch_factor=2))
        return [next(it)["input_ids"] for _ in range(n)]

    full = load(0, 6)
    again = load(0, 6)
    resumed = load(3, 3)
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert all(torch.equal(a, b) for a, b in zip(full[3:], resumed))


def test_sllm_corpus_of_single_sentence_paragraphs_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="at least 2 segments"):
        _batches(["One sentence only."] * 5, 1, examples=_stream("sllm"))
