"""Corpus readers: documents (str) streamed from text, JSON lines, parquet or HF datasets.

Nothing is loaded whole: files are read line by line / row group by row group. A *document* is
a paragraph of plain text (blank-line separated), one JSON line's text field, or one row.

``read_corpus`` accepts
* a file (``.txt``/``.text``/``.md`` → text, ``.jsonl``/``.json``/``.ndjson`` → JSON lines,
  ``.parquet`` → parquet), or a folder of such files (sorted, recursive);
* a folder written by ``datasets.Dataset.save_to_disk`` (or ``data_format="hf"``);
* a ``datasets.Dataset`` / ``IterableDataset`` object, or any iterable of str / dict rows;
* ``"packaged:pydoc"`` / ``"packaged:kjv"``: English text shipped in packages (``graftlm.text``).

Text and JSON-lines files are decoded strictly as UTF-8: a file that is not (a Latin-1 file, binary
garbage) raises ``ValueError`` naming it and the line, instead of training on U+FFFD characters.
A recipe's ``encoding:`` (carried by `CorpusPath`) reads them in that encoding instead. A NUL
byte marks a binary file and is an error in any encoding.

Invalid JSON lines (and JSON rows without the text field) are skipped, counted in
:class:`CorpusStats` and reported with a warning naming the file, the count and the first bad
line; a file in which *every* line is invalid raises ``ValueError``.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from graftlm import text as packaged_text

TEXT_SUFFIXES = {".txt", ".text", ".md"}
JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}


@dataclass
class CorpusStats:
    """Counts gathered while reading (per process / worker)."""

    documents: int = 0
    invalid_json: int = 0
    missing_field: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)


class CorpusPath(os.PathLike):
    """A corpus path with the encoding its text files are read in (a recipe's ``encoding:``)."""

    def __init__(self, path: str | os.PathLike, encoding: str | None = None) -> None:
        self.path, self.encoding = os.fspath(path), encoding

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return repr(self.path) if self.encoding is None else f"{self.path!r} (encoding {self.encoding})"


def _encoding_hint(path: Path, encoding: str | None) -> str:
    if encoding is None:
        return (f"{path} is not valid UTF-8 text; if it is text in another encoding set it in the recipe "
                "(e.g. `encoding: latin-1`), or convert the file to UTF-8; if it is not text, remove it from the corpus")
    return f"{path} cannot be decoded as {encoding} (the recipe's `encoding:`); fix the encoding or the file"


def _binary_error(path: Path, lineno: int) -> ValueError:
    return ValueError(f"{path} line {lineno} contains NUL bytes: it is a binary file, not text; remove it from the corpus")


def _lines(path: Path, encoding: str | None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, decoded strictly; errors name the file and the line."""
    lineno = 0
    try:
        with open(path, encoding=encoding or "utf-8", errors="strict") as f:
            for lineno, line in enumerate(f, 1):
                if "\x00" in line:
                    raise _binary_error(path, lineno)
                yield lineno, line
    except UnicodeDecodeError as err:
        raise ValueError(f"{_encoding_hint(path, encoding)} (first bad byte on line {lineno + 1}: {err.reason}, "
                         f"byte {err.object[err.start:err.start + 1]!r})") from err


def sniff_text(path: Path, encoding: str | None = None, size: int = 1 << 16) -> None:
    """Decode the first ``size`` bytes of ``path`` strictly: a fast check before any training."""
    with open(path, "rb") as f:
        head = f.read(size)
    if b"\x00" in head and (encoding or "utf-8").replace("_", "-").lower() not in ("utf-16", "utf-32"):
        raise _binary_error(path, head[: head.index(b"\x00")].count(b"\n") + 1)
    try:
        codecs.getincrementaldecoder(encoding or "utf-8")("strict").decode(head, final=len(head) < size)
    except UnicodeDecodeError as err:
        line = head[: err.start].count(b"\n") + 1
        raise ValueError(f"{_encoding_hint(path, encoding)} (first bad byte on line {line}: {err.reason}, "
                         f"byte {head[err.start:err.start + 1]!r})") from err


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()
                              or (path / "dataset_dict.json").is_file())


def corpus_files(path: Path, data_format: str) -> list[tuple[Path, str]]:
    """Files of a corpus with their format; ValueError if there are none."""
    if not path.exists():
        raise ValueError(f"data path {str(path)!r} does not exist: set data_path in the recipe "
                         "(or --set data_path=...) to a text / JSON-lines / parquet file or folder")
    candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for p in candidates:
        fmt = data_format if data_format != "auto" else _guess(p)
        if fmt is not None and not p.name.startswith("."):
            out.append((p, fmt))
    if not out:
        raise ValueError(f"no corpus files under {str(path)!r}: expected .txt, .jsonl or .parquet files "
                         "(or set data_format)")
    return out


def _guess(p: Path) -> str | None:
    suffix = p.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return None


def read_text(path: Path, encoding: str | None = None) -> Iterator[str]:
    """Paragraphs (blank-line separated, inner newlines kept) of a text file (strict UTF-8 by default)."""
    lines: list[str] = []
    for _, line in _lines(path, encoding):
        if line.strip():
            lines.append(line)
        elif lines:
            yield "".join(lines).rstrip("\n")
            lines = []
    if lines:
        yield "".join(lines).rstrip("\n")


def read_jsonl(path: Path, text_field: str, stats: CorpusStats, encoding: str | None = None) -> Iterator[str]:
    """The ``text_field`` of each JSON line; invalid lines skipped and counted."""
    good = bad = missing = 0
    first_bad = None
    for lineno, line in _lines(path, encoding):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            first_bad = first_bad or lineno
            continue
        text = row.get(text_field) if isinstance(row, dict) else None
        if not isinstance(text, str):
            missing += 1
            first_bad = first_bad or lineno
            continue
        good += 1
        if text:
            yield text
    stats.invalid_json += bad
    stats.missing_field += missing
    if bad or missing:
        msg = (f"{path}: skipped {bad} line(s) that are not valid JSON and {missing} without a string "
               f"{text_field!r} field, out of {good + bad + missing} (first at line {first_bad})")
        stats.problems.append(msg)
        if good == 0:
            raise ValueError(msg + "; no usable line at all: is this JSON lines, and is text_field right?")
        warnings.warn(msg, stacklevel=2)


def read_parquet(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise ValueError(f"{path} has no column {text_field!r} (columns: {pf.schema_arrow.names}); set text_field")
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text:
                yield text


def read_rows(rows: Iterable[Any], text_field: str) -> Iterator[str]:
    """Documents from an HF dataset or any iterable of str / dict rows."""
    for i, row in enumerate(rows):
        text = row.get(text_field) if isinstance(row, dict) else row
        if not isinstance(text, str):
            raise TypeError(f"row {i} has no str {text_field!r} field (got {type(text).__name__}); set text_field")
        if text:
            yield text


def read_corpus(source: Any, *, data_format: str = "auto", text_field: str = "content",
                stats: CorpusStats | None = None, encoding: str | None = None) -> Iterator[str]:
    """Stream the documents of ``source`` (see the module docstring), in a fixed order.
    ``encoding``: of text / JSON-lines files (None = strict UTF-8; a `CorpusPath` carries its own)."""
    stats = stats if stats is not None else CorpusStats()
    encoding = getattr(source, "encoding", None) or encoding
    if source is None:
        raise ValueError("no data: set data_path in the recipe (or --set data_path=PATH)")
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if text.startswith("packaged:"):
            yield from _count(_packaged(text.split(":", 1)[1]), stats)
            return
        path = Path(text)
        if data_format == "hf" or (data_format == "auto" and _is_hf_dir(path)):
            import datasets

            if not path.exists():
                raise ValueError(f"data path {text!r} does not exist")
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else next(iter(ds.values()))
            yield from _count(read_rows(ds, text_field), stats)
            return
        for file, fmt in corpus_files(path, data_format):
            stats.files += 1
            if fmt == "text":
                yield from _count(read_text(file, encoding), stats)
            elif fmt == "jsonl":
                yield from _count(read_jsonl(file, text_field, stats, encoding), stats)
            elif fmt == "parquet":
                yield from _count(read_parquet(file, text_field), stats)
            else:
                raise ValueError(f"unknown data_format {fmt!r}")
        return
    yield from _count(read_rows(source, text_field), stats)


def _count(docs: Iterator[str], stats: CorpusStats) -> Iterator[str]:
    for d in docs:
        stats.documents += 1
        yield d


def _packaged(name: str) -> Iterator[str]:
    if name not in ("pydoc", "kjv"):
        raise ValueError(f"unknown packaged corpus {name!r}: use packaged:pydoc or packaged:kjv")
    yield from packaged_text.english_paragraphs(source=name)


SNIFF_FILES = 256  # files whose start check_source decodes


def check_source(source: Any, data_format: str = "auto", encoding: str | None = None) -> None:
    """Fail fast (before a model is built) on a missing or empty ``data_path``, and on text files
    whose first 64 KiB do not decode (not UTF-8, binary)."""
    if source is None:
        raise ValueError("no data: set data_path in the recipe (or --set data_path=PATH)")
    encoding = getattr(source, "encoding", None) or encoding
    if isinstance(source, (str, os.PathLike)) and not str(source).startswith("packaged:"):
        path = Path(source)
        if data_format == "hf" or (data_format == "auto" and _is_hf_dir(path)):
            if not path.exists():
                raise ValueError(f"data path {str(path)!r} does not exist")
            return
        for file, fmt in corpus_files(path, data_format)[:SNIFF_FILES]:
            if fmt in ("text", "jsonl"):
                sniff_text(file, encoding)


def is_heldout(document: str, fraction: float, seed: int) -> bool:
    """Deterministic split by a keyed hash of the text: same text, same side, on every machine,
    whatever the order or sharding; duplicates never straddle the split."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(document.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=str(seed).encode()).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction
