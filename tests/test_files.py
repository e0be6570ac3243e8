"""scratchlm.files: a file written for the user appears whole or not at all, with the permissions open() gives."""

from __future__ import annotations

import os
import stat

import pytest

from scratchlm.files import atomic_open, atomic_write_text, same_file


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failed_write_leaves_the_previous_file_and_no_fragment(tmp_path):
    path = atomic_write_text(tmp_path / "out.txt", "complete\n")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("half of")
        raise RuntimeError("the disk filled")
    assert path.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_new_file_gets_the_mode_open_would_give_and_a_replaced_one_keeps_its_own(tmp_path):
    previous = os.umask(0o022)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.gguf", "x")
        assert mode(fresh) == 0o644  # not mkstemp's 0600: other users (an Ollama service) can read it
        os.chmod(fresh, 0o640)
        atomic_write_text(fresh, "y")
        assert mode(fresh) == 0o640
    finally:
        os.umask(previous)


def test_same_file_sees_through_spellings_and_links(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    os.symlink(tmp_path / "a.txt", tmp_path / "link.txt")
    assert same_file(tmp_path / "a.txt", tmp_path / "sub" / ".." / "a.txt")
    assert same_file(tmp_path / "a.txt", tmp_path / "link.txt")
    assert not same_file(tmp_path / "a.txt", tmp_path / "b.txt")
