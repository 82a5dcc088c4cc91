"""Training and held-out batches, streamed: documents → segments → token ids → padded tensors.

Order of operations for the training stream (all deterministic given the recipe's seed):

1. documents from `read_corpus`, the held-out ones (`is_heldout`) removed, repeated epoch after
   epoch, worker ``w`` of ``N`` keeping documents ``i % N == w``;
2. a shuffle buffer of ``shuffle_buffer`` documents (seeded by seed, epoch, worker);
3. examples: SVAE → every segment's token ids; SLLM → windows of at most ``max_sentences``
   segments (`split_paragraph`), windows with fewer than 2 segments are skipped (nothing to
   predict: the backbone reads sentence t to produce sentence t + 1);
4. **global** batches of ``batch_size × world_size`` examples. SVAE batches are length-bucketed:
   ``bucket_pool`` batches' worth of segments are sorted by length, cut into batches, and the
   batches shuffled; the remainder carries over;
5. process ``r`` keeps slice ``r`` of each global batch, so a data-parallel run sees exactly the
   examples of a single-process run with the whole global batch.

Position: the stream is restartable at any global-batch index (``start``), which is what a
checkpoint stores. A torch ``DataLoader`` with ``num_workers = N`` yields worker batches round
robin, so global index ``g`` belongs to worker ``g % N``.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from graftlm.segmentation_rules import TokenCounter
from graftlm.segmenter import RegexSegmenter, pad_paragraphs, split_paragraph
from graftlm.training.data import CorpusStats, is_heldout, read_corpus


class Window(list):
    """One SLLM example: the token ids of a window's segments (a list of lists), and whether its
    document ``continues`` after it (a window cut out of a longer document: its last sentence is
    labelled "continue", not "stop")."""

    def __init__(self, rows: Iterable[list[int]] = (), continues: bool = False) -> None:
        super().__init__(rows)
        self.continues = bool(continues)

    def __reduce__(self):  # pickles (DataLoader workers, checkpoints) with the flag
        return (Window, (list(self), self.continues))


class ExampleStream:
    """Turns documents into token-id examples. ``kind``: ``"svae"`` (one example per segment:
    ``list[int]``) or ``"sllm"`` (one `Window` per window of at most ``max_sentences`` segments).
    ``segmenter_options``: extra `RegexSegmenter` options (``min_tokens``, ``rule``, ``whitespace``)."""

    def __init__(self, kind: str, tokenizer: Any, *, max_tokens: int, max_sentences: int,
                 segmenter_options: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.segmenter = RegexSegmenter(max_tokens=max_tokens, tokenizer=tokenizer, **(segmenter_options or {}))
        self.counter = TokenCounter(tokenizer)

    def examples(self, document: str) -> list[Any]:
        segments = self.segmenter.split(document)
        if not segments:
            return []
        ids = self.counter.encode(segments)
        for seg, row in zip(segments, ids):
            if len(row) > self.max_tokens:  # never truncate silently
                raise ValueError(f"segment {seg[:40]!r}… has {len(row)} tokens > max_tokens={self.max_tokens}")
        ids = [row for row in ids if row]
        if self.kind == "svae":
            return ids
        chunks = split_paragraph(ids, self.max_sentences)
        return [Window(w, continues=i < len(chunks) - 1) for i, w in enumerate(chunks) if len(w) >= 2]


def collate_svae(examples: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """→ ``input_ids`` (B, L) long, ``attention_mask`` (B, L) bool, right-padded with ``pad_id``."""
    length = max(len(e) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.bool)
    for i, e in enumerate(examples):
        ids[i, : len(e)] = torch.tensor(e, dtype=torch.long)
        mask[i, : len(e)] = True
    return {"input_ids": ids, "attention_mask": mask}


def length_buckets(rows: list[list[int]], batch_size: int, pad_id: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Padded (ids, mask) batches (`collate_svae`) of ``rows`` sorted by length, so little compute
    goes to padding. Empty rows are rejected."""
    if any(len(r) == 0 for r in rows):
        raise ValueError("an empty token list cannot be encoded; drop empty segments first")
    ordered = sorted(rows, key=len)
    batches = (collate_svae(ordered[i: i + batch_size], pad_id) for i in range(0, len(ordered), batch_size))
    return [(b["input_ids"], b["attention_mask"]) for b in batches]


def collate_sllm(examples: list[list[list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """→ ``input_ids`` (B, S, T) long, ``token_mask`` (B, S, T) bool, ``sentence_mask`` (B, S) bool,
    ``document_ends`` (B,) bool (False for a `Window` whose document continues after it)."""
    ids, tok, sent = pad_paragraphs(examples, pad_id)
    ends = torch.tensor([not getattr(e, "continues", False) for e in examples], dtype=torch.bool)
    return {"input_ids": ids, "token_mask": tok, "sentence_mask": sent, "document_ends": ends}


def _length(example: Any) -> int:
    return len(example) if example and isinstance(example[0], int) else sum(len(s) for s in example)


class TrainBatches(IterableDataset):
    """Infinite stream of this process's training batches (dicts of tensors), from ``start``.

    Args:
        source / data_format / text_field: passed to `read_corpus`.
        make_examples: a picklable `ExampleStream` (workers rebuild nothing).
        batch_size: examples per process; ``world_size`` × that make a global batch.
        rank, world_size: this process's slice of each global batch.
        start: global batches to skip (the checkpointed data position).
    """

    def __init__(self, source: Any, examples: ExampleStream, *, batch_size: int, pad_id: int,
                 data_format: str = "auto", text_field: str = "content", heldout_fraction: float = 0.0,
                 seed: int = 0, shuffle_buffer: int = 1000, bucket_pool: int = 64, rank: int = 0,
                 world_size: int = 1, start: int = 0, max_epochs: int | None = None) -> None:
        super().__init__()
        self.source, self.examples = source, examples
        self.batch_size, self.pad_id = batch_size, pad_id
        self.data_format, self.text_field = data_format, text_field
        self.heldout_fraction, self.seed = heldout_fraction, seed
        self.shuffle_buffer, self.bucket_pool = shuffle_buffer, bucket_pool
        self.rank, self.world_size, self.start = rank, world_size, start
        self.max_epochs = max_epochs
        self.stats = CorpusStats()

    def _documents(self, worker: int, workers: int) -> Iterator[tuple[int, str]]:
        epoch = 0
        while self.max_epochs is None or epoch < self.max_epochs:
            rng = random.Random(f"{self.seed}-{epoch}-{worker}")
            buffer: list[str] = []
            seen = 0
            for i, doc in enumerate(read_corpus(self.source, data_format=self.data_format,
                                                text_field=self.text_field, stats=self.stats)):
                if is_heldout(doc, self.heldout_fraction, self.seed):
                    continue
                seen += 1
                if i % workers != worker:
                    continue
                buffer.append(doc)
                if len(buffer) >= self.shuffle_buffer:
                    yield epoch, buffer.pop(rng.randrange(len(buffer)))
            if seen == 0:
                raise ValueError(f"the corpus {self.source!r} has no training documents "
                                 f"(empty, or all held out with heldout_fraction={self.heldout_fraction})")
            rng.shuffle(buffer)
            for doc in buffer:
                yield epoch, doc
            epoch += 1

    def _global_batches(self, worker: int, workers: int) -> Iterator[list[Any]]:
        size = self.batch_size * self.world_size
        pool_size = size * self.bucket_pool
        rng = random.Random(f"{self.seed}-batches-{worker}")
        pool: list[Any] = []
        produced = 0
        n_examples = 0
        for epoch, doc in self._documents(worker, workers):
            if epoch > 0 and n_examples == 0:  # a whole pass gave nothing: never loop forever
                raise ValueError(f"the corpus {self.source!r} yielded no {self.examples.kind} training examples"
                                 + (" (SLLM windows need at least 2 segments)" if self.examples.kind == "sllm" else ""))
            new = self.examples.examples(doc)
            n_examples += len(new)
            pool.extend(new)
            if len(pool) >= pool_size:
                pool.sort(key=_length)
                n_full = len(pool) // size
                order = list(range(n_full))
                rng.shuffle(order)
                batches = [pool[k * size:(k + 1) * size] for k in order]
                pool = pool[n_full * size:]
                for b in batches:
                    produced += 1
                    yield b
        if produced == 0 and pool:  # finite stream (max_epochs) smaller than one pool
            for k in range(len(pool) // size):
                yield pool[k * size:(k + 1) * size]
        elif produced == 0:
            raise ValueError(f"the corpus {self.source!r} yielded no training examples: is it empty?")

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        collate = collate_svae if self.examples.kind == "svae" else collate_sllm
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for k, batch in enumerate(self._global_batches(worker, workers)):
            if k * workers + worker < self.start:
                continue
            yield collate(batch[lo:hi], self.pad_id)


def train_loader(dataset: TrainBatches, *, num_workers: int = 0, prefetch_factor: int = 2) -> Iterable[dict[str, torch.Tensor]]:
    """A DataLoader that just runs ``dataset`` (already batched) in ``num_workers`` workers.

    The DataLoader always takes its first batch from worker 0, so a start position that is not a
    multiple of the worker count is rounded down for the workers and the few extra batches are
    dropped here. The loader gets its own seeded generator: otherwise it draws its workers' base
    seed from the global torch RNG, which would shift dropout after a resume."""
    extra = dataset.start % max(1, num_workers)
    dataset.start -= extra
    kwargs: dict[str, Any] = {"batch_size": None, "num_workers": num_workers,
                              "generator": torch.Generator().manual_seed(dataset.seed)}
    if num_workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=False)
    loader = DataLoader(dataset, **kwargs)
    return _Skip(loader, extra) if extra else loader


class _Skip:
    def __init__(self, loader: DataLoader, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return itertools.islice(iter(self.loader), self.n, None)


def heldout_examples(source: Any, examples: ExampleStream, *, limit: int, data_format: str = "auto",
                     text_field: str = "content", heldout_fraction: float = 0.01, seed: int = 0) -> list[Any]:
    """The first ``limit`` held-out examples (segments or windows), in corpus order.

    ValueError if the held-out split is empty (raise ``heldout_fraction`` for a small corpus).
    """
    out: list[Any] = []
    for doc in read_corpus(source, data_format=data_format, text_field=text_field):
        if is_heldout(doc, heldout_fraction, seed):
            out.extend(examples.examples(doc))
            if len(out) >= limit:
                return out[:limit]
    if not out:
        raise ValueError(f"no held-out examples in {source!r} with heldout_fraction={heldout_fraction}: "
                         "raise heldout_fraction (a small corpus needs e.g. 0.05)")
    return out


def batches_of(items: list[Any], batch_size: int, collate: Callable[[list[Any], int], dict], pad_id: int,
               rank: int = 0, world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """Fixed batches over a list (eval); process ``r`` of ``world_size`` takes every r-th batch."""
    for k, i in enumerate(range(0, len(items), batch_size)):
        if k % world_size == rank:
            yield collate(items[i:i + batch_size], pad_id)
