"""graftlm.atomic: a reader sees the earlier file/folder or the complete new one, never a half one."""

from __future__ import annotations

import pytest

from graftlm.atomic import atomic_file, atomic_folder, write_json


def test_a_failed_file_write_leaves_the_earlier_file(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text('{"step": 2, "trunc')
            raise RuntimeError("killed")
    assert path.read_text() == '{\n  "step": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_folder_write_leaves_the_earlier_folder(tmp_path):
    with atomic_folder(tmp_path / "m") as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(OSError):
        with atomic_folder(tmp_path / "m") as tmp:
            (tmp / "a.txt").write_text("new")
            raise OSError(28, "No space left on device")
    assert (tmp_path / "m" / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_complete_folder_replaces_owned_files_and_keeps_the_others(tmp_path):
    with atomic_folder(tmp_path / "m") as tmp:
        (tmp / "shared.bin").write_text("stale")
        (tmp / "weights.bin").write_text("old")
    (tmp_path / "m" / "notes.txt").write_text("the user's")
    with atomic_folder(tmp_path / "m", owned=("shared.bin", "weights.bin")) as tmp:
        (tmp / "weights.bin").write_text("new")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["notes.txt", "weights.bin"]
    assert (tmp_path / "m" / "weights.bin").read_text() == "new"


def test_a_file_in_the_way_of_the_folder_is_refused(tmp_path):
    (tmp_path / "m").write_text("a file")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        with atomic_folder(tmp_path / "m") as tmp:
            (tmp / "a.txt").write_text("x")
    assert (tmp_path / "m").read_text() == "a file"
