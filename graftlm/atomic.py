"""Atomic writes: a reader (or a crash) sees the earlier file/folder or the complete new one, never a
half-written one. The one helper every saver in graftlm uses.

Folders: everything is written into a temporary folder beside the target (same file system, so the
final rename is a metadata operation), each file is fsync'ed, then the temporary folder is renamed
into place. A target that already exists is first renamed aside and removed only after the new one
is in place; entries of the old folder that the new save does not write (and does not own, see
``owned``) are carried over as hard links, so saving into a folder never deletes a user's other files.
If the writer raises, the temporary folder is removed and the target is untouched.

Files: a temporary file beside the target, fsync, ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder (folders: where the platform allows opening one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync_path(Path(folder) / name)
        _fsync_path(Path(folder))


def temp_folder_for(target: str | os.PathLike, tag: str | None = None) -> Path:
    """The temporary folder beside ``target`` that `begin_folder` creates. ``tag`` makes the name
    deterministic (several processes writing into one folder must agree on it); default: random."""
    target = Path(target)
    return target.parent / f"{TEMP_PREFIX}{target.name}-{tag or uuid.uuid4().hex[:12]}"


def begin_folder(target: str | os.PathLike, tag: str | None = None) -> Path:
    """Create (empty) the temporary folder for ``target`` and return it."""
    tmp = temp_folder_for(target, tag)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_folder(tmp: str | os.PathLike, target: str | os.PathLike, owned: Iterable[str] | None = None) -> Path:
    """Move the complete ``tmp`` into place as ``target``.

    ``owned``: names the saver is responsible for inside ``target``; an old entry with such a name that
    the new save did not write is dropped (a stale weights file must not outlive the save). Other old
    entries are kept. ``owned=None``: the new folder replaces the old one entirely.
    """
    tmp, target = Path(tmp), Path(target)
    if target.exists() and not target.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"{target} exists and is not a folder; remove it or save somewhere else")
    if target.is_dir() and owned is not None:
        owned_names = set(owned)
        for entry in target.iterdir():
            if entry.name in owned_names or (tmp / entry.name).exists():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, tmp / entry.name, symlinks=True, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry, tmp / entry.name)
    _fsync_tree(tmp)
    old = None
    if target.exists():
        old = target.parent / f"{OLD_PREFIX}{target.name}-{uuid.uuid4().hex[:12]}"
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, owned: Iterable[str] | None = None,
                  tag: str | None = None) -> Iterator[Path]:
    """``with atomic_folder(target) as tmp:`` write into ``tmp``; on a clean exit it becomes
    ``target`` (see `commit_folder`); on an exception ``tmp`` is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = begin_folder(target, tag)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_folder(tmp, target, owned)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_file(path) as tmp:`` write the file ``tmp`` (any writer that takes a path); on a
    clean exit it replaces ``path``; on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_path(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON atomically (``dump_kwargs`` go to `json.dumps`)."""
    write_text(path, json.dumps(obj, **({"indent": 2} | dump_kwargs)) + "\n")
